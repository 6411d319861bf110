! The graph API (NHWC) path's operation graphs from cuDNN backend descriptors, exactly as
! cudnn_denoise/layers/graphs.py builds them (docs/fortran.md, "The graph API path"): the same
! uids (1, 2, ... in order of creation; virtual tensors 100, 101), dimensions in n, c, h, w order,
! NHWC strides (filters KRSC), byte alignment 16, FLOAT data, or BFLOAT16 for the roles a graph is
! given (--precision bf16, layers/precision.py; virtual tensors stay FLOAT). Then, as layers/engines.py: the
! operation graph, engine configurations from heuristics mode A then the fallback list, the first
! configuration that the policy allows and whose plan finalizes, variant packs and execute.
module denoise_graph_api
  use cudnn_interfaces
  use denoise_check, only: check_cudnn, fail, int_text
  use cudnn_denoise_checkpoint, only: NUM_PARAMS, CONV1_WEIGHT_OFFSET, CONV2_WEIGHT_OFFSET, &
      CONV3_WEIGHT_OFFSET
  implicit none
  private

  integer(c_int64_t), parameter, public :: GRAPH_ALIGNMENT = 16
  integer(c_int64_t), parameter, public :: VIRTUAL_UID = 100
  integer, parameter, public :: MAX_TENSORS = 8, MAX_OPS = 3, MAX_CONFIGS = 512

  ! One operation graph of the step: its tensors (in order of creation), operations, and once
  ! chosen its plan; uids(i), role(i) name the buffers in memory, in order of creation.
  type, public :: op_graph_t
    character(len=48) :: name = ""
    integer :: n_tensors = 0, n_ops = 0, n_roles = 0
    type(c_ptr) :: tensors(MAX_TENSORS) = c_null_ptr
    type(c_ptr) :: ops(MAX_OPS) = c_null_ptr
    character(len=4) :: roles(MAX_TENSORS) = ""
    integer(c_int64_t) :: uids(MAX_TENSORS) = 0
    character(len=4) :: bf16(MAX_TENSORS) = ""        ! the roles held as BFLOAT16 (none: FP32)
    type(c_ptr) :: graph = c_null_ptr, plan = c_null_ptr, pack = c_null_ptr
    integer(c_int64_t) :: workspace = 0, engine = -1, position = -1
    logical :: tensor_core = .false., nondeterministic = .false.
  end type op_graph_t

  public :: backend_create, set_int64, set_float, set_descriptors, set_enum, set_bool, finalize
  public :: get_int64, tensor, convolution, convolution_operation, pointwise, reduction_sum
  public :: forward_graph, wgrad_graph, dgrad_graph, plain_dgrad_graph, relu_backward_graph
  public :: nhwc_strides, operation_graph, choose_engine, bind_buffers, execute_graph, execute_on
  public :: to_krsc, from_krsc, read_engine_table, engine_row
  public :: BF16_FORWARD, BF16_BACKWARD

  ! --precision bf16: the roles each graph holds as BFLOAT16 (layers/precision.py layer_types):
  ! forward per layer (conv1, conv2, conv3), and every backward graph's
  character(len=4), parameter :: BF16_FORWARD(3, 3) = reshape([character(len=4) :: &
      "y", "", "", "x", "w", "y", "x", "w", "b"], [3, 3])
  character(len=4), parameter :: BF16_BACKWARD(7) = [character(len=4) :: "x", "dy", "dw", "w", "dh", "h", "da"]

  ! An engine table that train --graph-api wrote (cudnn_denoise/port/engine_table.py, format 1):
  ! per layer and direction, the position in the heuristics lists and the engine global index;
  ! bias: the row's graph has the bias reduction; a relu_backward row follows a split dgrad (BF16)
  integer, parameter :: MAX_ROWS = 16
  type, public :: engine_table_t
    integer :: n = 0
    character(len=16) :: layer(MAX_ROWS) = ""
    character(len=16) :: direction(MAX_ROWS) = ""
    integer(c_int64_t) :: position(MAX_ROWS) = -1, engine(MAX_ROWS) = -1
    logical :: bias(MAX_ROWS) = .false.
  end type engine_table_t
  public :: DIR_FORWARD, DIR_BACKWARD_DATA, DIR_BACKWARD_FILTER

  integer, parameter :: DIR_FORWARD = 1, DIR_BACKWARD_DATA = 2, DIR_BACKWARD_FILTER = 3

