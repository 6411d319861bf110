! One SGD step of the seed's CNN as cuDNN and cuBLAS calls: the legacy step of the cudnn backend
! (cudnn_denoise/network/model.py, layers/), call for call, in the order `python -m cudnn_denoise.plan`
! prints (tests/fortran/test_port.py checks it; docs/fortran.md shows this file). Setup, which
! fills model_t, is denoise_setup; the program around it is denoise_train.
module denoise_step
  use, intrinsic :: iso_c_binding
  use cudnn_interfaces
  use cudnn_denoise_checkpoint, only: NUM_PARAMS
  use denoise_check, only: check_cudnn, check_cublas
  use denoise_graph_api, only: op_graph_t, execute_on
  implicit none
  private
  public :: conv_t, model_t, LOSS_SLOTS, train_step, evaluate, at

  integer, parameter :: LOSS_SLOTS = 1024  ! sums of squares kept on the device between reads

  ! alpha and beta are host floats, read when the call is made (CUDNN_DATA_FLOAT data)
  real(c_float), target, save :: one = 1, zero = 0, minus_one = -1

  ! One convolution layer, C -> K channels, 3x3, pad 1: descriptors and algorithms made once.
  type :: conv_t
    character(len=5) :: name = ""                     ! conv1, conv2, conv3
    integer(c_int) :: c = 0, k = 0
    type(c_ptr) :: x_desc = c_null_ptr, y_desc = c_null_ptr, b_desc = c_null_ptr  ! tensors
    type(c_ptr) :: w_desc = c_null_ptr                ! filter (K, C, 3, 3)
    type(c_ptr) :: fwd_desc = c_null_ptr, bwd_data_desc = c_null_ptr, bwd_filter_desc = c_null_ptr
    integer(c_int) :: fwd_algo = 0, bwd_data_algo = 0, bwd_filter_algo = 0
    integer(c_size_t) :: fwd_bytes = 0, bwd_data_bytes = 0, bwd_filter_bytes = 0
    type(c_ptr) :: w = c_null_ptr, b = c_null_ptr     ! views into params
    type(c_ptr) :: dw = c_null_ptr, db = c_null_ptr   ! views into grads
    type(c_ptr) :: db_per_sample = c_null_ptr         ! (N*K) floats: the first bias gemv's result
    ! the graph API path: the filter and bias the forward graph reads, the filter the dgrad graph
    ! reads and the filter gradient the wgrad graph writes (with --precision bf16 some are the
    ! BF16 copies' views: layers/precision.py; else w, b, w, dw)
    type(c_ptr) :: fwd_w = c_null_ptr, fwd_b = c_null_ptr, dgrad_w = c_null_ptr, wgrad_dw = c_null_ptr
    type(c_ptr) :: dw_fp32_desc = c_null_ptr, dw_bf16_desc = c_null_ptr  ! bf16: (1, K*C*9, 1, 1)
  end type conv_t

  ! The model for one (N, H, W); device buffers are named as in the trace (docs/fortran.md).
  type :: model_t
    integer(c_int) :: n = 0, h = 0, w = 0
    logical :: fused = .false.                        ! conv + bias + ReLU in one cuDNN call
    type(c_ptr) :: stream = c_null_ptr, cudnn = c_null_ptr, cublas = c_null_ptr
    type(c_ptr) :: act_desc = c_null_ptr, relu_desc = c_null_ptr  ! ReLU; (N, 16, H, W)
    type(conv_t) :: conv(3)
    type(c_ptr) :: x = c_null_ptr, target = c_null_ptr  ! (N, 1, H, W): the batch of this step
    type(c_ptr) :: a1 = c_null_ptr, a2 = c_null_ptr   ! (N, 16, H, W): conv output, ReLU in place
    type(c_ptr) :: y = c_null_ptr, dy = c_null_ptr    ! (N, 1, H, W)
    type(c_ptr) :: dh2 = c_null_ptr, dh1 = c_null_ptr ! (N, 16, H, W): dL/dh, then dL/da in place
    type(c_ptr) :: params = c_null_ptr, grads = c_null_ptr  ! (NUM_PARAMS)
    type(c_ptr) :: loss_sums = c_null_ptr             ! (LOSS_SLOTS + 1)
    type(c_ptr) :: workspace = c_null_ptr             ! the largest workspace any algorithm needs
    type(c_ptr) :: ones = c_null_ptr                  ! max(H*W, N) ones (graph API: max(N*H, W) too)
    ! --graph-api (denoise_graph_api; network/model.py with graph_api=True): the hidden buffers are
    ! NHWC (a1, a2 hold h1, h2; dh2, dh1 hold da2, da1), filters KRSC in params and grads
    logical :: graph_api = .false.
    type(op_graph_t) :: fwd(3), wgrad(3), dgrad(3)    ! dgrad(2:3): backward_data relu [bias]
    logical :: bias_fused(3) = .false.                ! dgrad(l) (or relu_bwd(l)) also writes the bias gradient of l-1
    type(c_ptr) :: db_partial = c_null_ptr            ! (16 * W) floats: nhwc_bias_gradient's first gemv
    ! --precision bf16 (network/model.py, precision="bf16"): a1, a2, dh2, dh1 hold BFLOAT16 (2 bytes
    ! an element: device memory only cuDNN and cuBLAS read, as Python's uint16 storage); the
    ! parameters, grads, y, dy and the loss stay FP32. A split dgrad (fusion.DGRAD_FORMS) is
    ! dgrad(l) into dh, then relu_bwd(l).
    logical :: bf16 = .false.
    logical :: split(3) = .false.
    type(op_graph_t) :: relu_bwd(3)                   ! relu_backward [bias], after a split dgrad(l)
    type(c_ptr) :: params16 = c_null_ptr, grads16 = c_null_ptr  ! (NUM_PARAMS) BF16, filters KRSC
    type(c_ptr) :: x16 = c_null_ptr, dy16 = c_null_ptr  ! (N, 1, H, W) BF16
    type(c_ptr) :: dh = c_null_ptr                    ! (N, 16, H, W) BF16: a split dgrad's output
    type(c_ptr) :: ones16 = c_null_ptr                ! N*H BF16 ones: cublasSgemmEx's
    type(c_ptr) :: params_fp32_desc = c_null_ptr, params_bf16_desc = c_null_ptr  ! (1, NUM_PARAMS, 1, 1)
    type(c_ptr) :: io_fp32_desc = c_null_ptr, io_bf16_desc = c_null_ptr          ! (N, 1, H, W)
  end type model_t

contains

  ! The device address `bytes` past p: a view into a buffer (conv1.weight = at(params, 0)).
  function at(p, bytes) result(q)
    type(c_ptr), intent(in) :: p
    integer(c_intptr_t), intent(in) :: bytes
    type(c_ptr) :: q
    q = transfer(transfer(p, 0_c_intptr_t) + bytes, q)
  end function at

  ! One SGD step on the batch in m%x, m%target; its sum of squared errors goes to loss_sums(slot).
  subroutine train_step(m, lr, slot)
    type(model_t), intent(in) :: m
    real(c_float), intent(in) :: lr
    integer, intent(in) :: slot                       ! 0-based, as Python's loss_sums[slot]

    if (m%graph_api) then
      call train_step_graph_api(m, lr, slot)
      return
    end if
    call forward(m)
    call mse_loss(m, slot)
    ! backward: each layer's filter, bias and (but conv1) data gradient; ReLUs in place
    call conv_backward_filter(m, m%conv(3), m%a2, m%dy)
    call conv_backward_bias(m, m%conv(3), m%dy)
    call conv_backward_data(m, m%conv(3), m%dy, m%dh2)
    call relu_backward(m, m%a2, m%dh2)
    call conv_backward_filter(m, m%conv(2), m%a1, m%dh2)
    call conv_backward_bias(m, m%conv(2), m%dh2)
    call conv_backward_data(m, m%conv(2), m%dh2, m%dh1)
    call relu_backward(m, m%a1, m%dh1)
    call conv_backward_filter(m, m%conv(1), m%x, m%dh1)
    call conv_backward_bias(m, m%conv(1), m%dh1)
    call sgd(m, lr)
  end subroutine train_step

  ! The loss of the parameters on m%x, m%target, without a step: its sum of squared errors goes to
  ! loss_sums(LOSS_SLOTS), the slot Python's evaluate uses (the same forward and MSE calls).
  subroutine evaluate(m)
    type(model_t), intent(in) :: m
    call forward(m)
    call mse_loss(m, LOSS_SLOTS)
  end subroutine evaluate

  ! conv1 + bias + relu1, conv2 + bias + relu2, conv3 + bias: m%x -> m%y
  subroutine forward(m)
    type(model_t), intent(in) :: m
    if (m%graph_api) then
      call forward_graph_api(m)
      return
    end if
    if (m%fused) then
      call conv_forward_bias_relu(m, m%conv(1), m%x, m%a1)
      call conv_forward_bias_relu(m, m%conv(2), m%a1, m%a2)
    else
      call conv_forward(m, m%conv(1), m%x, m%a1)
      call relu_forward(m, m%a1)
      call conv_forward(m, m%conv(2), m%a1, m%a2)
      call relu_forward(m, m%a2)
    end if
    call conv_forward(m, m%conv(3), m%a2, m%y)
  end subroutine forward

  ! y = conv(x, w) + b: cudnnConvolutionForward (beta 0), then cudnnAddTensor (beta 1)
  subroutine conv_forward(m, c, x, y)
    type(model_t), intent(in) :: m
    type(conv_t), intent(in) :: c
    type(c_ptr), intent(in) :: x, y
    call check_cudnn(cudnnConvolutionForward(m%cudnn, c_loc(one), c%x_desc, x, c%w_desc, c%w, &
        c%fwd_desc, c%fwd_algo, m%workspace, c%fwd_bytes, c_loc(zero), c%y_desc, y), &
        "cudnnConvolutionForward (" // c%name // ")")
    call check_cudnn(cudnnAddTensor(m%cudnn, c_loc(one), c%b_desc, c%b, c_loc(one), c%y_desc, y), &
        "cudnnAddTensor (" // c%name // ")")
  end subroutine conv_forward

  ! y = relu(conv(x, w) + 0 * y + b) in one call: alpha2 = 0 makes z (given as y) drop out
  subroutine conv_forward_bias_relu(m, c, x, y)
    type(model_t), intent(in) :: m
    type(conv_t), intent(in) :: c
    type(c_ptr), intent(in) :: x, y
    call check_cudnn(cudnnConvolutionBiasActivationForward(m%cudnn, c_loc(one), c%x_desc, x, &
        c%w_desc, c%w, c%fwd_desc, c%fwd_algo, m%workspace, c%fwd_bytes, c_loc(zero), c%y_desc, y, &
        c%b_desc, c%b, m%act_desc, c%y_desc, y), &
        "cudnnConvolutionBiasActivationForward (" // c%name // ")")
  end subroutine conv_forward_bias_relu

  ! a = max(a, 0) in place
  subroutine relu_forward(m, a)
    type(model_t), intent(in) :: m
    type(c_ptr), intent(in) :: a
    call check_cudnn(cudnnActivationForward(m%cudnn, m%act_desc, c_loc(one), m%relu_desc, a, &
        c_loc(zero), m%relu_desc, a), "cudnnActivationForward")
  end subroutine relu_forward

  ! d = d * (h > 0) in place; cuDNN's x argument gets the ReLU output h too (the same mask)
  subroutine relu_backward(m, h, d)
    type(model_t), intent(in) :: m
    type(c_ptr), intent(in) :: h, d
    call check_cudnn(cudnnActivationBackward(m%cudnn, m%act_desc, c_loc(one), m%relu_desc, h, &
        m%relu_desc, d, m%relu_desc, h, c_loc(zero), m%relu_desc, d), "cudnnActivationBackward")
  end subroutine relu_backward

  ! dy = y - target; loss_sums(slot) = dy . dy, left on the device; dy = 2 dy / numel
  subroutine mse_loss(m, slot)
    type(model_t), intent(in) :: m
    integer, intent(in) :: slot
    real(c_float), target :: two_over_numel
    integer(c_int) :: numel
    numel = m%n * m%h * m%w
    ! as Python: 2 / numel in double, then rounded to float
    two_over_numel = real(2.0_c_double / real(numel, c_double), c_float)
    call check_cublas(cublasScopy_v2(m%cublas, numel, m%y, 1, m%dy, 1), "cublasScopy_v2")
    call check_cublas(cublasSaxpy_v2(m%cublas, numel, c_loc(minus_one), m%target, 1, m%dy, 1), &
        "cublasSaxpy_v2 (y - target)")
    call check_cublas(cublasSetPointerMode_v2(m%cublas, CUBLAS_POINTER_MODE_DEVICE), &
        "cublasSetPointerMode_v2")
    call check_cublas(cublasSdot_v2(m%cublas, numel, m%dy, 1, m%dy, 1, &
        at(m%loss_sums, 4_c_intptr_t * slot)), "cublasSdot_v2")
    call check_cublas(cublasSetPointerMode_v2(m%cublas, CUBLAS_POINTER_MODE_HOST), &
        "cublasSetPointerMode_v2")
    call check_cublas(cublasSscal_v2(m%cublas, numel, c_loc(two_over_numel), m%dy, 1), &
        "cublasSscal_v2")
  end subroutine mse_loss

  ! dw = sum over n, h, w of x (shifted) * dy
  subroutine conv_backward_filter(m, c, x, dy)
    type(model_t), intent(in) :: m
    type(conv_t), intent(in) :: c
    type(c_ptr), intent(in) :: x, dy
    call check_cudnn(cudnnConvolutionBackwardFilter(m%cudnn, c_loc(one), c%x_desc, x, c%y_desc, dy, &
        c%bwd_filter_desc, c%bwd_filter_algo, m%workspace, c%bwd_filter_bytes, c_loc(zero), &
        c%w_desc, c%dw), "cudnnConvolutionBackwardFilter (" // c%name // ")")
  end subroutine conv_backward_filter

  ! db(K) = sum over n, h, w of dy: dy seen column-major as an (H*W) x (N*K) matrix times ones
  ! gives db_per_sample (N*K), which as a K x N matrix times ones(N) gives db
  subroutine conv_backward_bias(m, c, dy)
    type(model_t), intent(in) :: m
    type(conv_t), intent(in) :: c
    type(c_ptr), intent(in) :: dy
    integer(c_int) :: hw
    hw = m%h * m%w
    call check_cublas(cublasSgemv_v2(m%cublas, CUBLAS_OP_T, hw, m%n * c%k, c_loc(one), dy, hw, &
        m%ones, 1, c_loc(zero), c%db_per_sample, 1), "cublasSgemv_v2 (" // c%name // " bias, per sample)")
    call check_cublas(cublasSgemv_v2(m%cublas, CUBLAS_OP_N, c%k, m%n, c_loc(one), c%db_per_sample, &
        c%k, m%ones, 1, c_loc(zero), c%db, 1), "cublasSgemv_v2 (" // c%name // " bias)")
  end subroutine conv_backward_bias

  ! dx = conv_transpose(dy, w)
  subroutine conv_backward_data(m, c, dy, dx)
    type(model_t), intent(in) :: m
    type(conv_t), intent(in) :: c
    type(c_ptr), intent(in) :: dy, dx
    call check_cudnn(cudnnConvolutionBackwardData(m%cudnn, c_loc(one), c%w_desc, c%w, c%y_desc, dy, &
        c%bwd_data_desc, c%bwd_data_algo, m%workspace, c%bwd_data_bytes, c_loc(zero), c%x_desc, dx), &
        "cudnnConvolutionBackwardData (" // c%name // ")")
  end subroutine conv_backward_data

  ! params = params - lr * grads over all NUM_PARAMS parameters at once
  subroutine sgd(m, lr)
    type(model_t), intent(in) :: m
    real(c_float), intent(in) :: lr
    real(c_float), target :: minus_lr
    minus_lr = -lr
    call check_cublas(cublasSaxpy_v2(m%cublas, NUM_PARAMS, c_loc(minus_lr), m%grads, 1, m%params, 1), &
        "cublasSaxpy_v2 (sgd)")
  end subroutine sgd

  ! ---- the graph API (NHWC) step: network/model.py's _forward and _backward_graph_api ----

  ! conv1, conv2, conv3 forward: one cudnnBackendExecute each (conv + bias [+ ReLU] fused); in
  ! BF16 the parameters' BF16 copy is made first (the graphs read some of its views)
  subroutine forward_graph_api(m)
    type(model_t), intent(in) :: m
    if (m%bf16) call transform(m, m%params_fp32_desc, m%params, m%params_bf16_desc, m%params16, &
        "params to bf16")
    call execute_on(m%fwd(1), m%cudnn, [m%x, m%conv(1)%fwd_w, m%conv(1)%fwd_b, m%a1], m%workspace)
    call execute_on(m%fwd(2), m%cudnn, [m%a1, m%conv(2)%fwd_w, m%conv(2)%fwd_b, m%a2], m%workspace)
    call execute_on(m%fwd(3), m%cudnn, [m%a2, m%conv(3)%fwd_w, m%conv(3)%fwd_b, m%y], m%workspace)
  end subroutine forward_graph_api

  ! network/model.py _backward_graph_api; in BF16 the convolutions read x16 and dy16 (made here)
  ! and write the BF16 filter gradients, widened into grads before the update. Bias gradients are
  ! FP32 always.
  subroutine train_step_graph_api(m, lr, slot)
    type(model_t), intent(in) :: m
    real(c_float), intent(in) :: lr
    integer, intent(in) :: slot
    type(c_ptr) :: x, dy
    integer :: l
    call forward_graph_api(m)
    call mse_loss(m, slot)
    x = m%x
    dy = m%dy
    if (m%bf16) then
      call transform(m, m%io_fp32_desc, m%dy, m%io_bf16_desc, m%dy16, "dy to bf16")
      call transform(m, m%io_fp32_desc, m%x, m%io_bf16_desc, m%x16, "x to bf16")
      x = m%x16
      dy = m%dy16
    end if
    call execute_on(m%wgrad(3), m%cudnn, [m%a2, dy, m%conv(3)%wgrad_dw], m%workspace)
    call nhwc_bias_gradient(m, m%dy, .false., m%conv(3)%db, m%conv(3)%k, m%conv(3)%name)
    call dgrad_graph_api(m, 3, dy, m%a2, m%dh2)
    if (.not. m%bias_fused(3)) call nhwc_bias_gradient(m, m%dh2, m%bf16, m%conv(2)%db, m%conv(2)%k, &
        m%conv(2)%name)
    call execute_on(m%wgrad(2), m%cudnn, [m%a1, m%dh2, m%conv(2)%wgrad_dw], m%workspace)
    call dgrad_graph_api(m, 2, m%dh2, m%a1, m%dh1)
    if (.not. m%bias_fused(2)) call nhwc_bias_gradient(m, m%dh1, m%bf16, m%conv(1)%db, m%conv(1)%k, &
        m%conv(1)%name)
    call execute_on(m%wgrad(1), m%cudnn, [x, m%dh1, m%conv(1)%wgrad_dw], m%workspace)
    if (m%bf16) then
      do l = 1, 3
        call transform(m, m%conv(l)%dw_bf16_desc, m%conv(l)%wgrad_dw, m%conv(l)%dw_fp32_desc, m%conv(l)%dw, &
            m%conv(l)%name // " filter gradient to fp32")
      end do
    end if
    call sgd(m, lr)
  end subroutine train_step_graph_api

  ! da = conv_transpose(dy, w(l)) * (h > 0) [and, fused, db of layer l-1]: one graph, or split
  ! into dgrad(l) (dy, w -> dh) and relu_bwd(l) (dh, h -> da [, db])
  subroutine dgrad_graph_api(m, l, dy, h, da)
    type(model_t), intent(in) :: m
    integer, intent(in) :: l
    type(c_ptr), intent(in) :: dy, h, da
    if (m%split(l)) then
      call execute_on(m%dgrad(l), m%cudnn, [dy, m%conv(l)%dgrad_w, m%dh], m%workspace)
      if (m%bias_fused(l)) then
        call execute_on(m%relu_bwd(l), m%cudnn, [m%dh, h, da, m%conv(l - 1)%db], m%workspace)
      else
        call execute_on(m%relu_bwd(l), m%cudnn, [m%dh, h, da], m%workspace)
      end if
    else if (m%bias_fused(l)) then
      call execute_on(m%dgrad(l), m%cudnn, [dy, m%conv(l)%dgrad_w, h, da, m%conv(l - 1)%db], m%workspace)
    else
      call execute_on(m%dgrad(l), m%cudnn, [dy, m%conv(l)%dgrad_w, h, da], m%workspace)
    end if
  end subroutine dgrad_graph_api

  ! y = x in another data type (layers/precision.py Convert): cudnnTransformTensor, alpha 1, beta 0
  subroutine transform(m, x_desc, x, y_desc, y, what)
    type(model_t), intent(in) :: m
    type(c_ptr), intent(in) :: x_desc, x, y_desc, y
    character(len=*), intent(in) :: what
    call check_cudnn(cudnnTransformTensor(m%cudnn, c_loc(one), x_desc, x, c_loc(zero), y_desc, y), &
        "cudnnTransformTensor (" // what // ")")
  end subroutine transform

  ! db(K) = sum over n, h, w of the NHWC dy (layers/fusion.py nhwc_bias_gradient): dy is a
  ! (W*K) x (N*H) matrix; s = dy . ones(N*H) (W*K), then db = S . ones(W), S = s as K x W. A BF16
  ! dy's s is cublasSgemmEx (n = 1, BF16 dy and ones, FP32 result) instead of the first gemv.
  subroutine nhwc_bias_gradient(m, dy, bf16, db, k, name)
    type(model_t), intent(in) :: m
    type(c_ptr), intent(in) :: dy, db
    logical, intent(in) :: bf16
    integer(c_int), intent(in) :: k
    character(len=*), intent(in) :: name
    if (bf16) then
      call check_cublas(cublasSgemmEx(m%cublas, CUBLAS_OP_N, CUBLAS_OP_N, m%w * k, 1, m%n * m%h, c_loc(one), &
          dy, CUDA_R_16BF, m%w * k, m%ones16, CUDA_R_16BF, m%n * m%h, c_loc(zero), m%db_partial, CUDA_R_32F, &
          m%w * k), "cublasSgemmEx (" // name // " bias, per column)")
    else
      call check_cublas(cublasSgemv_v2(m%cublas, CUBLAS_OP_N, m%w * k, m%n * m%h, c_loc(one), dy, &
          m%w * k, m%ones, 1, c_loc(zero), m%db_partial, 1), "cublasSgemv_v2 (" // name // " bias, per column)")
    end if
    call check_cublas(cublasSgemv_v2(m%cublas, CUBLAS_OP_N, k, m%w, c_loc(one), m%db_partial, k, &
        m%ones, 1, c_loc(zero), db, 1), "cublasSgemv_v2 (" // name // " bias)")
  end subroutine nhwc_bias_gradient

end module denoise_step
