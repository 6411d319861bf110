! Checking every CUDA runtime, cuDNN and cuBLAS status, and ending the program with one line.
!
! A failed call ends the program with exit status 1 and one line on stderr that names the call and
! gives the library's own words, as Python's CudnnError / CublasError / CudaError do:
!   denoise_train: cudnnConvolutionForward (conv2) failed: CUDNN_STATUS_BAD_PARAM (2000): <cuDNN's last error>
! fail() ends it with any status (2: bad arguments, data or no GPU), without gfortran's backtrace.
module denoise_check
  use, intrinsic :: iso_c_binding
  use, intrinsic :: iso_fortran_env, only: error_unit
  use cudnn_interfaces, only: cudaGetErrorName, cudaGetErrorString, cudnnGetErrorString, &
      cudnnGetLastErrorString, cublasGetStatusName, cublasGetStatusString, fortran_string
  implicit none
  private
  public :: PROGRAM_NAME, check_cuda, check_cudnn, check_cublas, fail, int_text, c_text, c_open, c_close

  character(len=*), parameter :: PROGRAM_NAME = "denoise_train"

  interface
    subroutine c_exit(status) bind(C, name="exit")
      import :: c_int
      implicit none
      integer(c_int), value :: status
    end subroutine c_exit
    ! open(2) with a path from c_text; flags 0 is O_RDONLY (the reader, and fsync of a written file
    ! or a folder), no mode
    integer(c_int) function c_open(path, flags) bind(C, name="open")
      import :: c_int, c_char
      implicit none
      character(kind=c_char), intent(in) :: path(*)
      integer(c_int), value :: flags
    end function c_open
    integer(c_int) function c_close(fd) bind(C, name="close")
      import :: c_int
      implicit none
      integer(c_int), value :: fd
    end function c_close
  end interface

contains

  ! Write "denoise_train: message" to stderr and exit with status (C's exit: no Fortran backtrace).
  subroutine fail(message, status)
    character(len=*), intent(in) :: message
    integer, intent(in) :: status
    write(error_unit, '(A)') PROGRAM_NAME // ": " // message
    flush(error_unit)
    call c_exit(int(status, c_int))
  end subroutine fail

  ! cudaSuccess is 0; otherwise the runtime's name and description of the error.
  subroutine check_cuda(status, what)
    integer(c_int), intent(in) :: status
    character(len=*), intent(in) :: what
    if (status == 0) return
    call fail(what // " failed: " // fortran_string(cudaGetErrorName(status)) // " (" // &
        int_text(int(status, c_int64_t)) // "): " // fortran_string(cudaGetErrorString(status)), 1)
  end subroutine check_cuda

  ! CUDNN_STATUS_SUCCESS is 0; otherwise cuDNN's name of the status and its last error message.
  subroutine check_cudnn(status, what)
    integer(c_int), intent(in) :: status
    character(len=*), intent(in) :: what
    character(kind=c_char) :: last(1024)
    character(len=1024) :: text
    integer :: i
    if (status == 0) return
    last = c_null_char
    call cudnnGetLastErrorString(last, int(size(last), c_size_t))
    text = ""
    do i = 1, size(last)
      if (last(i) == c_null_char) exit
      text(i:i) = last(i)
    end do
    call fail(what // " failed: " // fortran_string(cudnnGetErrorString(status)) // " (" // &
        int_text(int(status, c_int64_t)) // "): " // trim(text), 1)
  end subroutine check_cudnn

  ! CUBLAS_STATUS_SUCCESS is 0; otherwise cuBLAS's name and description of the status.
  subroutine check_cublas(status, what)
    integer(c_int), intent(in) :: status
    character(len=*), intent(in) :: what
    if (status == 0) return
    call fail(what // " failed: " // fortran_string(cublasGetStatusName(status)) // " (" // &
        int_text(int(status, c_int64_t)) // "): " // fortran_string(cublasGetStatusString(status)), 1)
  end subroutine check_cublas

  ! An integer as the shortest decimal text.
  function int_text(value) result(text)
    integer(c_int64_t), intent(in) :: value
    character(len=:), allocatable :: text
    character(len=24) :: buffer
    write(buffer, '(I0)') value
    text = trim(buffer)
  end function int_text

  ! text as a NUL-terminated C string (a path for libc)
  function c_text(text) result(chars)
    character(len=*), intent(in) :: text
    character(kind=c_char) :: chars(len(text) + 1)
    integer :: i
    do i = 1, len(text)
      chars(i) = text(i:i)
    end do
    chars(len(text) + 1) = c_null_char
  end function c_text

end module denoise_check
