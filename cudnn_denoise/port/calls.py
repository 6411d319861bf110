"""The training step as the cuDNN backend's calls, in order, with their arguments: written down once.

`python -m cudnn_denoise.plan` prints one step as trace lines (docs/fortran.md lists the same
step; port/trace.py writes these lines
for each step of the NumPy reference, which makes no library calls; tests/cli/test_trace_gpu.py
checks that the cuDNN backend's real calls are these). A line is `function name=value ...` with
the C argument names of cffi_build/*.h, which are also the dummy arguments of the Fortran
interfaces. Descriptors are written as `name{contents}`, buffers by their names in the model (the
table in docs/fortran.md, "Setup"), host scalars as float32 values. What the cuDNN backend decides only when it is
built (algorithms, workspace sizes, TF32 math types) is written CHOSEN.

The model makes its calls from layers/ and network/model.py; this module describes them and must be kept
in step with them (the GPU test fails otherwise).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from ..network import options
from ..network.buffers import layer_buffers
from ..network.model import LOSS_SLOTS
from ..params import LAYERS, NUM_PARAMS

C_INT_MAX = 2**31 - 1
CHOSEN = "(chosen)"  # a value the cuDNN backend chooses at setup (algorithm search)
F32 = "CUDNN_DATA_FLOAT"
NCHW = "CUDNN_TENSOR_NCHW"


@dataclass(frozen=True)
class Settings:
    """The model options that change a step's calls (train's and dump's flags)."""

    fused: bool = False  # conv + bias + ReLU in one cudnnConvolutionBiasActivationForward
    graph: bool = False  # the step is captured once into a CUDA graph: inputs in x_static, target_static
    keep_intermediates: bool = False  # dump: conv outputs and ReLU outputs in separate buffers
    math: str = "tf32"  # fp32 fixes every convolution's math type to CUDNN_FMA_MATH

    def __post_init__(self):
        options.check(options.FLAGS, math=self.math, fused=self.fused, keep_intermediates=self.keep_intermediates)


@dataclass(frozen=True)
class Call:
    """One library call: the C function and its arguments in C order, as (name, text)."""

    function: str
    args: tuple[tuple[str, str], ...]

    def line(self) -> str:
        return " ".join([self.function] + [f"{name}={value}" for name, value in self.args])

    def matches(self, line: str) -> bool:
        """Whether a trace line is this call: CHOSEN stands for any value, and the workspace may be
        NULL (when no chosen algorithm needs one)."""
        pattern = re.escape(self.line()).replace(re.escape(CHOSEN), r"[^\s{}]+")
        pattern = pattern.replace("workSpace=workspace", "workSpace=(?:workspace|NULL)")
        return re.fullmatch(pattern, line) is not None


# ---- how values are written (port/trace.py writes real calls with the same functions) ----


def scalar(value) -> str:
    """A host float32 scalar (alpha, beta): the shortest text that reads back as the same float32."""
    return str(np.float32(value))


def packed_strides(dims) -> tuple[int, ...]:
    """The strides of a fully packed array of `dims`, slowest dimension first (C order)."""
    strides, step = [], 1
    for d in reversed(dims):
        strides.append(step)
        step *= d
    return tuple(reversed(strides))


def tensor_text(dtype: str, dims, strides) -> str:
    """A tensor descriptor: {dataType nchw=n,c,h,w strides=nStride,cStride,hStride,wStride}."""
    return f"{{{dtype} nchw={_ints(dims)} strides={_ints(strides)}}}"


def filter_text(dtype: str, fmt: str, dims) -> str:
    """A filter descriptor: {dataType format kcrs=k,c,r,s}."""
    return f"{{{dtype} {fmt} kcrs={_ints(dims)}}}"


def convolution_text(pad, stride, dilation, mode: str, compute: str, math: str) -> str:
    """A 2-d convolution descriptor and its math type."""
    return (f"{{pad={_ints(pad)} stride={_ints(stride)} dilation={_ints(dilation)} {mode} {compute} "
            f"{math}}}")


