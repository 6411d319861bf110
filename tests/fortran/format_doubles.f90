! Reads the float64 values of the file named on the command line (raw, native byte order) and
! prints scientific(x, 16) and scientific(x, 8) of each, one value a line, for comparison with
! Python's cudnn_denoise.port.checksum.scientific.
program format_doubles
  use, intrinsic :: iso_c_binding, only: c_double
  use, intrinsic :: iso_fortran_env, only: int64
  use cudnn_denoise_checksum, only: scientific
  implicit none
  character(len=4096) :: path
  real(c_double), allocatable :: values(:)
  integer(int64) :: bytes
  integer :: unit, i

  call get_command_argument(1, path)
  inquire(file=trim(path), size=bytes)
  allocate(values(bytes / 8))
  open(newunit=unit, file=trim(path), access="stream", form="unformatted", action="read", status="old")
  read(unit) values
  close(unit)
  do i = 1, size(values)
    print '(A, 1X, A)', scientific(values(i), 16), scientific(values(i), 8)
  end do
end program format_doubles