contains

  ! ---- a thin layer over the backend calls ----

  function backend_create(kind, what) result(desc)
    integer(c_int), intent(in) :: kind
    character(len=*), intent(in) :: what
    type(c_ptr) :: desc
    call check_cudnn(cudnnBackendCreateDescriptor(kind, desc), "cudnnBackendCreateDescriptor (" // what // ")")
  end function backend_create

  subroutine set_int64(desc, attr, values, what)
    type(c_ptr), intent(in) :: desc
    integer(c_int), intent(in) :: attr
    integer(c_int64_t), intent(in) :: values(:)
    character(len=*), intent(in) :: what
    integer(c_int64_t), target :: copy(size(values))
    copy = values
    call check_cudnn(cudnnBackendSetAttribute(desc, attr, CUDNN_TYPE_INT64, size(copy, kind=c_int64_t), &
        c_loc(copy)), "cudnnBackendSetAttribute (" // what // ")")
  end subroutine set_int64

  subroutine set_float(desc, attr, value, what)
    type(c_ptr), intent(in) :: desc
    integer(c_int), intent(in) :: attr
    real(c_float), intent(in) :: value
    character(len=*), intent(in) :: what
    real(c_float), target :: copy
    copy = value
    call check_cudnn(cudnnBackendSetAttribute(desc, attr, CUDNN_TYPE_FLOAT, 1_c_int64_t, c_loc(copy)), &
        "cudnnBackendSetAttribute (" // what // ")")
  end subroutine set_float

  ! An attribute of type atype (CUDNN_TYPE_DATA_TYPE, _POINTWISE_MODE, ...): one C enum value.
  subroutine set_enum(desc, attr, atype, value, what)
    type(c_ptr), intent(in) :: desc
    integer(c_int), intent(in) :: attr, atype, value
    character(len=*), intent(in) :: what
    integer(c_int), target :: copy
    copy = value
    call check_cudnn(cudnnBackendSetAttribute(desc, attr, atype, 1_c_int64_t, c_loc(copy)), &
        "cudnnBackendSetAttribute (" // what // ")")
  end subroutine set_enum

  subroutine set_bool(desc, attr, value, what)
    type(c_ptr), intent(in) :: desc
    integer(c_int), intent(in) :: attr
    logical, intent(in) :: value
    character(len=*), intent(in) :: what
    logical(c_bool), target :: copy
    copy = value
    call check_cudnn(cudnnBackendSetAttribute(desc, attr, CUDNN_TYPE_BOOLEAN, 1_c_int64_t, c_loc(copy)), &
        "cudnnBackendSetAttribute (" // what // ")")
  end subroutine set_bool

  ! Descriptors (CUDNN_TYPE_BACKEND_DESCRIPTOR), or with atype CUDNN_TYPE_HANDLE / VOID_PTR pointers.
  subroutine set_descriptors(desc, attr, values, what, atype)
    type(c_ptr), intent(in) :: desc
    integer(c_int), intent(in) :: attr
    type(c_ptr), intent(in) :: values(:)
    character(len=*), intent(in) :: what
    integer(c_int), intent(in), optional :: atype
    type(c_ptr), target :: copy(size(values))
    integer(c_int) :: t
    t = CUDNN_TYPE_BACKEND_DESCRIPTOR
    if (present(atype)) t = atype
    copy = values
    call check_cudnn(cudnnBackendSetAttribute(desc, attr, t, size(copy, kind=c_int64_t), c_loc(copy)), &
        "cudnnBackendSetAttribute (" // what // ")")
  end subroutine set_descriptors

  subroutine finalize(desc, what)
    type(c_ptr), intent(in) :: desc
    character(len=*), intent(in) :: what
    call check_cudnn(cudnnBackendFinalize(desc), "cudnnBackendFinalize (" // what // ")")
  end subroutine finalize

  ! Up to size(values) int64 elements of an attribute; n: how many it holds.
  subroutine get_int64(desc, attr, values, n, what)
    type(c_ptr), intent(in) :: desc
    integer(c_int), intent(in) :: attr
    integer(c_int64_t), target, intent(out) :: values(:)
    integer(c_int64_t), intent(out) :: n
    character(len=*), intent(in) :: what
    values = 0
    call check_cudnn(cudnnBackendGetAttribute(desc, attr, CUDNN_TYPE_INT64, size(values, kind=c_int64_t), n, &
        c_loc(values)), "cudnnBackendGetAttribute (" // what // ")")
  end subroutine get_int64

  ! ---- descriptors (graphs.py: tensor, convolution, convolution_operation, pointwise, reduction_sum) ----

  ! Strides of an NHWC (filters: KRSC) packed tensor, in n, c, h, w order.
  pure function nhwc_strides(dims) result(strides)
    integer(c_int64_t), intent(in) :: dims(4)
    integer(c_int64_t) :: strides(4)
    strides = [dims(3) * dims(4) * dims(2), 1_c_int64_t, dims(4) * dims(2), dims(2)]
  end function nhwc_strides

  ! dtype: CUDNN_DATA_FLOAT unless given
  function tensor(uid, dims, virtual, dtype) result(t)
    integer(c_int64_t), intent(in) :: uid, dims(4)
    logical, intent(in) :: virtual
    integer(c_int), intent(in), optional :: dtype
    type(c_ptr) :: t
    character(len=:), allocatable :: what
    integer(c_int) :: data_type
    what = "tensor " // int_text(uid)
    data_type = CUDNN_DATA_FLOAT
    if (present(dtype)) data_type = dtype
    t = backend_create(CUDNN_BACKEND_TENSOR_DESCRIPTOR, what)
    call set_enum(t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, data_type, what)
    call set_int64(t, CUDNN_ATTR_TENSOR_DIMENSIONS, dims, what)
    call set_int64(t, CUDNN_ATTR_TENSOR_STRIDES, nhwc_strides(dims), what)
    call set_int64(t, CUDNN_ATTR_TENSOR_UNIQUE_ID, [uid], what)
    call set_int64(t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, [GRAPH_ALIGNMENT], what)
    call set_bool(t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, virtual, what)
    call finalize(t, what)
  end function tensor

  function convolution() result(c)
    type(c_ptr) :: c
    character(len=*), parameter :: what = "convolution"
    c = backend_create(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, what)
    call set_enum(c, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, CUDNN_DATA_FLOAT, what)
    call set_enum(c, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, CUDNN_CROSS_CORRELATION, what)
    call set_int64(c, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, [2_c_int64_t], what)
    call set_int64(c, CUDNN_ATTR_CONVOLUTION_DILATIONS, [1_c_int64_t, 1_c_int64_t], what)
    call set_int64(c, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, [1_c_int64_t, 1_c_int64_t], what)
    call set_int64(c, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, [1_c_int64_t, 1_c_int64_t], what)
    call set_int64(c, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, [1_c_int64_t, 1_c_int64_t], what)
    call finalize(c, what)
  end function convolution

  ! out = op(a, b), alpha 1, beta 0: forward (X, W -> Y), backward data (DY, W -> DX),
  ! backward filter (X, DY -> DW).
  function convolution_operation(direction, a, b, out) result(op)
    integer, intent(in) :: direction
    type(c_ptr), intent(in) :: a, b, out
    type(c_ptr) :: op
    integer(c_int) :: kind, attrs(6)
    character(len=:), allocatable :: what
    select case (direction)
    case (DIR_FORWARD)
      what = "convolution forward"
      kind = CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR
      attrs = [CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, &
               CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, &
               CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y]
    case (DIR_BACKWARD_DATA)
      what = "convolution backward data"
      kind = CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR
      attrs = [CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA, &
               CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY, &
               CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX]
    case default
      what = "convolution backward filter"
      kind = CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR
      attrs = [CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA, &
               CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X, &
               CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW]
    end select
    op = backend_create(kind, what)
    call set_float(op, attrs(1), 1.0_c_float, what)
    call set_float(op, attrs(2), 0.0_c_float, what)
    call set_descriptors(op, attrs(3), [convolution()], what)
    call set_descriptors(op, attrs(4), [a], what)
    call set_descriptors(op, attrs(5), [b], what)
    call set_descriptors(op, attrs(6), [out], what)
    call finalize(op, what)
  end function convolution_operation

  ! A pointwise operation; tensors by the manual's names (x, b, y, dy, dx), those given.
  function pointwise(mode, x, b, y, dy, dx) result(op)
    integer(c_int), intent(in) :: mode
    type(c_ptr), intent(in), optional :: x, b, y, dy, dx
    type(c_ptr) :: op, pw
    character(len=*), parameter :: what = "pointwise"
    pw = backend_create(CUDNN_BACKEND_POINTWISE_DESCRIPTOR, what)
    call set_enum(pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, mode, what)
    call set_enum(pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, CUDNN_DATA_FLOAT, what)
    call finalize(pw, what)
    op = backend_create(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, "operation " // what)
    call set_descriptors(op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, [pw], what)
    if (present(x)) call set_descriptors(op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, [x], what)
    if (present(b)) call set_descriptors(op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, [b], what)
    if (present(y)) call set_descriptors(op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, [y], what)
    if (present(dy)) call set_descriptors(op, CUDNN_ATTR_OPERATION_POINTWISE_DYDESC, [dy], what)
    if (present(dx)) call set_descriptors(op, CUDNN_ATTR_OPERATION_POINTWISE_DXDESC, [dx], what)
    call finalize(op, "operation " // what)
  end function pointwise

  ! y = x summed over the dimensions where y has size 1.
  function reduction_sum(x, y) result(op)
    type(c_ptr), intent(in) :: x, y
    type(c_ptr) :: op, r
    character(len=*), parameter :: what = "reduction"
    r = backend_create(CUDNN_BACKEND_REDUCTION_DESCRIPTOR, what)
    call set_enum(r, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, CUDNN_REDUCE_TENSOR_ADD, what)
    call set_enum(r, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, CUDNN_DATA_FLOAT, what)
    call finalize(r, what)
    op = backend_create(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, "operation " // what)
    call set_descriptors(op, CUDNN_ATTR_OPERATION_REDUCTION_DESC, [r], what)
    call set_descriptors(op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, [x], what)
    call set_descriptors(op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, [y], what)
    call finalize(op, "operation " // what)
  end function reduction_sum

  ! ---- the step's graphs (graphs.py: forward_graph, wgrad_graph, dgrad_graph, ...) ----

  ! A tensor in memory: the graph's next uid, recorded under `role`; BFLOAT16 if g%bf16 names it.
  function role_tensor(g, role, dims) result(t)
    type(op_graph_t), intent(inout) :: g
    character(len=*), intent(in) :: role
    integer(c_int64_t), intent(in) :: dims(4)
    type(c_ptr) :: t
    g%n_roles = g%n_roles + 1
    g%roles(g%n_roles) = role
    g%uids(g%n_roles) = g%n_roles
    t = tensor(int(g%n_roles, c_int64_t), dims, .false., &
        merge(CUDNN_DATA_BFLOAT16, CUDNN_DATA_FLOAT, any(g%bf16 == role)))
    call keep(g, t)
  end function role_tensor

  ! The roles the graph holds as BFLOAT16 (absent or none: FP32); a BF16 graph's name ends in
  ! " bf16", as Python's (LayerTypes.tag), which the engine table's rows carry.
  subroutine set_types(g, bf16)
    type(op_graph_t), intent(inout) :: g
    character(len=*), intent(in), optional :: bf16(:)
    if (.not. present(bf16)) return
    if (size(bf16) == 0) return
    g%bf16(1:size(bf16)) = bf16
    g%name = trim(g%name) // " bf16"
  end subroutine set_types

  function virtual_tensor(g, uid, dims) result(t)
    type(op_graph_t), intent(inout) :: g
    integer(c_int64_t), intent(in) :: uid, dims(4)
    type(c_ptr) :: t
    t = tensor(uid, dims, .true.)
    call keep(g, t)
  end function virtual_tensor

  subroutine keep(g, t)
    type(op_graph_t), intent(inout) :: g
    type(c_ptr), intent(in) :: t
    g%n_tensors = g%n_tensors + 1
    g%tensors(g%n_tensors) = t
  end subroutine keep

  subroutine add_op(g, op)
    type(op_graph_t), intent(inout) :: g
    type(c_ptr), intent(in) :: op
    g%n_ops = g%n_ops + 1
    g%ops(g%n_ops) = op
  end subroutine add_op

  function d4(a, b, c, d) result(dims)
    integer, intent(in) :: a, b, c, d
    integer(c_int64_t) :: dims(4)
    dims = int([a, b, c, d], c_int64_t)
  end function d4

  ! y = relu(conv(x, w) + b), or conv(x, w) + b without relu. Roles x, w, b, y.
  subroutine forward_graph(g, c_in, k, relu, n, h, w, bf16)
    type(op_graph_t), intent(out) :: g
    integer, intent(in) :: c_in, k, n, h, w
    logical, intent(in) :: relu
    character(len=*), intent(in), optional :: bf16(:)
    type(c_ptr) :: x, wt, b, y, conv_out, biased
    g%name = "forward"
    if (relu) g%name = "forward relu"
    call set_types(g, bf16)
    x = role_tensor(g, "x", d4(n, c_in, h, w))
    wt = role_tensor(g, "w", d4(k, c_in, 3, 3))
    b = role_tensor(g, "b", d4(1, k, 1, 1))
    y = role_tensor(g, "y", d4(n, k, h, w))
    conv_out = virtual_tensor(g, VIRTUAL_UID, d4(n, k, h, w))
    biased = y
    if (relu) biased = virtual_tensor(g, VIRTUAL_UID + 1, d4(n, k, h, w))
    call add_op(g, convolution_operation(DIR_FORWARD, x, wt, conv_out))
    call add_op(g, pointwise(CUDNN_POINTWISE_ADD, x=conv_out, b=b, y=biased))
    if (relu) call add_op(g, pointwise(CUDNN_POINTWISE_RELU_FWD, x=biased, y=y))
  end subroutine forward_graph

  ! dw from x and dy. Roles x, dy, dw.
  subroutine wgrad_graph(g, c_in, k, n, h, w, bf16)
    type(op_graph_t), intent(out) :: g
    integer, intent(in) :: c_in, k, n, h, w
    character(len=*), intent(in), optional :: bf16(:)
    type(c_ptr) :: x, dy, dw
    g%name = "backward_filter"
    call set_types(g, bf16)
    x = role_tensor(g, "x", d4(n, c_in, h, w))
    dy = role_tensor(g, "dy", d4(n, k, h, w))
    dw = role_tensor(g, "dw", d4(k, c_in, 3, 3))
    call add_op(g, convolution_operation(DIR_BACKWARD_FILTER, x, dy, dw))
  end subroutine wgrad_graph

  ! da = dh * (h > 0) [and db = sum of da over n, h, w]. Roles h, da [, db].
  subroutine relu_backward_ops(g, dh, dims, bias_gradient)
    type(op_graph_t), intent(inout) :: g
    type(c_ptr), intent(in) :: dh
    integer(c_int64_t), intent(in) :: dims(4)
    logical, intent(in) :: bias_gradient
    type(c_ptr) :: hidden, da, db
    hidden = role_tensor(g, "h", dims)
    da = role_tensor(g, "da", dims)
    call add_op(g, pointwise(CUDNN_POINTWISE_RELU_BWD, dy=dh, x=hidden, dx=da))
    if (bias_gradient) then
      db = role_tensor(g, "db", [1_c_int64_t, dims(2), 1_c_int64_t, 1_c_int64_t])
      call add_op(g, reduction_sum(da, db))
    end if
  end subroutine relu_backward_ops

  ! The fused dgrad: roles dy, w, h, da [, db]; t [100] virtual.
  subroutine dgrad_graph(g, c_in, k, n, h, w, bias_gradient, bf16)
    type(op_graph_t), intent(out) :: g
    integer, intent(in) :: c_in, k, n, h, w
    logical, intent(in) :: bias_gradient
    character(len=*), intent(in), optional :: bf16(:)
    type(c_ptr) :: dy, wt, dh
    g%name = "backward_data relu"
    if (bias_gradient) g%name = "backward_data relu bias"
    call set_types(g, bf16)
    dy = role_tensor(g, "dy", d4(n, k, h, w))
    wt = role_tensor(g, "w", d4(k, c_in, 3, 3))
    dh = virtual_tensor(g, VIRTUAL_UID, d4(n, c_in, h, w))
    call add_op(g, convolution_operation(DIR_BACKWARD_DATA, dy, wt, dh))
    call relu_backward_ops(g, dh, d4(n, c_in, h, w), bias_gradient)
  end subroutine dgrad_graph

  ! dh = conv_transpose(dy, w) into memory: roles dy, w, dh.
  subroutine plain_dgrad_graph(g, c_in, k, n, h, w, bf16)
    type(op_graph_t), intent(out) :: g
    integer, intent(in) :: c_in, k, n, h, w
    character(len=*), intent(in), optional :: bf16(:)
    type(c_ptr) :: dy, wt, dh
    g%name = "backward_data"
    call set_types(g, bf16)
    dy = role_tensor(g, "dy", d4(n, k, h, w))
    wt = role_tensor(g, "w", d4(k, c_in, 3, 3))
    dh = role_tensor(g, "dh", d4(n, c_in, h, w))
    call add_op(g, convolution_operation(DIR_BACKWARD_DATA, dy, wt, dh))
  end subroutine plain_dgrad_graph

  ! ReLU backward [and reduction] alone: roles dh, h, da [, db].
  subroutine relu_backward_graph(g, channels, n, h, w, bias_gradient, bf16)
    type(op_graph_t), intent(out) :: g
    integer, intent(in) :: channels, n, h, w
    logical, intent(in) :: bias_gradient
    character(len=*), intent(in), optional :: bf16(:)
    type(c_ptr) :: dh
    g%name = "relu_backward"
    if (bias_gradient) g%name = "relu_backward bias"
    call set_types(g, bf16)
    dh = role_tensor(g, "dh", d4(n, channels, h, w))
    call relu_backward_ops(g, dh, d4(n, channels, h, w), bias_gradient)
  end subroutine relu_backward_graph

  ! ---- operation graph, engine, plan, variant pack, execute (engines.py: FusedOp) ----

  ! ok present: a graph cuDNN refuses gives ok = .false. (destroyed) instead of failing the run.
  subroutine operation_graph(g, handle, ok)
    type(op_graph_t), intent(inout) :: g
    type(c_ptr), intent(in) :: handle
    logical, intent(out), optional :: ok
    integer(c_int) :: status
    g%graph = backend_create(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, "operation graph " // trim(g%name))
    call set_descriptors(g%graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, g%ops(1:g%n_ops), "graph " // trim(g%name))
    call set_descriptors(g%graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, [handle], "graph " // trim(g%name), &
        CUDNN_TYPE_HANDLE)
    if (present(ok)) then
      ok = cudnnBackendFinalize(g%graph) == 0
      if (.not. ok) then
        status = cudnnBackendDestroyDescriptor(g%graph)
        g%graph = c_null_ptr
      end if
      return
    end if
    call finalize(g%graph, "operation graph " // trim(g%name))
  end subroutine operation_graph

  ! The engine configurations of heuristics mode A, then the fallback list, in that order; walk
  ! them: the first the policy allows (strict_fp32: no TENSOR_CORE note; deterministic: no
  ! NONDETERMINISTIC note) whose plan finalizes and whose workspace fits `limit` bytes. With an
  ! engine table's row (wanted = [position, engine global index], position >= 0): the
  ! configuration at that position only, which must be that engine (else the run fails, naming
  ! both). ok: .false. when none (the caller tries another form).
  subroutine choose_engine(g, handle, strict_fp32, deterministic, wanted, limit, ok)
    type(op_graph_t), intent(inout) :: g
    type(c_ptr), intent(in) :: handle
    logical, intent(in) :: strict_fp32, deterministic
    integer(c_int64_t), intent(in) :: wanted(2), limit
    logical, intent(out) :: ok
    integer(c_int) :: modes(2), m, i, status
    type(c_ptr), target :: configs(MAX_CONFIGS), engine(1)
    type(c_ptr) :: heur, plan
    integer(c_int64_t) :: count, got, index(1), position
    integer(c_int), target :: notes(16)
    logical :: tc, nondet
    modes = [CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK]
    ok = .false.
    position = -1
    do m = 1, 2
      heur = backend_create(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, "heuristics")
      call set_descriptors(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, [g%graph], "heuristics")
      call set_enum(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, modes(m), "heuristics")
      if (cudnnBackendFinalize(heur) /= 0) then  ! no engine of this kind for the graph
        status = cudnnBackendDestroyDescriptor(heur)
        cycle
      end if
      call check_cudnn(cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, &
          CUDNN_TYPE_BACKEND_DESCRIPTOR, 0_c_int64_t, count, c_null_ptr), "heuristics results count")
      count = min(count, int(MAX_CONFIGS, c_int64_t))
      do i = 1, int(count)
        configs(i) = backend_create(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, "engine configuration")
      end do
      call check_cudnn(cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, &
          CUDNN_TYPE_BACKEND_DESCRIPTOR, count, got, c_loc(configs)), "heuristics results")
      do i = 1, int(got)
        position = position + 1
        if (ok) cycle
        engine(1) = backend_create(CUDNN_BACKEND_ENGINE_DESCRIPTOR, "engine")
        call check_cudnn(cudnnBackendGetAttribute(configs(i), CUDNN_ATTR_ENGINECFG_ENGINE, &
            CUDNN_TYPE_BACKEND_DESCRIPTOR, 1_c_int64_t, count, c_loc(engine)), "engine of a configuration")
        notes = -1
        call check_cudnn(cudnnBackendGetAttribute(engine(1), CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, &
            CUDNN_TYPE_NUMERICAL_NOTE, int(size(notes), c_int64_t), count, c_loc(notes)), "engine notes")
        count = min(count, int(size(notes), c_int64_t))
        tc = any(notes(1:count) == CUDNN_NUMERICAL_NOTE_TENSOR_CORE)
        nondet = any(notes(1:count) == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC)
        call get_int64(engine(1), CUDNN_ATTR_ENGINE_GLOBAL_INDEX, index, count, "engine global index")
        if (wanted(1) >= 0) then
          if (position /= wanted(1)) cycle
          if (index(1) /= wanted(2)) call fail("engine table: graph " // trim(g%name) // " position " // &
              int_text(position) // " is engine " // int_text(index(1)) // " here, the table says " // &
              int_text(wanted(2)), 2)
        else if ((strict_fp32 .and. tc) .or. (deterministic .and. nondet)) then
          cycle
        end if
        plan = backend_create(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, "plan")
        call set_descriptors(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, [handle], "plan", CUDNN_TYPE_HANDLE)
        call set_descriptors(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, [configs(i)], "plan")
        if (cudnnBackendFinalize(plan) /= 0) then
          status = cudnnBackendDestroyDescriptor(plan)
          cycle
        end if
        call get_int64(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, index, count, "plan workspace size")
        if (index(1) > limit) then
          status = cudnnBackendDestroyDescriptor(plan)
          cycle
        end if
        g%workspace = index(1)
        call get_int64(engine(1), CUDNN_ATTR_ENGINE_GLOBAL_INDEX, index, count, "engine global index")
        g%plan = plan
        g%engine = index(1)
        g%position = position
        g%tensor_core = tc
        g%nondeterministic = nondet
        ok = .true.
      end do
    end do
  end subroutine choose_engine

  ! The variant pack: device addresses in the order of g%uids (roles), and the workspace.
  subroutine bind_buffers(g, pointers, workspace)
    type(op_graph_t), intent(inout) :: g
    type(c_ptr), intent(in) :: pointers(:), workspace
    integer :: status
    if (size(pointers) /= g%n_roles) call fail("graph " // trim(g%name) // ": " // &
        int_text(int(size(pointers), c_int64_t)) // " buffers for " // int_text(int(g%n_roles, c_int64_t)) // " uids", 1)
    if (c_associated(g%pack)) status = cudnnBackendDestroyDescriptor(g%pack)
    g%pack = backend_create(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, "variant pack " // trim(g%name))
    call set_int64(g%pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, g%uids(1:g%n_roles), "variant pack")
    call set_descriptors(g%pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, pointers, "variant pack", CUDNN_TYPE_VOID_PTR)
    call set_descriptors(g%pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, [workspace], "variant pack", CUDNN_TYPE_VOID_PTR)
    call finalize(g%pack, "variant pack " // trim(g%name))
  end subroutine bind_buffers

  subroutine execute_graph(g, handle)
    type(op_graph_t), intent(in) :: g
    type(c_ptr), intent(in) :: handle
    call check_cudnn(cudnnBackendExecute(handle, g%plan, g%pack), "cudnnBackendExecute (" // trim(g%name) // ")")
  end subroutine execute_graph

  ! One execute on these buffers (device addresses in the order of g%uids) with a variant pack made
  ! for the call and destroyed after it (cuDNN reads the pack when the call is made), so a step
  ! whose batch buffers rotate needs no cache of packs.
  subroutine execute_on(g, handle, pointers, workspace)
    type(op_graph_t), intent(in) :: g
    type(c_ptr), intent(in) :: handle, pointers(:), workspace
    type(op_graph_t) :: call_g
    call_g%name = g%name
    call_g%n_roles = g%n_roles
    call_g%uids = g%uids
    call_g%plan = g%plan
    call bind_buffers(call_g, pointers, workspace)
    call execute_graph(call_g, handle)
    call check_cudnn(cudnnBackendDestroyDescriptor(call_g%pack), "cudnnBackendDestroyDescriptor (variant pack)")
  end subroutine execute_on

  ! ---- the engine table (cudnn_denoise/port/engine_table.py) ----

  ! Read FILE; its batch, height, width, math and precision (the rows' " bf16" tag) must be n, h, w
  ! and the run's.
  subroutine read_engine_table(path, n, h, w, strict_fp32, bf16, table)
    character(len=*), intent(in) :: path
    integer, intent(in) :: n, h, w
    logical, intent(in) :: strict_fp32, bf16
    type(engine_table_t), intent(out) :: table
    character(len=512) :: line
    character(len=16) :: key, value
    integer :: unit, status, number, got(3)
    integer(c_int64_t) :: position, engine
    logical :: math_seen
    got = -1
    math_seen = .false.
    open(newunit=unit, file=path, status="old", action="read", iostat=status)
    if (status /= 0) call fail("cannot open the engine table " // path, 2)
    number = 0
    do
      read(unit, '(A)', iostat=status) line
      if (status /= 0) exit
      number = number + 1
      if (len_trim(line) == 0 .or. line(1:1) == "#") cycle
      read(line, *, iostat=status) key, value
      if (status /= 0) call bad()
      select case (key)
      case ("batch", "height", "width")
        read(value, *, iostat=status) got(findloc(["batch ", "height", "width "], key, 1))
        if (status /= 0) call bad()
      case ("math")
        math_seen = .true.
        if ((value == "fp32") .neqv. strict_fp32) call fail(path // ": an engine table for math " // &
            trim(value) // ", not this run's", 2)
      case default
        read(line, *, iostat=status) key, value, position, engine
        if (status /= 0 .or. table%n == MAX_ROWS) call bad()
        if ((index(line, " bf16") > 0) .neqv. bf16) call fail(path // ": an engine table for --precision " // &
            trim(merge("bf16", "fp32", .not. bf16)) // ", not this run's " // trim(merge("bf16", "fp32", bf16)), 2)
        table%n = table%n + 1
        table%layer(table%n) = key
        table%direction(table%n) = value
        table%position(table%n) = position
        table%engine(table%n) = engine
        table%bias(table%n) = index(line, " bias") > 0  ! "... relu bias", "... relu bias bf16"
      end select
    end do
    close(unit)
    if (any(got /= [n, h, w]) .or. .not. math_seen) call fail(path // ": an engine table for batch " // &
        int_text(int(got(1), c_int64_t)) // ", " // int_text(int(got(2), c_int64_t)) // " x " // &
        int_text(int(got(3), c_int64_t)) // ", not this run's", 2)
  contains
    subroutine bad()
      call fail(path // ":" // int_text(int(number, c_int64_t)) // ": not a line of an engine table: " // &
          trim(line), 2)
    end subroutine bad
  end subroutine read_engine_table

  ! [position, engine] of layer's direction, or [-1, -1] (no table, heuristics choose); bias: the
  ! row's graph has the bias reduction. A missing row ends the run, unless `found` is asked for.
  function engine_row(table, layer, direction, bias, found) result(wanted)
    type(engine_table_t), intent(in) :: table
    character(len=*), intent(in) :: layer, direction
    logical, intent(out), optional :: bias, found
    integer(c_int64_t) :: wanted(2)
    integer :: i
    wanted = -1
    if (present(bias)) bias = .true.
    if (present(found)) found = .true.
    do i = 1, table%n
      if (table%layer(i) == layer .and. table%direction(i) == direction) then
        wanted = [table%position(i), table%engine(i)]
        if (present(bias)) bias = table%bias(i)
        return
      end if
    end do
    if (present(found)) then
      found = .false.
    else if (table%n > 0) then
      call fail("the engine table has no row for " // layer // " " // direction, 2)
    end if
  end function engine_row

  ! ---- parameters: filters KCRS (checkpoints) <-> KRSC (the device, graph API path) ----

  function to_krsc(params) result(out)
    real(c_float), intent(in) :: params(NUM_PARAMS)
    real(c_float) :: out(NUM_PARAMS)
    out = reorder(params, .true.)
  end function to_krsc

  function from_krsc(params) result(out)
    real(c_float), intent(in) :: params(NUM_PARAMS)
    real(c_float) :: out(NUM_PARAMS)
    out = reorder(params, .false.)
  end function from_krsc

  ! Each filter (K, C, 3, 3): KCRS element k*C*9 + c*9 + r*3 + s is KRSC element k*9*C + (r*3+s)*C + c.
  function reorder(params, krsc) result(out)
    real(c_float), intent(in) :: params(NUM_PARAMS)
    logical, intent(in) :: krsc
    real(c_float) :: out(NUM_PARAMS)
    integer :: offsets(3), cs(3), ks(3), l, k, c, rs, kcrs, krsc_i
    offsets = [CONV1_WEIGHT_OFFSET, CONV2_WEIGHT_OFFSET, CONV3_WEIGHT_OFFSET]
    cs = [1, 16, 16]
    ks = [16, 16, 1]
    out = params
    do l = 1, 3
      do k = 0, ks(l) - 1
        do c = 0, cs(l) - 1
          do rs = 0, 8
            kcrs = offsets(l) + 1 + k * cs(l) * 9 + c * 9 + rs
            krsc_i = offsets(l) + 1 + k * 9 * cs(l) + rs * cs(l) + c
            if (krsc) then
              out(krsc_i) = params(kcrs)
            else
              out(kcrs) = params(krsc_i)
            end if
          end do
        end do
      end do
    end do
  end function reorder

end module denoise_graph_api
