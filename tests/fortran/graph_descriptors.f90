! The graph API path's descriptors built by fortran/denoise_graph_api.f90 with the real cuDNN, up to
! the finalized operation descriptors (no handle, so no operation graph: that needs a GPU). Each
! tensor of each graph is read back from cuDNN and printed as one line
!   label index uid data_type alignment virtual (alignment: what was set, cuDNN does not return it) d1 d2 d3 d4 s1 s2 s3 s4
! tests/fortran/test_graph_api.py compares the lines with what layers/graphs.py builds.
program graph_descriptors
  use cudnn_interfaces
  use denoise_graph_api
  implicit none
  integer, parameter :: n = 2, h = 8, w = 6
  type(op_graph_t) :: g

  call forward_graph(g, 1, 16, .true., n, h, w);  call show("conv1.forward", g)
  call forward_graph(g, 16, 16, .true., n, h, w); call show("conv2.forward", g)
  call forward_graph(g, 16, 1, .false., n, h, w); call show("conv3.forward", g)
  call wgrad_graph(g, 1, 16, n, h, w);  call show("conv1.wgrad", g)
  call wgrad_graph(g, 16, 16, n, h, w); call show("conv2.wgrad", g)
  call wgrad_graph(g, 16, 1, n, h, w);  call show("conv3.wgrad", g)
  call dgrad_graph(g, 16, 16, n, h, w, .true.);  call show("conv2.dgrad_bias", g)
  call dgrad_graph(g, 16, 16, n, h, w, .false.); call show("conv2.dgrad", g)
  call dgrad_graph(g, 16, 1, n, h, w, .true.);   call show("conv3.dgrad_bias", g)
  call dgrad_graph(g, 16, 1, n, h, w, .false.);  call show("conv3.dgrad", g)
  call plain_dgrad_graph(g, 16, 16, n, h, w); call show("conv2.plain_dgrad", g)
  call plain_dgrad_graph(g, 16, 1, n, h, w);  call show("conv3.plain_dgrad", g)
  call relu_backward_graph(g, 16, n, h, w, .true.);  call show("relu_backward_bias", g)
  call relu_backward_graph(g, 16, n, h, w, .false.); call show("relu_backward", g)
  ! --precision bf16: the roles of layers/precision.py's layer_types as BFLOAT16
  call forward_graph(g, 1, 16, .true., n, h, w, BF16_FORWARD(:, 1));  call show("conv1.forward.bf16", g)
  call forward_graph(g, 16, 16, .true., n, h, w, BF16_FORWARD(:, 2)); call show("conv2.forward.bf16", g)
  call forward_graph(g, 16, 1, .false., n, h, w, BF16_FORWARD(:, 3)); call show("conv3.forward.bf16", g)
  call wgrad_graph(g, 1, 16, n, h, w, BF16_BACKWARD);  call show("conv1.wgrad.bf16", g)
  call wgrad_graph(g, 16, 1, n, h, w, BF16_BACKWARD);  call show("conv3.wgrad.bf16", g)
  call dgrad_graph(g, 16, 16, n, h, w, .true., BF16_BACKWARD); call show("conv2.dgrad_bias.bf16", g)
  call plain_dgrad_graph(g, 16, 1, n, h, w, BF16_BACKWARD); call show("conv3.plain_dgrad.bf16", g)
  call relu_backward_graph(g, 16, n, h, w, .true., BF16_BACKWARD);  call show("relu_backward_bias.bf16", g)
  call relu_backward_graph(g, 16, n, h, w, .false., BF16_BACKWARD); call show("relu_backward.bf16", g)

contains

  subroutine show(label, g)
    character(len=*), intent(in) :: label
    type(op_graph_t), intent(in) :: g
    integer :: i
    integer(c_int64_t) :: uid(1), align(1), dims(4), strides(4), count
    integer(c_int), target :: dtype
    logical(c_bool), target :: virtual
    do i = 1, g%n_tensors
      call get_int64(g%tensors(i), CUDNN_ATTR_TENSOR_UNIQUE_ID, uid, count, "uid")
      align = GRAPH_ALIGNMENT  ! cuDNN 9 does not report BYTE_ALIGNMENT back (NOT_SUPPORTED)
      call get_int64(g%tensors(i), CUDNN_ATTR_TENSOR_DIMENSIONS, dims, count, "dims")
      call get_int64(g%tensors(i), CUDNN_ATTR_TENSOR_STRIDES, strides, count, "strides")
      if (cudnnBackendGetAttribute(g%tensors(i), CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, &
          1_c_int64_t, count, c_loc(dtype)) /= 0) stop 2
      if (cudnnBackendGetAttribute(g%tensors(i), CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, &
          1_c_int64_t, count, c_loc(virtual)) /= 0) stop 3
      print '(A, 1X, I0, 1X, I0, 1X, I0, 1X, I0, 1X, I0, 8(1X, I0))', label, i, uid(1), dtype, align(1), &
          merge(1, 0, logical(virtual)), dims, strides
    end do
    print '(A, 1X, A, 1X, I0, 1X, I0)', label, "ops", g%n_ops, g%n_roles
  end subroutine show

end program graph_descriptors
