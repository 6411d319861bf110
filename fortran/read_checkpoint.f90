! Print one checksum line per tensor of a checkpoint, the lines cudnn_denoise.port.checksum prints.
!
! Usage: read_checkpoint CHECKPOINT_DIR   (the folder holding params.bin and manifest.json)
! Exits with status 1, saying why on stderr, if params.bin is missing or has the wrong size.
! Build: make -C fortran (see the Makefile), or by hand in fortran/:
!   gfortran -std=f2008 -Wall -O2 cudnn_denoise_checksum.f90 cudnn_denoise_checkpoint.f90 \
!       read_checkpoint.f90 -o read_checkpoint
! Python prints the same lines with
!   python -c "from cudnn_denoise import checksum, params; import numpy as np; \
!     flat = np.fromfile('DIR/params.bin', '<f4'); \
!     [print(checksum.format_checksum(n, v)) for n, v in params.views(flat).items()]"
program read_checkpoint
  use, intrinsic :: iso_c_binding, only: c_float
  use, intrinsic :: iso_fortran_env, only: error_unit
  use cudnn_denoise_checkpoint, only: NUM_PARAMS, NUM_TENSORS, PARAM_NAMES, PARAM_OFFSETS, &
      PARAM_SIZES, read_params
  use cudnn_denoise_checksum, only: format_checksum
  implicit none
  real(c_float) :: params(NUM_PARAMS)
  character(len=:), allocatable :: folder, errmsg
  integer :: length, ierr, i, first, last

  if (command_argument_count() /= 1) then
    write(error_unit, '(A)') "usage: read_checkpoint CHECKPOINT_DIR"
    stop 2
  end if
  call get_command_argument(1, length=length)
  allocate(character(len=length) :: folder)
  call get_command_argument(1, folder)

  call read_params(folder // "/params.bin", params, ierr, errmsg)
  if (ierr /= 0) then
    write(error_unit, '(A)') "read_checkpoint: " // errmsg
    stop 1
  end if
  do i = 1, NUM_TENSORS
    first = PARAM_OFFSETS(i) + 1
    last = PARAM_OFFSETS(i) + PARAM_SIZES(i)
    print '(A)', format_checksum(trim(PARAM_NAMES(i)), params(first:last))
  end do
end program read_checkpoint
