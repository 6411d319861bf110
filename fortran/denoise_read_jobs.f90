! Reads in flight: each job reads one byte range of a file into a host buffer on a thread of its
! own (pthread_create through bind(C)), with pread, so that several batches are read at once while
! the GPU computes. gfortran 12's asynchronous READ cannot do this (its WAIT returned before the
! data had arrived); its runtime's I/O is not used on these threads at all: they call only libc.
!   read_start(job)      start the thread (job: fd, buffer, offset, bytes, drop)
!   read_wait(job, path) join it; a short read or an error ends the program naming path and offset
! With job%drop, the range is dropped from the page cache once read (posix_fadvise DONTNEED), as
! the Python reader does for --cache drop (data/cache.py).
module denoise_read_jobs
  use, intrinsic :: iso_c_binding
  use denoise_check, only: fail, int_text, c_text, c_open, c_close
  implicit none
  private
  public :: read_job_t, open_file, close_file, read_start, read_wait

  integer(c_int), parameter :: POSIX_FADV_DONTNEED = 4  ! Linux's value (fcntl.h)

  ! What a thread reads; c_loc(job) is its argument, so a job must not move while it runs.
  type, bind(C) :: read_job_t
    integer(c_int) :: fd = -1
    integer(c_int) :: drop = 0                    ! 1: drop the range from the page cache after
    type(c_ptr) :: buffer = c_null_ptr
    integer(c_int64_t) :: offset = 0, bytes = 0
    integer(c_int64_t) :: done = 0                ! bytes read: < bytes at end of file, -1 an error
    integer(c_long) :: thread = 0                 ! pthread_t (unsigned long on Linux)
    integer(c_int) :: running = 0
  end type read_job_t

  interface
    integer(c_intptr_t) function c_pread(fd, buffer, count, offset) bind(C, name="pread")
      import :: c_int, c_ptr, c_size_t, c_int64_t, c_intptr_t
      implicit none
      integer(c_int), value :: fd
      type(c_ptr), value :: buffer
      integer(c_size_t), value :: count
      integer(c_int64_t), value :: offset
    end function c_pread
    integer(c_int) function c_posix_fadvise(fd, offset, length, advice) bind(C, name="posix_fadvise")
      import :: c_int, c_int64_t
      implicit none
      integer(c_int), value :: fd
      integer(c_int64_t), value :: offset, length
      integer(c_int), value :: advice
    end function c_posix_fadvise
    integer(c_int) function pthread_create(thread, attr, start, arg) bind(C, name="pthread_create")
      import :: c_int, c_long, c_ptr, c_funptr
      implicit none
      integer(c_long), intent(out) :: thread
      type(c_ptr), value :: attr
      type(c_funptr), value :: start
      type(c_ptr), value :: arg
    end function pthread_create
    integer(c_int) function pthread_join(thread, result) bind(C, name="pthread_join")
      import :: c_int, c_long, c_ptr
      implicit none
      integer(c_long), value :: thread
      type(c_ptr), value :: result
    end function pthread_join
  end interface

contains

  integer(c_int) function open_file(path) result(fd)
    character(len=*), intent(in) :: path
    fd = c_open(c_text(path), 0_c_int)          ! O_RDONLY
    if (fd < 0) call fail(path // ": cannot be opened", 2)
  end function open_file

  subroutine close_file(fd)
    integer(c_int), intent(in) :: fd
    integer(c_int) :: status
    status = c_close(fd)
  end subroutine close_file

  subroutine read_start(job)
    type(read_job_t), intent(inout), target :: job
    job%done = 0
    if (pthread_create(job%thread, c_null_ptr, c_funloc(read_range), c_loc(job)) /= 0) &
        call fail("pthread_create failed (a thread to read with)", 1)
    job%running = 1
  end subroutine read_start

  subroutine read_wait(job, path)
    type(read_job_t), intent(inout) :: job
    character(len=*), intent(in) :: path
    if (job%running == 0) return
    if (pthread_join(job%thread, c_null_ptr) /= 0) call fail("pthread_join failed", 1)
    job%running = 0
    if (job%done < 0) call fail(path // ": the read of " // int_text(job%bytes) // " bytes at byte " // &
        int_text(job%offset) // " failed", 2)
    if (job%done /= job%bytes) call fail(path // ": ends before byte " // &
        int_text(job%offset + job%bytes) // " (a batch at byte " // int_text(job%offset) // ")", 2)
  end subroutine read_wait

  ! The thread: pread until the range is read (a read may return less than asked), the file ends
  ! or a read fails.
  type(c_ptr) function read_range(arg) bind(C)
    type(c_ptr), value :: arg
    type(read_job_t), pointer :: job
    integer(c_intptr_t) :: got
    integer(c_int) :: status
    call c_f_pointer(arg, job)
    do while (job%done < job%bytes)
      got = c_pread(job%fd, transfer(transfer(job%buffer, 0_c_intptr_t) + job%done, job%buffer), &
          int(job%bytes - job%done, c_size_t), job%offset + job%done)
      if (got < 0) job%done = -1
      if (got <= 0) exit
      job%done = job%done + got
    end do
    if (job%drop /= 0) status = c_posix_fadvise(job%fd, job%offset, job%bytes, POSIX_FADV_DONTNEED)
    read_range = c_null_ptr
  end function read_range

end module denoise_read_jobs
