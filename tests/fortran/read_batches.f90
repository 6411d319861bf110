! Reads batches 0 .. COUNT-1 of a float32 dataset file with denoise_read_jobs, all in flight at
! once, and prints each batch's checksum line (tests/fortran/test_read_jobs.py). With DROP 1 each
! range leaves the page cache once read.  Usage: read_batches FILE SAMPLE_FLOATS BATCH COUNT DROP
program read_batches
  use, intrinsic :: iso_c_binding
  use cudnn_denoise_checksum, only: format_checksum
  use denoise_read_jobs, only: read_job_t, open_file, close_file, read_start, read_wait
  implicit none
  character(len=4096) :: path, text
  integer :: sample_floats, batch, count, drop, b
  real(c_float), allocatable, target :: values(:, :)
  type(read_job_t), allocatable, target :: jobs(:)
  integer(c_int) :: fd

  call get_command_argument(1, path)
  call get_command_argument(2, text)
  read(text, *) sample_floats
  call get_command_argument(3, text)
  read(text, *) batch
  call get_command_argument(4, text)
  read(text, *) count
  call get_command_argument(5, text)
  read(text, *) drop
  allocate(values(sample_floats * batch, count), jobs(count))
  fd = open_file(trim(path))
  do b = 1, count
    jobs(b) = read_job_t(fd=fd, drop=drop, buffer=c_loc(values(1, b)), &
        offset=4_c_int64_t * sample_floats * batch * (b - 1), bytes=4_c_int64_t * sample_floats * batch)
    call read_start(jobs(b))
  end do
  do b = count, 1, -1                             ! joined out of order: each its own range
    call read_wait(jobs(b), trim(path))
  end do
  do b = 1, count
    write(text, '("batch ", I0)') b - 1
    print '(A)', format_checksum(trim(text), values(:, b))
  end do
  call close_file(fd)
end program read_batches
