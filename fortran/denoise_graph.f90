! --graph: the step captured once into a CUDA graph and replayed, as train --graph does
! (network/model.py, train_step_async): a captured step reads fixed addresses, so each batch is
! first copied into x_static and target_static (cudaMemcpyAsync on the step's stream), the graph
! writes its loss sum to loss_sums(LOSS_SLOTS), and that sum is copied to the step's slot. The
! capture records the calls without running them: the first step launches the graph it captured.
! Either step is captured: with --graph-api its cudnnBackendExecute calls too (train --graph-api
! --graph), each variant pack naming the static buffers; the captured kernels keep those addresses.
module denoise_graph
  use, intrinsic :: iso_c_binding
  use cudnn_interfaces
  use denoise_check, only: check_cuda
  use denoise_step, only: model_t, LOSS_SLOTS, train_step, at
  implicit none
  private
  public :: graph_t, graph_open, graph_step, graph_close

  type :: graph_t
    type(c_ptr) :: exec = c_null_ptr              ! the instantiated graph; null until captured
    type(c_ptr) :: x_static = c_null_ptr, target_static = c_null_ptr  ! (N, 1, H, W)
    integer(c_size_t) :: batch_bytes = 0
  end type graph_t

contains

  subroutine graph_open(g, m)
    type(graph_t), intent(out) :: g
    type(model_t), intent(in) :: m
    g%batch_bytes = 4_c_size_t * m%n * m%h * m%w
    call check_cuda(cudaMalloc(g%x_static, g%batch_bytes), "cudaMalloc (x_static)")
    call check_cuda(cudaMalloc(g%target_static, g%batch_bytes), "cudaMalloc (target_static)")
  end subroutine graph_open

  ! One step on the batch in m%x, m%target through the graph; its loss sum goes to loss_sums(slot).
  subroutine graph_step(g, m, lr, slot)
    type(graph_t), intent(inout) :: g
    type(model_t), intent(in) :: m
    real(c_float), intent(in) :: lr                ! the same at every step: captured once
    integer, intent(in) :: slot
    type(model_t) :: fixed
    type(c_ptr) :: graph
    call copy(g%x_static, m%x, g%batch_bytes, m%stream)
    call copy(g%target_static, m%target, g%batch_bytes, m%stream)
    if (.not. c_associated(g%exec)) then
      fixed = m
      fixed%x = g%x_static
      fixed%target = g%target_static
      ! Relaxed: the reader's threads call only libc, but cuDNN and cuBLAS may query the device
      call check_cuda(cudaStreamBeginCapture(m%stream, cudaStreamCaptureModeRelaxed), &
          "cudaStreamBeginCapture")
      call train_step(fixed, lr, LOSS_SLOTS)
      call check_cuda(cudaStreamEndCapture(m%stream, graph), "cudaStreamEndCapture")
      call check_cuda(cudaGraphInstantiate(g%exec, graph, 0_c_long_long), "cudaGraphInstantiate")
      call check_cuda(cudaGraphDestroy(graph), "cudaGraphDestroy")  ! the executable keeps a copy
    end if
    call check_cuda(cudaGraphLaunch(g%exec, m%stream), "cudaGraphLaunch")
    call copy(at(m%loss_sums, 4_c_intptr_t * slot), at(m%loss_sums, 4_c_intptr_t * LOSS_SLOTS), &
        4_c_size_t, m%stream)
  end subroutine graph_step

  subroutine copy(dst, src, bytes, stream)
    type(c_ptr), intent(in) :: dst, src, stream
    integer(c_size_t), intent(in) :: bytes
    call check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream), &
        "cudaMemcpyAsync (device to device)")
  end subroutine copy

  subroutine graph_close(g)
    type(graph_t), intent(inout) :: g
    if (c_associated(g%exec)) call check_cuda(cudaGraphExecDestroy(g%exec), "cudaGraphExecDestroy")
    call check_cuda(cudaFree(g%x_static), "cudaFree")
    call check_cuda(cudaFree(g%target_static), "cudaFree")
  end subroutine graph_close

end module denoise_graph
