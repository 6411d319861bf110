! Print the checksum line of one sample of a dataset file, float32 or float16 (docs/formats.md).
!
! Usage: read_dataset FILE HEIGHT WIDTH float32|float16 INDEX
! Prints format_checksum("sample INDEX", values): the line Python prints for the same sample,
! cudnn_denoise.port.checksum.format_checksum(name, values as float32). Exit status 2 for a usage
! error or an unreadable sample.
! Build: make -C fortran (see the Makefile), or by hand in fortran/:
!   gfortran -std=f2008 -Wall -O2 cudnn_denoise_checksum.f90 cudnn_denoise_dataset.f90 \
!       read_dataset.f90 -o read_dataset
program read_dataset
  use, intrinsic :: iso_c_binding, only: c_float
  use, intrinsic :: iso_fortran_env, only: error_unit, int8, int32
  use cudnn_denoise_checksum, only: format_checksum
  use cudnn_denoise_dataset, only: read_sample
  implicit none
  character(len=:), allocatable :: path
  character(len=32) :: text, dtype, index_text
  real(c_float), allocatable :: values(:)
  integer :: height, width, index, length, iostat
  character(len=512) :: iomsg

  if (command_argument_count() /= 5) then
    write(error_unit, '(A)') "usage: read_dataset FILE HEIGHT WIDTH float32|float16 INDEX"
    stop 2
  end if
  if (transfer(1_int32, 0_int8) /= 1_int8) then
    write(error_unit, '(A)') "read_dataset: dataset files are little-endian and this machine is not"
    stop 2
  end if
  call get_command_argument(1, length=length)
  allocate(character(len=length) :: path)
  call get_command_argument(1, path)
  call get_command_argument(2, text)
  read(text, *) height
  call get_command_argument(3, text)
  read(text, *) width
  call get_command_argument(4, dtype)
  call get_command_argument(5, index_text)
  read(index_text, *) index
  if (dtype /= "float32" .and. dtype /= "float16") then
    write(error_unit, '(A)') "read_dataset: dtype must be float32 or float16, not " // trim(dtype)
    stop 2
  end if
  allocate(values(height * width))
  iomsg = ""
  call read_sample(path, index, height, width, dtype == "float16", values, iostat, iomsg)
  if (iostat /= 0) then
    write(error_unit, '(A)') "read_dataset: " // path // ": " // trim(iomsg)
    stop 2
  end if
  print '(A)', format_checksum("sample " // trim(index_text), values)
end program read_dataset
