! Provokes one failing call and lets denoise_check end the program (tests/fortran/test_denoise_train.py).
! Usage: check_errors cudnn|cublas|cuda
program check_errors
  use, intrinsic :: iso_c_binding
  use cudnn_interfaces
  use denoise_check, only: check_cuda, check_cudnn, check_cublas
  implicit none
  character(len=16) :: which
  type(c_ptr) :: desc
  integer(c_int) :: count

  call get_command_argument(1, which)
  select case (which)
  case ("cudnn")  ! host side, no GPU needed: a negative dimension is CUDNN_STATUS_BAD_PARAM
    call check_cudnn(cudnnCreateTensorDescriptor(desc), "cudnnCreateTensorDescriptor")
    call check_cudnn(cudnnSetTensor4dDescriptor(desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 4, -1, 8, &
        8), "cudnnSetTensor4dDescriptor (test)")
  case ("cublas")  ! status 7 is CUBLAS_STATUS_INVALID_VALUE; no call is needed to name it
    call check_cublas(CUBLAS_STATUS_INVALID_VALUE, "cublasSaxpy_v2 (test)")
  case ("cuda")  ! without a GPU or driver this fails; with one it succeeds and nothing is printed
    call check_cuda(cudaGetDeviceCount(count), "cudaGetDeviceCount (test)")
  end select
end program check_errors
