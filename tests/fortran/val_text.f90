! Prints, for the dataset folder named first on the command line, the validation start line that
! denoise_train prints (module denoise_val_text) and its noisy inputs' MSE (ES25.17E3); then, for
! each pair (a, b) of float64 values in the file named second (raw, native byte order), one line
! general(a)|fixed(a, 4)|signed_fixed(a, 2)|versus_baseline(a, b), for comparison with Python's
! f-strings and cudnn_denoise.training.loop.versus_baseline.
program val_text
  use, intrinsic :: iso_c_binding, only: c_double
  use, intrinsic :: iso_fortran_env, only: int64
  use denoise_dataset_meta, only: dataset_meta_t, read_dataset_meta
  use denoise_val_text, only: input_mse, psnr, general, fixed, signed_fixed, versus_baseline, start_line
  implicit none
  character(len=4096) :: folder, path
  type(dataset_meta_t) :: data
  real(c_double), allocatable :: values(:)
  real(c_double) :: mse
  integer(int64) :: bytes
  integer :: unit, i

  call get_command_argument(1, folder)
  call get_command_argument(2, path)
  call read_dataset_meta(trim(folder), data)
  mse = input_mse(data)
  print '(A)', start_line(data, psnr(data%high - data%low, mse))
  print '(ES25.17E3)', mse
  inquire(file=trim(path), size=bytes)
  allocate(values(bytes / 8))
  open(newunit=unit, file=trim(path), access="stream", form="unformatted", action="read", status="old")
  read(unit) values
  close(unit)
  do i = 1, size(values) - 1, 2
    print '(A)', general(values(i)) // "|" // fixed(values(i), 4) // "|" // signed_fixed(values(i), 2) // &
        "|" // versus_baseline(values(i), values(i + 1))
  end do
end program val_text