def activation_text(mode: str, nan: str, coef: float) -> str:
    return f"{{{mode} {nan} coef={float(coef)!r}}}"


def _ints(values) -> str:
    return ",".join(str(int(v)) for v in values)


# ---- the step ----


def check_shape(batch: int, height: int, width: int) -> None:
    """Refuse a step shape whose dims, strides or element counts overflow a C int (cuDNN and
    cuBLAS take them as int): the largest is batch x 16 channels x height x width."""
    channels = max(max(layer.in_channels, layer.out_channels) for layer in LAYERS)
    for name, value in (("batch", batch), ("height", height), ("width", width)):
        if not 1 <= value <= C_INT_MAX:
            raise ValueError(f"{name} {value}: must be 1..{C_INT_MAX} (cuDNN takes dimensions as C ints)")
    elements = batch * channels * height * width
    if elements > C_INT_MAX:
        raise ValueError(
            f"batch {batch} x {channels} channels x {height} x {width} = {elements} elements, over a "
            f"C int ({C_INT_MAX}): cuDNN's strides and element counts would overflow")


class _Step:
    """Builds the calls of one model shape; the methods mirror layers/ and network/model.py."""

    def __init__(self, s: Settings, batch: int, height: int, width: int):
        check_shape(batch, height, width)
        self.s, self.n, self.h, self.w = s, batch, height, width
        # Buffer names as the trace gives them (network/buffers.py): a ReLU in place is one
        # buffer with two names. act[i] = (conv i's output, relu i's output); grad[i] = (dL/d relu i,
        # dL/d conv i).
        names = {i: layer_buffers(i, s.keep_intermediates) for i in (1, 2)}
        self.act = {i: names[i][:2] for i in names}
        self.grad = {i: names[i][2:] for i in names}
        self.x, self.target = ("x_static", "target_static") if s.graph else ("x", "target")
        self.ones_size = max(height * width, batch)  # Context.ones: grown to every layer's max(H*W, N)
        self.calls: list[Call] = []

    def add(self, function: str, *args: tuple[str, str]) -> None:
        self.calls.append(Call(function, tuple(args)))

    # descriptors, named as the trace names them (layer attribute names)
    def tensor(self, name: str, dims) -> str:
        return name + tensor_text(F32, dims, packed_strides(dims))

    def conv_descs(self, i: int):
        spec = LAYERS[i - 1]
        name = spec.name
        x = self.tensor(f"{name}.x_desc", (self.n, spec.in_channels, self.h, self.w))
        y = self.tensor(f"{name}.y_desc", (self.n, spec.out_channels, self.h, self.w))
        b = self.tensor(f"{name}.b_desc", (1, spec.out_channels, 1, 1))
        w = f"{name}.w_desc" + filter_text(F32, NCHW, (spec.out_channels, spec.in_channels, spec.kernel,
                                                          spec.kernel))
        math = "CUDNN_FMA_MATH" if self.s.math == "fp32" else CHOSEN
        conv = {d: f"{name}.conv_desc.{d}" + convolution_text((spec.pad, spec.pad), (1, 1), (1, 1),
                                                              "CUDNN_CROSS_CORRELATION", F32, math)
                for d in ("forward", "backward_data", "backward_filter")}
        return x, y, w, b, conv

    def relu_descs(self):
        act = "relu.act_desc" + activation_text("CUDNN_ACTIVATION_RELU", "CUDNN_PROPAGATE_NAN", 0.0)
        return act, self.tensor("relu.desc", (self.n, LAYERS[0].out_channels, self.h, self.w))

    CUDNN, CUBLAS = ("handle", "cudnn_handle"), ("handle", "cublas_handle")
    # the chosen algorithm and its part of the shared workspace (workSpace is NULL if none needs any)
    ALGO = (("algo", CHOSEN), ("workSpace", "workspace"), ("workSpaceSizeInBytes", CHOSEN))

    # layers/conv.py
    def conv_forward(self, i: int, x: str, y: str) -> None:
        name = LAYERS[i - 1].name
        x_desc, y_desc, w_desc, b_desc, conv = self.conv_descs(i)
        self.add("cudnnConvolutionForward", self.CUDNN, ("alpha", scalar(1)), ("xDesc", x_desc), ("x", x),
                 ("wDesc", w_desc), ("w", f"{name}.weight"), ("convDesc", conv["forward"]),
                 *self.ALGO, ("beta", scalar(0)), ("yDesc", y_desc), ("y", y))
        self.add("cudnnAddTensor", self.CUDNN, ("alpha", scalar(1)), ("aDesc", b_desc), ("A", f"{name}.bias"),
                 ("beta", scalar(1)), ("cDesc", y_desc), ("C", y))

    def conv_forward_bias_relu(self, i: int, x: str, y: str) -> None:
        name = LAYERS[i - 1].name
        x_desc, y_desc, w_desc, b_desc, conv = self.conv_descs(i)
        act, _ = self.relu_descs()
        self.add("cudnnConvolutionBiasActivationForward", self.CUDNN,
                 ("alpha1", scalar(1)), ("xDesc", x_desc), ("x", x), ("wDesc", w_desc), ("w", f"{name}.weight"),
                 ("convDesc", conv["forward"]), *self.ALGO, ("alpha2", scalar(0)),
                 ("zDesc", y_desc), ("z", y), ("biasDesc", b_desc), ("bias", f"{name}.bias"),
                 ("activationDesc", act), ("yDesc", y_desc), ("y", y))

    def conv_backward_filter(self, i: int, x: str, dy: str) -> None:
        name = LAYERS[i - 1].name
        x_desc, y_desc, w_desc, _, conv = self.conv_descs(i)
        self.add("cudnnConvolutionBackwardFilter", self.CUDNN, ("alpha", scalar(1)),
                 ("xDesc", x_desc), ("x", x), ("dyDesc", y_desc), ("dy", dy),
                 ("convDesc", conv["backward_filter"]), *self.ALGO, ("beta", scalar(0)),
                 ("dwDesc", w_desc), ("dw", f"d{name}.weight"))

    def conv_backward_bias(self, i: int, dy: str) -> None:
        """Two cublasSgemv_v2 against the ones vector (layers/conv.py backward_bias)."""
        spec = LAYERS[i - 1]
        hw, k, n = self.h * self.w, spec.out_channels, self.n
        h, one, zero = self.CUBLAS, ("alpha", scalar(1)), ("beta", scalar(0))
        per_sample = f"{spec.name}.db_per_sample"
        self.add("cublasSgemv_v2", h, ("trans", "CUBLAS_OP_T"), ("m", str(hw)), ("n", str(n * k)),
                 one, ("A", dy), ("lda", str(hw)), ("x", self.ones(hw)), ("incx", "1"), zero,
                 ("y", per_sample), ("incy", "1"))
        self.add("cublasSgemv_v2", h, ("trans", "CUBLAS_OP_N"), ("m", str(k)), ("n", str(n)),
                 one, ("A", per_sample), ("lda", str(k)), ("x", self.ones(n)), ("incx", "1"), zero,
                 ("y", f"d{spec.name}.bias"), ("incy", "1"))

    def ones(self, count: int) -> str:
        return "ones" if count == self.ones_size else f"ones[0:{count}]"

    def conv_backward_data(self, i: int, dy: str, dx: str) -> None:
        name = LAYERS[i - 1].name
        x_desc, y_desc, w_desc, _, conv = self.conv_descs(i)
        self.add("cudnnConvolutionBackwardData", self.CUDNN, ("alpha", scalar(1)),
                 ("wDesc", w_desc), ("w", f"{name}.weight"), ("dyDesc", y_desc), ("dy", dy),
                 ("convDesc", conv["backward_data"]), *self.ALGO, ("beta", scalar(0)),
                 ("dxDesc", x_desc), ("dx", dx))

    # layers/relu.py
    def relu_forward(self, x: str, y: str) -> None:
        act, desc = self.relu_descs()
        self.add("cudnnActivationForward", self.CUDNN, ("activationDesc", act),
                 ("alpha", scalar(1)), ("xDesc", desc), ("x", x), ("beta", scalar(0)), ("yDesc", desc), ("y", y))

    def relu_backward(self, y: str, dy: str, dx: str) -> None:
        act, desc = self.relu_descs()
        self.add("cudnnActivationBackward", self.CUDNN, ("activationDesc", act),
                 ("alpha", scalar(1)), ("yDesc", desc), ("y", y), ("dyDesc", desc), ("dy", dy),
                 ("xDesc", desc), ("x", y), ("beta", scalar(0)), ("dxDesc", desc), ("dx", dx))

    # layers/mse.py
    def loss(self, slot: int) -> None:
        numel = self.n * self.h * self.w
        h, n = self.CUBLAS, ("n", str(numel))
        self.add("cublasScopy_v2", h, n, ("x", "y"), ("incx", "1"), ("y", "dy"), ("incy", "1"))
        self.add("cublasSaxpy_v2", h, n, ("alpha", scalar(-1)), ("x", self.target), ("incx", "1"),
                 ("y", "dy"), ("incy", "1"))
        self.add("cublasSetPointerMode_v2", h, ("mode", "CUBLAS_POINTER_MODE_DEVICE"))
        self.add("cublasSdot_v2", h, n, ("x", "dy"), ("incx", "1"), ("y", "dy"), ("incy", "1"),
                 ("result", f"loss_sums[{slot}]"))
        self.add("cublasSetPointerMode_v2", h, ("mode", "CUBLAS_POINTER_MODE_HOST"))
        self.add("cublasSscal_v2", h, n, ("alpha", scalar(2.0 / numel)), ("x", "dy"), ("incx", "1"))

    # network/model.py
    def forward(self) -> None:
        x = self.x
        for i in (1, 2):
            a, h = self.act[i]
            if self.s.fused:
                self.conv_forward_bias_relu(i, x, h)
            else:
                self.conv_forward(i, x, a)
                self.relu_forward(a, h)
            x = h
        self.conv_forward(3, x, "y")

    def backward(self) -> None:
        dy = "dy"
        for i in (3, 2):
            x = self.act[i - 1][1]
            self.conv_backward_filter(i, x, dy)
            self.conv_backward_bias(i, dy)
            dh, da = self.grad[i - 1]
            self.conv_backward_data(i, dy, dh)
            self.relu_backward(x, dh, da)
            dy = da
        self.conv_backward_filter(1, self.x, dy)
        self.conv_backward_bias(1, dy)

    def sgd(self, lr: float) -> None:
        self.add("cublasSaxpy_v2", self.CUBLAS, ("n", str(NUM_PARAMS)),
                 ("alpha", scalar(-lr)), ("x", "grads"), ("incx", "1"), ("y", "params"), ("incy", "1"))


def step(settings: Settings, batch: int, height: int, width: int, lr: float, slot: int = 0) -> list[Call]:
    """The calls of one training step on a batch (batch, 1, height, width) with learning rate lr.

    slot: where the step's sum of squares goes, loss_sums[slot]; a graph step uses its own slot.
    """
    s = _Step(settings, batch, height, width)
    s.forward()
    s.loss(LOSS_SLOTS if settings.graph else slot)
    s.backward()
    s.sgd(lr)
    return s.calls


def evaluate(settings: Settings, batch: int, height: int, width: int) -> list[Call]:
    """The calls of DenoiseCNN.evaluate: forward and loss (never captured), the sum in loss_sums[LOSS_SLOTS]."""
    s = _Step(replace(settings, graph=False), batch, height, width)
    s.forward()
    s.loss(LOSS_SLOTS)
    return s.calls
