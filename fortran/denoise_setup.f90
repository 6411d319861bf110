! Setup for denoise_step: handles on one stream, device buffers, descriptors and algorithms for one
! (N, H, W), as DenoiseCNN.__init__ makes them (docs/fortran.md, "Setup"); and their release.
!
! Algorithms come from an algorithm table that the Python run wrote (train's --out holds
! algorithms.txt: the same algorithms, so the same kernels; module denoise_algorithms), or, without
! one, from cuDNN's heuristics (cudnnGet*Algorithm_v7) under Python's rule: the first result that succeeded, fits the
! workspace limit, is deterministic when asked, and uses CUDNN_FMA_MATH in strict fp32.
module denoise_setup
  use, intrinsic :: iso_c_binding
  use cudnn_interfaces
  use cudnn_denoise_checkpoint, only: NUM_PARAMS, CONV1_WEIGHT_OFFSET, CONV1_BIAS_OFFSET, &
      CONV2_WEIGHT_OFFSET, CONV2_BIAS_OFFSET, CONV3_WEIGHT_OFFSET, CONV3_BIAS_OFFSET
  use denoise_check, only: check_cuda, check_cudnn, check_cublas, fail, int_text
  use denoise_step, only: conv_t, model_t, LOSS_SLOTS, at
  use denoise_algorithms, only: algorithm_table_t, FORWARD, BACKWARD_FILTER, BACKWARD_DATA, &
      read_table
  use denoise_graph_api, only: op_graph_t, forward_graph, wgrad_graph, dgrad_graph, plain_dgrad_graph, &
      relu_backward_graph, operation_graph, choose_engine, to_krsc, engine_table_t, read_engine_table, &
      engine_row, BF16_FORWARD, BF16_BACKWARD
  implicit none
  private
  public :: model_options_t, model_create, model_destroy

  integer, parameter :: HIDDEN = 16  ! channels of the hidden layers

  type :: model_options_t
    logical :: fused = .false.
    logical :: strict_fp32 = .false.           ! --math fp32: CUDNN_FMA_MATH, no TF32
    logical :: deterministic = .false.         ! the heuristics' choice must be deterministic
    logical :: graph_api = .false.             ! --graph-api: the NHWC step of fused operation graphs
    logical :: bf16 = .false.                  ! --precision bf16 (with graph_api only)
    character(len=:), allocatable :: engines   ! --engines: an engine table to read; "" : heuristics
    character(len=:), allocatable :: algorithms  ! an algorithm table to read; "" : heuristics
  end type model_options_t

