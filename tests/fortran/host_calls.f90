! Host-side cuDNN and cuBLAS calls through the generated interfaces; no GPU needed. Each line is
! `name value`; tests/fortran/test_fortran.py compares them with what was set and with the Python
! bindings. A value passed by value where C wants an address (or the reverse) shows up here.
program host_calls
  use cudnn_interfaces
  implicit none
  type(c_ptr) :: x_desc, w_desc, conv_desc, act_desc
  integer(c_int) :: status, dtype, fmt, n, c, h, w, n_stride, c_stride, h_stride, w_stride
  integer(c_int) :: nb_dims, dims(4), strides(4), mode, nan_opt, math_type, version
  real(c_double) :: coef
  character(len=512) :: message

  call show("cudnnGetVersion", int(cudnnGetVersion()))
  call show("cudnnCreateTensorDescriptor", cudnnCreateTensorDescriptor(x_desc))
  call show("cudnnSetTensor4dDescriptorEx", cudnnSetTensor4dDescriptorEx(x_desc, CUDNN_DATA_DOUBLE, &
      4, 3, 5, 7, 105, 35, 7, 1))
  call show("cudnnGetTensor4dDescriptor", cudnnGetTensor4dDescriptor(x_desc, dtype, n, c, h, w, &
      n_stride, c_stride, h_stride, w_stride))
  call show_all("tensor4d", [dtype, n, c, h, w, n_stride, c_stride, h_stride, w_stride])
  call show("cudnnSetTensorNdDescriptor", cudnnSetTensorNdDescriptor(x_desc, CUDNN_DATA_DOUBLE, 4, &
      [2, 3, 4, 5], [60, 20, 5, 1]))
  call show("cudnnGetTensorNdDescriptor", cudnnGetTensorNdDescriptor(x_desc, 4, dtype, nb_dims, &
      dims, strides))
  call show_all("tensornd", [dtype, nb_dims, dims, strides])

  call show("cudnnCreateFilterDescriptor", cudnnCreateFilterDescriptor(w_desc))
  call show("cudnnSetFilter4dDescriptor", cudnnSetFilter4dDescriptor(w_desc, CUDNN_DATA_HALF, &
      CUDNN_TENSOR_NHWC, 16, 1, 3, 3))
  call show("cudnnGetFilter4dDescriptor", cudnnGetFilter4dDescriptor(w_desc, dtype, fmt, n, c, h, w))
  call show_all("filter", [dtype, fmt, n, c, h, w])
  call show("cudnnSetFilter4dDescriptor", cudnnSetFilter4dDescriptor(w_desc, CUDNN_DATA_FLOAT, &
      CUDNN_TENSOR_NCHW, 16, 1, 3, 3))
  call show("cudnnSetTensor4dDescriptor", cudnnSetTensor4dDescriptor(x_desc, CUDNN_TENSOR_NCHW, &
      CUDNN_DATA_FLOAT, 4, 1, 1024, 1024))
  call show("cudnnCreateConvolutionDescriptor", cudnnCreateConvolutionDescriptor(conv_desc))
  call show("cudnnSetConvolution2dDescriptor", cudnnSetConvolution2dDescriptor(conv_desc, &
      1, 1, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT))
  call show("cudnnSetConvolutionMathType", cudnnSetConvolutionMathType(conv_desc, CUDNN_FMA_MATH))
  call show("cudnnGetConvolutionMathType", cudnnGetConvolutionMathType(conv_desc, math_type))
  call show("math_type", math_type)
  call show("cudnnGetConvolution2dForwardOutputDim", &
      cudnnGetConvolution2dForwardOutputDim(conv_desc, x_desc, w_desc, n, c, h, w))
  call show_all("output_dim", [n, c, h, w])

  call show("cudnnCreateActivationDescriptor", cudnnCreateActivationDescriptor(act_desc))
  call show("cudnnSetActivationDescriptor", cudnnSetActivationDescriptor(act_desc, &
      CUDNN_ACTIVATION_CLIPPED_RELU, CUDNN_PROPAGATE_NAN, 6.5_c_double))
  call show("cudnnGetActivationDescriptor", cudnnGetActivationDescriptor(act_desc, mode, nan_opt, coef))
  call show_all("activation", [mode, nan_opt, int(coef * 2)])

  status = cudnnSetTensor4dDescriptor(x_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, -1, 1, 8, 8)
  call show("bad_param_status", status)
  print '(A, 1X, A)', "cudnnGetErrorString", fortran_string(cudnnGetErrorString(status))
  call cudnnGetLastErrorString(message, len(message, c_size_t))
  print '(A, 1X, A)', "cudnnGetLastErrorString", message(1:index(message, c_null_char) - 1)

  call show("cudnnDestroyActivationDescriptor", cudnnDestroyActivationDescriptor(act_desc))
  call show("cudnnDestroyConvolutionDescriptor", cudnnDestroyConvolutionDescriptor(conv_desc))
  call show("cudnnDestroyFilterDescriptor", cudnnDestroyFilterDescriptor(w_desc))
  call show("cudnnDestroyTensorDescriptor", cudnnDestroyTensorDescriptor(x_desc))

  call show("cublasGetProperty", cublasGetProperty(MAJOR_VERSION, version))
  call show("major_version", version)
  print '(A, 1X, A)', "cublasGetStatusName", fortran_string(cublasGetStatusName(CUBLAS_STATUS_INVALID_VALUE))

contains

  subroutine show(name, value)
    character(len=*), intent(in) :: name
    integer(c_int), intent(in) :: value
    print '(A, 1X, I0)', name, value
  end subroutine show

  subroutine show_all(name, values)
    character(len=*), intent(in) :: name
    integer(c_int), intent(in) :: values(:)
    print '(A, *(1X, I0))', name, values
  end subroutine show_all

end program host_calls