contains

  ! Everything a step needs for batches of n x 1 x h x w, on `stream`; params (host, KCRS) copied
  ! in; table: the algorithms it uses.
  subroutine model_create(m, n, h, w, options, stream, params, table)
    type(model_t), intent(inout) :: m
    integer(c_int), intent(in) :: n, h, w
    type(model_options_t), intent(in) :: options
    type(c_ptr), intent(in) :: stream
    real(c_float), intent(in), target :: params(NUM_PARAMS)
    type(algorithm_table_t), intent(out) :: table
    integer(c_size_t) :: hidden_bytes, io_bytes, workspace
    integer(c_int) :: channels(4), i
    real(c_float), target :: device_params(NUM_PARAMS)
    integer(c_intptr_t), parameter :: weight(3) = 4_c_intptr_t * [CONV1_WEIGHT_OFFSET, &
        CONV2_WEIGHT_OFFSET, CONV3_WEIGHT_OFFSET]
    integer(c_intptr_t), parameter :: bias(3) = 4_c_intptr_t * [CONV1_BIAS_OFFSET, &
        CONV2_BIAS_OFFSET, CONV3_BIAS_OFFSET]

    m%n = n
    m%h = h
    m%w = w
    m%fused = options%fused
    m%stream = stream
    ! handles, both on the one stream (layers/context.py)
    call check_cudnn(cudnnCreate(m%cudnn), "cudnnCreate")
    call check_cudnn(cudnnSetStream(m%cudnn, stream), "cudnnSetStream")
    call check_cublas(cublasCreate_v2(m%cublas), "cublasCreate_v2")
    call check_cublas(cublasSetStream_v2(m%cublas, stream), "cublasSetStream_v2")

    ! device buffers; sizes in bytes (BF16 hidden buffers: 2 bytes an element)
    hidden_bytes = merge(2_c_size_t, 4_c_size_t, options%bf16) * n * HIDDEN * h * w
    io_bytes = 4_c_size_t * n * h * w
    call device_alloc(m%params, 4_c_size_t * NUM_PARAMS, "params")
    call device_alloc(m%grads, 4_c_size_t * NUM_PARAMS, "grads")
    call device_alloc(m%loss_sums, 4_c_size_t * (LOSS_SLOTS + 1), "loss_sums")
    call device_alloc(m%a1, hidden_bytes, "a1")
    call device_alloc(m%a2, hidden_bytes, "a2")
    call device_alloc(m%dh1, hidden_bytes, "dh1")
    call device_alloc(m%dh2, hidden_bytes, "dh2")
    call device_alloc(m%y, io_bytes, "y")
    call device_alloc(m%dy, io_bytes, "dy")
    ! the graph API path keeps its filters KRSC on the device (network/model.py _to_device_layout)
    device_params = params
    if (options%graph_api) device_params = to_krsc(params)
    call check_cuda(cudaMemcpy(m%params, c_loc(device_params), 4_c_size_t * NUM_PARAMS, &
        cudaMemcpyHostToDevice), "cudaMemcpy (params to the device)")
    call check_cuda(cudaMemset(m%grads, 0, 4_c_size_t * NUM_PARAMS), "cudaMemset (grads)")
    call check_cuda(cudaMemset(m%loss_sums, 0, 4_c_size_t * (LOSS_SLOTS + 1)), &
        "cudaMemset (loss_sums)")
    if (options%graph_api) then  ! nhwc_bias_gradient's ones too
      call set_ones(m, max(h * w, n, n * h, w))
    else
      call set_ones(m, max(h * w, n))
    end if

    ! the layers: 1 -> 16 -> 16 -> 1 channels
    channels = [1, HIDDEN, HIDDEN, 1]
    do i = 1, 3
      m%conv(i)%name = "conv" // achar(iachar("0") + i)
      m%conv(i)%c = channels(i)
      m%conv(i)%k = channels(i + 1)
      m%conv(i)%w = at(m%params, weight(i))
      m%conv(i)%b = at(m%params, bias(i))
      m%conv(i)%dw = at(m%grads, weight(i))
      m%conv(i)%db = at(m%grads, bias(i))
      m%conv(i)%fwd_w = m%conv(i)%w
      m%conv(i)%fwd_b = m%conv(i)%b
      m%conv(i)%dgrad_w = m%conv(i)%w
      m%conv(i)%wgrad_dw = m%conv(i)%dw
      call conv_descriptors(m%conv(i), n, h, w, options%strict_fp32)
      call device_alloc(m%conv(i)%db_per_sample, 4_c_size_t * n * m%conv(i)%k, &
          m%conv(i)%name // ".db_per_sample")
    end do
    ! ReLU: one activation descriptor; relu1 and relu2 share the (N, 16, H, W) tensor descriptor
    call check_cudnn(cudnnCreateActivationDescriptor(m%act_desc), "cudnnCreateActivationDescriptor")
    call check_cudnn(cudnnSetActivationDescriptor(m%act_desc, CUDNN_ACTIVATION_RELU, &
        CUDNN_PROPAGATE_NAN, 0.0_c_double), "cudnnSetActivationDescriptor")
    m%relu_desc = tensor_4d(n, HIDDEN, h, w)

    if (len(options%algorithms) > 0) then
      call read_table(options%algorithms, n, h, w, options%strict_fp32, table)
    else
      table = algorithm_table_t(n, h, w, options%strict_fp32)
      do i = 1, 3
        call choose_algorithms(m, i, options, table)
      end do
    end if
    call use_table(m, table)
    workspace = 0
    do i = 1, 3
      workspace = max(workspace, m%conv(i)%fwd_bytes, m%conv(i)%bwd_data_bytes, &
          m%conv(i)%bwd_filter_bytes)
    end do
    if (options%bf16) call bf16_setup(m, weight, bias)
    if (options%graph_api) then
      call graph_api_setup(m, options)
      do i = 1, 3
        workspace = max(workspace, int(m%fwd(i)%workspace, c_size_t), int(m%wgrad(i)%workspace, c_size_t), &
            int(m%dgrad(i)%workspace, c_size_t), int(m%relu_bwd(i)%workspace, c_size_t))
      end do
    end if
    if (workspace > 0) call device_alloc(m%workspace, workspace, "workspace")
  end subroutine model_create

  ! The graph API path's graphs (denoise_graph_api, as layers/fusion.py FusedConv2d) and their
  ! engines by heuristics: mode A then the fallback list, the first configuration the policy allows
  ! whose plan finalizes and whose workspace fits the legacy step's limit (Python's
  ! default_workspace_limit, as in the legacy choice). dgrad as Python's forms in DGRAD_FORMS
  ! order: "fused" (dgrad, ReLU backward and the bias-gradient reduction in one graph), "fused
  ! cublas" (the reduction left to nhwc_bias_gradient), and in BF16, which has the scratch buffer
  ! dh, "split" (dgrad into dh, then a graph of ReLU backward and reduction) and "split cublas";
  ! the first that has engines, or the form the engine table's rows name. In BF16 each graph holds
  ! the roles of layers/precision.py's layer_types as BFLOAT16.
  subroutine graph_api_setup(m, options)
    type(model_t), intent(inout) :: m
    type(model_options_t), intent(in) :: options
    integer :: i, form
    logical :: ok, bias, split, table_bias, table_split, split_bias
    integer(c_int64_t) :: wanted(2), relu_wanted(2)
    type(engine_table_t) :: table
    character(len=4), allocatable :: forward16(:), backward16(:)
    m%graph_api = .true.
    if (allocated(options%engines)) then
      if (len(options%engines) > 0) call read_engine_table(options%engines, int(m%n), int(m%h), int(m%w), &
          options%strict_fp32, options%bf16, table)
    end if
    call device_alloc(m%db_partial, 4_c_size_t * HIDDEN * m%w, "db_partial")
    backward16 = [character(len=4) ::]
    if (options%bf16) backward16 = BF16_BACKWARD
    do i = 1, 3
      associate (c => m%conv(i))
        forward16 = [character(len=4) ::]
        if (options%bf16) forward16 = BF16_FORWARD(:, i)
        call forward_graph(m%fwd(i), c%c, c%k, i < 3, m%n, m%h, m%w, forward16)
        call engine(m%fwd(i), c%name, engine_row(table, c%name, "forward"))
        call wgrad_graph(m%wgrad(i), c%c, c%k, m%n, m%h, m%w, backward16)
        call engine(m%wgrad(i), c%name, engine_row(table, c%name, "backward_filter"))
        if (i == 1) cycle
        wanted = engine_row(table, c%name, "backward_data", table_bias)
        relu_wanted = engine_row(table, c%name, "relu_backward", split_bias, table_split)
        if (table_split) table_bias = split_bias  ! a split form's reduction is in relu_backward
        ok = .false.
        do form = 1, merge(4, 2, options%bf16)
          bias = mod(form, 2) == 1
          split = form > 2
          if (table%n > 0 .and. ((bias .neqv. table_bias) .or. (split .neqv. table_split))) cycle
          if (split) then
            call plain_dgrad_graph(m%dgrad(i), c%c, c%k, m%n, m%h, m%w, backward16)
            call relu_backward_graph(m%relu_bwd(i), c%c, m%n, m%h, m%w, bias, backward16)
            ok = usable(m%dgrad(i), wanted)
            if (ok) ok = usable(m%relu_bwd(i), relu_wanted)
          else
            call dgrad_graph(m%dgrad(i), c%c, c%k, m%n, m%h, m%w, bias, backward16)
            ok = usable(m%dgrad(i), wanted)
          end if
          if (ok) exit
        end do
        if (.not. ok) call fail("no engine for dgrad + ReLU backward of " // c%name, 1)
        m%bias_fused(i) = bias
        m%split(i) = split
        call show(m%dgrad(i), c%name)
        if (split) call show(m%relu_bwd(i), c%name)
      end associate
    end do
  contains
    ! g's operation graph and an engine for it (wanted: an engine table's row, or heuristics)
    logical function usable(g, wanted) result(ok)
      type(op_graph_t), intent(inout) :: g
      integer(c_int64_t), intent(in) :: wanted(2)
      call operation_graph(g, m%cudnn, ok)
      if (ok) call choose_engine(g, m%cudnn, options%strict_fp32, options%deterministic, &
          wanted, int(workspace_limit(m), c_int64_t), ok)
    end function usable
    subroutine engine(g, name, wanted)
      type(op_graph_t), intent(inout) :: g
      character(len=*), intent(in) :: name
      integer(c_int64_t), intent(in) :: wanted(2)
      logical :: found
      call operation_graph(g, m%cudnn)
      call choose_engine(g, m%cudnn, options%strict_fp32, options%deterministic, wanted, &
          int(workspace_limit(m), c_int64_t), found)
      if (.not. found) call fail("no usable engine for graph " // trim(g%name) // " of " // name // &
          merge(" (strict fp32)   ", "                 ", options%strict_fp32), 1)
      call show(g, name)
    end subroutine engine
    ! one line per graph: "graph API engine: conv2 backward_data relu bias: engine 12 (position 0, TC)"
    subroutine show(g, name)
      type(op_graph_t), intent(in) :: g
      character(len=*), intent(in) :: name
      print '(A)', "graph API engine: " // name // " " // trim(g%name) // ": engine " // int_text(g%engine) // &
          " (position " // int_text(g%position) // trim(merge(", TC    ", "        ", g%tensor_core)) // &
          trim(merge(", nondet", "        ", g%nondeterministic)) // ", workspace " // int_text(g%workspace) // ")"
    end subroutine show
  end subroutine graph_api_setup

  ! --precision bf16 (network/model.py _allocate and _make_bf16_copies): the BF16 copies of the
  ! parameters and filter gradients, x16, dy16, the scratch dh, ones16, the legacy 4-d descriptors
  ! of the conversions, and which buffer each graph reads (layers/precision.py layer_types): conv1's
  ! forward the FP32 filter and bias, conv2's the BF16 filter and FP32 bias, conv3's both BF16;
  ! every dgrad the BF16 filter, every wgrad writes the BF16 filter gradient.
  subroutine bf16_setup(m, weight, bias)
    type(model_t), intent(inout) :: m
    integer(c_intptr_t), intent(in) :: weight(3), bias(3)
    integer(c_size_t) :: io_bytes
    integer :: i
    type(c_ptr) :: fp32_desc, bf16_desc
    real(c_float), target :: one, zero
    one = 1
    zero = 0
    m%bf16 = .true.
    io_bytes = 2_c_size_t * m%n * m%h * m%w
    call device_alloc(m%params16, 2_c_size_t * NUM_PARAMS, "params16")
    call device_alloc(m%grads16, 2_c_size_t * NUM_PARAMS, "grads16")
    call device_alloc(m%x16, io_bytes, "x16")
    call device_alloc(m%dy16, io_bytes, "dy16")
    call device_alloc(m%dh, 2_c_size_t * m%n * HIDDEN * m%h * m%w, "dh")
    call device_alloc(m%ones16, 2_c_size_t * m%n * m%h, "ones16")
    m%params_fp32_desc = tensor_4d(1, NUM_PARAMS, 1, 1)
    m%params_bf16_desc = tensor_4d(1, NUM_PARAMS, 1, 1, CUDNN_DATA_BFLOAT16)
    m%io_fp32_desc = tensor_4d(m%n, 1, m%h, m%w)
    m%io_bf16_desc = tensor_4d(m%n, 1, m%h, m%w, CUDNN_DATA_BFLOAT16)
    ! ones16 from the FP32 ones (the first N*H)
    fp32_desc = tensor_4d(1, 1, 1, m%n * m%h)
    bf16_desc = tensor_4d(1, 1, 1, m%n * m%h, CUDNN_DATA_BFLOAT16)
    call check_cudnn(cudnnTransformTensor(m%cudnn, c_loc(one), fp32_desc, m%ones, c_loc(zero), bf16_desc, &
        m%ones16), "cudnnTransformTensor (ones16)")
    call check_cudnn(cudnnDestroyTensorDescriptor(fp32_desc), "cudnnDestroyTensorDescriptor")
    call check_cudnn(cudnnDestroyTensorDescriptor(bf16_desc), "cudnnDestroyTensorDescriptor")
    do i = 1, 3
      associate (c => m%conv(i))
        c%dgrad_w = at(m%params16, weight(i) / 2)  ! weight, bias: FP32 byte offsets
        c%wgrad_dw = at(m%grads16, weight(i) / 2)
        if (i > 1) c%fwd_w = c%dgrad_w
        if (i == 3) c%fwd_b = at(m%params16, bias(i) / 2)
        c%dw_fp32_desc = tensor_4d(1, c%k * c%c * 9, 1, 1)
        c%dw_bf16_desc = tensor_4d(1, c%k * c%c * 9, 1, 1, CUDNN_DATA_BFLOAT16)
      end associate
    end do
  end subroutine bf16_setup

  subroutine device_alloc(p, bytes, name)
    type(c_ptr), intent(out) :: p
    integer(c_size_t), intent(in) :: bytes
    character(len=*), intent(in) :: name
    call check_cuda(cudaMalloc(p, bytes), "cudaMalloc (" // name // ", " // &
        int_text(int(bytes, c_int64_t)) // " bytes)")
  end subroutine device_alloc

  ! A packed NCHW tensor descriptor: float, or the data type given.
  function tensor_4d(n, c, h, w, dtype) result(desc)
    integer(c_int), intent(in) :: n, c, h, w
    integer(c_int), intent(in), optional :: dtype
    type(c_ptr) :: desc
    integer(c_int) :: data_type
    data_type = CUDNN_DATA_FLOAT
    if (present(dtype)) data_type = dtype
    call check_cudnn(cudnnCreateTensorDescriptor(desc), "cudnnCreateTensorDescriptor")
    call check_cudnn(cudnnSetTensor4dDescriptor(desc, CUDNN_TENSOR_NCHW, data_type, n, c, h, &
        w), "cudnnSetTensor4dDescriptor")
  end function tensor_4d

  ! m%ones = count ones, set by cudnnSetTensor through a temporary 1 x 1 x 1 x count descriptor.
  subroutine set_ones(m, count)
    type(model_t), intent(inout) :: m
    integer(c_int), intent(in) :: count
    real(c_float), target :: value
    type(c_ptr) :: desc
    value = 1
    call device_alloc(m%ones, 4_c_size_t * count, "ones")
    desc = tensor_4d(1, 1, 1, count)
    call check_cudnn(cudnnSetTensor(m%cudnn, desc, m%ones, c_loc(value)), "cudnnSetTensor (ones)")
    call check_cudnn(cudnnDestroyTensorDescriptor(desc), "cudnnDestroyTensorDescriptor")
  end subroutine set_ones

  ! x (N, C, H, W), y (N, K, H, W), b (1, K, 1, 1), w (K, C, 3, 3), one convolution descriptor per
  ! direction (each direction's algorithm brings its own math type); layers/conv.py.
  subroutine conv_descriptors(c, n, h, w, strict_fp32)
    type(conv_t), intent(inout) :: c
    integer(c_int), intent(in) :: n, h, w
    logical, intent(in) :: strict_fp32
    integer(c_int) :: math

    c%x_desc = tensor_4d(n, c%c, h, w)
    c%y_desc = tensor_4d(n, c%k, h, w)
    c%b_desc = tensor_4d(1, c%k, 1, 1)
    call check_cudnn(cudnnCreateFilterDescriptor(c%w_desc), "cudnnCreateFilterDescriptor")
    call check_cudnn(cudnnSetFilter4dDescriptor(c%w_desc, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, c%k, &
        c%c, 3, 3), "cudnnSetFilter4dDescriptor")
    math = merge(CUDNN_FMA_MATH, CUDNN_DEFAULT_MATH, strict_fp32)
    c%fwd_desc = convolution(math)
    c%bwd_data_desc = convolution(math)
    c%bwd_filter_desc = convolution(math)
  end subroutine conv_descriptors

  ! pad 1, stride 1, dilation 1, cross-correlation (as PyTorch), FLOAT compute, the given math type.
  function convolution(math) result(desc)
    integer(c_int), intent(in) :: math
    type(c_ptr) :: desc
    call check_cudnn(cudnnCreateConvolutionDescriptor(desc), "cudnnCreateConvolutionDescriptor")
    call check_cudnn(cudnnSetConvolution2dDescriptor(desc, 1, 1, 1, 1, 1, 1, &
        CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT), "cudnnSetConvolution2dDescriptor")
    call check_cudnn(cudnnSetConvolutionMathType(desc, math), "cudnnSetConvolutionMathType")
  end function convolution

  ! model.default_workspace_limit: four hidden activations' worth, plus 64 MiB.
  integer(c_size_t) function workspace_limit(m)
    type(model_t), intent(in) :: m
    workspace_limit = 4_c_size_t * m%n * HIDDEN * m%h * m%w * 4 + 64_c_size_t * 2**20
  end function workspace_limit

  ! The heuristics' ranking for the three directions of layer l (conv1: no backward data) under
  ! Python's rule, into the table.
  subroutine choose_algorithms(m, l, options, table)
    type(model_t), intent(in) :: m
    integer, intent(in) :: l
    type(model_options_t), intent(in) :: options
    type(algorithm_table_t), intent(inout) :: table
    type(cudnnConvolutionFwdAlgoPerf_t), allocatable :: fwd(:)
    type(cudnnConvolutionBwdFilterAlgoPerf_t), allocatable :: bwd_filter(:)
    type(cudnnConvolutionBwdDataAlgoPerf_t), allocatable :: bwd_data(:)
    integer(c_int) :: count, returned
    integer :: i

    associate (c => m%conv(l))
      call check_cudnn(cudnnGetConvolutionForwardAlgorithmMaxCount(m%cudnn, count), &
          "cudnnGetConvolutionForwardAlgorithmMaxCount")
      allocate(fwd(count))
      call check_cudnn(cudnnGetConvolutionForwardAlgorithm_v7(m%cudnn, c%x_desc, c%w_desc, &
          c%fwd_desc, c%y_desc, count, returned, fwd), &
          "cudnnGetConvolutionForwardAlgorithm_v7 (" // c%name // ")")
      associate (r => fwd(1:returned))
        i = first_usable(r%status, r%memory, r%determinism, r%mathType, m, options, &
            c%name // " forward")
      end associate
      call put(FORWARD, fwd(i)%algo, fwd(i)%memory, fwd(i)%mathType)

      call check_cudnn(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(m%cudnn, count), &
          "cudnnGetConvolutionBackwardFilterAlgorithmMaxCount")
      allocate(bwd_filter(count))
      call check_cudnn(cudnnGetConvolutionBackwardFilterAlgorithm_v7(m%cudnn, c%x_desc, c%y_desc, &
          c%bwd_filter_desc, c%w_desc, count, returned, bwd_filter), &
          "cudnnGetConvolutionBackwardFilterAlgorithm_v7 (" // c%name // ")")
      associate (r => bwd_filter(1:returned))
        i = first_usable(r%status, r%memory, r%determinism, r%mathType, m, options, &
            c%name // " backward_filter")
      end associate
      call put(BACKWARD_FILTER, bwd_filter(i)%algo, bwd_filter(i)%memory, bwd_filter(i)%mathType)

      if (l == 1) return  ! conv1: the input needs no gradient
      call check_cudnn(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(m%cudnn, count), &
          "cudnnGetConvolutionBackwardDataAlgorithmMaxCount")
      allocate(bwd_data(count))
      call check_cudnn(cudnnGetConvolutionBackwardDataAlgorithm_v7(m%cudnn, c%w_desc, c%y_desc, &
          c%bwd_data_desc, c%x_desc, count, returned, bwd_data), &
          "cudnnGetConvolutionBackwardDataAlgorithm_v7 (" // c%name // ")")
      associate (r => bwd_data(1:returned))
        i = first_usable(r%status, r%memory, r%determinism, r%mathType, m, options, &
            c%name // " backward_data")
      end associate
      call put(BACKWARD_DATA, bwd_data(i)%algo, bwd_data(i)%memory, bwd_data(i)%mathType)
    end associate

  contains

    subroutine put(direction, algo, memory, math)
      integer, intent(in) :: direction
      integer(c_int), intent(in) :: algo, math
      integer(c_size_t), intent(in) :: memory
      table%algo(direction, l) = algo
      table%bytes(direction, l) = memory
      table%math(direction, l) = math
    end subroutine put

  end subroutine choose_algorithms

  ! The position of the first result that passes layers/algorithms.py's rule; none ends the program.
  integer function first_usable(status, memory, determinism, math, m, options, what) result(i)
    integer(c_int), intent(in) :: status(:), determinism(:), math(:)
    integer(c_size_t), intent(in) :: memory(:)
    type(model_t), intent(in) :: m
    type(model_options_t), intent(in) :: options
    character(len=*), intent(in) :: what
    do i = 1, size(status)
      if (status(i) /= CUDNN_STATUS_SUCCESS) cycle
      if (memory(i) > workspace_limit(m)) cycle
      if (options%deterministic .and. determinism(i) /= CUDNN_DETERMINISTIC) cycle
      if (options%strict_fp32 .and. math(i) /= CUDNN_FMA_MATH) cycle
      return
    end do
    call fail("no usable " // what // " convolution algorithm among cuDNN's " // &
        int_text(int(size(status), c_int64_t)) // " heuristic results", 1)
  end function first_usable

  ! Use the table's algorithms: each one's math type on its direction's convolution descriptor,
  ! its workspace size for every call in that direction.
  subroutine use_table(m, table)
    type(model_t), intent(inout) :: m
    type(algorithm_table_t), intent(in) :: table
    integer :: l
    do l = 1, 3
      associate (c => m%conv(l))
        c%fwd_algo = table%algo(FORWARD, l)
        c%fwd_bytes = table%bytes(FORWARD, l)
        call set_math(c%fwd_desc, table%math(FORWARD, l))
        c%bwd_filter_algo = table%algo(BACKWARD_FILTER, l)
        c%bwd_filter_bytes = table%bytes(BACKWARD_FILTER, l)
        call set_math(c%bwd_filter_desc, table%math(BACKWARD_FILTER, l))
        if (l == 1) cycle
        c%bwd_data_algo = table%algo(BACKWARD_DATA, l)
        c%bwd_data_bytes = table%bytes(BACKWARD_DATA, l)
        call set_math(c%bwd_data_desc, table%math(BACKWARD_DATA, l))
      end associate
    end do
  end subroutine use_table

  subroutine set_math(desc, math)
    type(c_ptr), intent(in) :: desc
    integer(c_int), intent(in) :: math
    call check_cudnn(cudnnSetConvolutionMathType(desc, math), "cudnnSetConvolutionMathType")
  end subroutine set_math

  ! Release everything model_create made.
  subroutine model_destroy(m)
    type(model_t), intent(inout) :: m
    integer :: i
    do i = 1, 3
      associate (c => m%conv(i))
        call check_cudnn(cudnnDestroyTensorDescriptor(c%x_desc), "cudnnDestroyTensorDescriptor")
        call check_cudnn(cudnnDestroyTensorDescriptor(c%y_desc), "cudnnDestroyTensorDescriptor")
        call check_cudnn(cudnnDestroyTensorDescriptor(c%b_desc), "cudnnDestroyTensorDescriptor")
        call check_cudnn(cudnnDestroyFilterDescriptor(c%w_desc), "cudnnDestroyFilterDescriptor")
        call check_cudnn(cudnnDestroyConvolutionDescriptor(c%fwd_desc), &
            "cudnnDestroyConvolutionDescriptor")
        call check_cudnn(cudnnDestroyConvolutionDescriptor(c%bwd_data_desc), &
            "cudnnDestroyConvolutionDescriptor")
        call check_cudnn(cudnnDestroyConvolutionDescriptor(c%bwd_filter_desc), &
            "cudnnDestroyConvolutionDescriptor")
        call check_cuda(cudaFree(c%db_per_sample), "cudaFree")
      end associate
    end do
    call check_cudnn(cudnnDestroyActivationDescriptor(m%act_desc), "cudnnDestroyActivationDescriptor")
    call check_cudnn(cudnnDestroyTensorDescriptor(m%relu_desc), "cudnnDestroyTensorDescriptor")
    call check_cuda(cudaFree(m%params), "cudaFree")
    call check_cuda(cudaFree(m%grads), "cudaFree")
    call check_cuda(cudaFree(m%loss_sums), "cudaFree")
    call check_cuda(cudaFree(m%a1), "cudaFree")
    call check_cuda(cudaFree(m%a2), "cudaFree")
    call check_cuda(cudaFree(m%dh1), "cudaFree")
    call check_cuda(cudaFree(m%dh2), "cudaFree")
    call check_cuda(cudaFree(m%y), "cudaFree")
    call check_cuda(cudaFree(m%dy), "cudaFree")
    call check_cuda(cudaFree(m%ones), "cudaFree")
    if (m%bf16) then
      do i = 1, 3
        call check_cudnn(cudnnDestroyTensorDescriptor(m%conv(i)%dw_fp32_desc), "cudnnDestroyTensorDescriptor")
        call check_cudnn(cudnnDestroyTensorDescriptor(m%conv(i)%dw_bf16_desc), "cudnnDestroyTensorDescriptor")
      end do
      call check_cudnn(cudnnDestroyTensorDescriptor(m%params_fp32_desc), "cudnnDestroyTensorDescriptor")
      call check_cudnn(cudnnDestroyTensorDescriptor(m%params_bf16_desc), "cudnnDestroyTensorDescriptor")
      call check_cudnn(cudnnDestroyTensorDescriptor(m%io_fp32_desc), "cudnnDestroyTensorDescriptor")
      call check_cudnn(cudnnDestroyTensorDescriptor(m%io_bf16_desc), "cudnnDestroyTensorDescriptor")
      call check_cuda(cudaFree(m%params16), "cudaFree")
      call check_cuda(cudaFree(m%grads16), "cudaFree")
      call check_cuda(cudaFree(m%x16), "cudaFree")
      call check_cuda(cudaFree(m%dy16), "cudaFree")
      call check_cuda(cudaFree(m%dh), "cudaFree")
      call check_cuda(cudaFree(m%ones16), "cudaFree")
    end if
    if (c_associated(m%workspace)) call check_cuda(cudaFree(m%workspace), "cudaFree")
    call check_cublas(cublasDestroy_v2(m%cublas), "cublasDestroy_v2")
    call check_cudnn(cudnnDestroy(m%cudnn), "cudnnDestroy")
  end subroutine model_destroy

end module denoise_setup
