"""DenoiseCNN: the seed's three convolutions trained with cuDNN and cuBLAS calls on CuPy buffers.

One training step, in call order (the Fortran port makes the same calls; docs/fortran.md):
  forward   conv1: cudnnConvolutionForward + cudnnAddTensor, relu1: cudnnActivationForward
            (or both in one cudnnConvolutionBiasActivationForward when fused), the same for conv2,
            conv3: cudnnConvolutionForward + cudnnAddTensor
  loss      cublasScopy, cublasSaxpy, cublasSdot, cublasSscal (layers/mse.py)
  backward  conv3: cudnnConvolutionBackwardFilter, bias gradient (two cublasSgemv), BackwardData;
            relu2: cudnnActivationBackward; conv2: the same three; relu1: ActivationBackward;
            conv1: BackwardFilter and bias gradient (the input needs no gradient)
  update    one cublasSaxpy over the flat parameter vector (on several GPUs, first the gradient
            average: ncclAllReduce and cublasSscal; distributed/nccl.py)
With graph_api=True (the NHWC fast path, layers/fusion.py) the hidden activations are NHWC, the
filters KRSC, and each convolution direction is one cudnnBackendExecute of a fused graph:
  forward   conv1 + bias + ReLU, conv2 + bias + ReLU, conv3 + bias
  backward  conv3: wgrad; bias gradient (two cublasSgemv); dgrad + relu2 backward; conv2: bias
            gradient; wgrad; dgrad + relu1 backward; conv1: bias gradient; wgrad. A hidden layer's
            bias gradient is a reduction inside the dgrad above it where that measured faster,
            else two cublasSgemv (on the H100: fused for conv1, gemv for conv2)
With precision="bf16" (on the graph-API path; layers/precision.py) the hidden activations, their
gradients and the filters the convolutions read are BF16, the parameters, gradients, loss and
update FP32: cudnnTransformTensor copies the parameters, input and loss gradient to BF16 and the
filter gradients back; each dgrad is a graph of its own, followed by one for the ReLU backward of
the layer below, where that measured faster than one fused graph; that layer's bias gradient is a
reduction in that graph, or cublasSgemmEx (BF16 in, FP32 out) and cublasSgemv after it, whichever
measured faster (fusion.DGRAD_FORMS).
All buffers, descriptors and algorithms are made once for one (batch, height, width); the step
never synchronises the host except where a loss is read.
"""

from __future__ import annotations

import numpy as np

from ..bindings.device import require_gpu
from ..params import LAYERS, NUM_PARAMS, from_krsc, to_krsc, views
from .buffers import BUFFERS
from .options import check as check_options


def default_workspace_limit(batch: int, height: int, width: int) -> int:
    """Bytes one algorithm may use: four hidden activations' worth, plus 64 MiB.

    Measured on the H100 at 4 x 16 x 1024 x 1024 (docs/performance.md): the fast TF32 algorithms
    of the 16-channel layers ask for just over one activation (513 MiB: cuDNN's own NHWC copies),
    and conv3's fastest filter gradient for more than two (2.2 ms without it, 0.9 ms with it).
    A fixed 1 GiB was enough there but refused them at 4 x 2048 x 2048. Peak memory stays below
    PyTorch eager's in the benchmark.
    """
    return 4 * batch * 16 * height * width * 4 + (64 << 20)
LOSS_SLOTS = 1024  # device loss sums kept between reads (train reads them at each log line)


class DenoiseCNN:
    """The cuDNN backend: same surface as reference.ReferenceModel.

    reduce_gradients: None, or a callable queued on self.stream between the backward pass and SGD
    with the flat gradient buffer (data-parallel training: nccl.GradientAverage's ncclAllReduce and
    cublasSscal_v2); with graph=True it is captured in the step's CUDA graph with the other calls.
    """

    name = "cudnn"
    reduce_gradients = None

    def __init__(self, params: np.ndarray, *, batch: int, height: int, width: int, math: str = "tf32",
                 deterministic: bool = False, fused: bool = False, search: str = "find",
                 workspace_limit: int | None = None, keep_intermediates: bool = False,
                 graph: bool = False, graph_api: bool = False, precision: str = "fp32",
                 algorithm_cache: bool = True, stream=None):
        check_options(math=math, precision=precision, fused=fused, graph_api=graph_api,
                      keep_intermediates=keep_intermediates)
        require_gpu()
        from ..layers.algorithms import Policy
        from ..layers.context import Context
        from ..layers.mse import MSELoss
        from ..layers.relu import ReLU

        self.shape = (batch, 1, height, width)
        self.math, self.deterministic, self.fused = math, deterministic, fused
        self.keep_intermediates = keep_intermediates
        self.graph_api = graph_api  # NHWC activations and KRSC filters on the device
        self.precision = precision
        self.graph = graph
        self._graph = None  # the captured step (CUDA graph) and the lr it was captured with
        self.ctx = Context(stream, algorithm_cache=algorithm_cache)
        self.stream = self.ctx.stream
        with self.stream:
            self._allocate(params)
        self.w = views(self.params, krsc=graph_api)
        self.dw = views(self.grads, krsc=graph_api)
        if precision == "bf16":
            self._make_bf16_copies()
        self._make_convolutions()
        self.relu = ReLU(self.ctx, batch, 16, height, width)  # relu1 and relu2 share one shape
        self.mse = MSELoss(self.ctx, batch * height * width)
        if workspace_limit is None:
            workspace_limit = default_workspace_limit(batch, height, width)
        self._choose_algorithms(Policy(search, math == "fp32", deterministic, workspace_limit))

    def _allocate(self, params) -> None:
        """The device buffers of network/buffers.py, the parameters, gradients and loss sums."""
        import cupy

        # Shared, in place (e.g. by a model for a smaller last batch): already in this model's
        # device layout (KRSC filters with graph_api), unlike host parameters, which are KCRS.
        if isinstance(params, cupy.ndarray):
            if params.shape != (NUM_PARAMS,) or params.dtype != cupy.float32:
                raise ValueError(f"parameters have {params.dtype} {params.shape}, expected float32 ({NUM_PARAMS},)")
            self.params = params
        else:
            self.params = cupy.asarray(self._to_device_layout(self._checked_params(params)))  # (2625,)
        self.grads = cupy.zeros(NUM_PARAMS, dtype=cupy.float32)  # (2625,), same layout
        # One sum of squares per step between reads; the extra last slot is the captured step's.
        self.loss_sums = cupy.zeros(LOSS_SLOTS + 1, dtype=cupy.float32)
        if self.graph:  # a captured step reads fixed addresses: batches are copied into these first
            self.x_static = cupy.empty(self.shape, dtype=cupy.float32)
            self.target_static = cupy.empty(self.shape, dtype=cupy.float32)
        n, _, h, w = self.shape
        # BF16 tensors are uint16 storage: CuPy has no bfloat16, and only cuDNN reads them. The
        # network's input, output and their gradients stay FP32.
        hidden = cupy.uint16 if self.precision == "bf16" else cupy.float32
        for b in BUFFERS:
            if b.in_place_of and not self.keep_intermediates:  # a ReLU in place
                setattr(self, b.name, getattr(self, b.in_place_of))
            else:
                setattr(self, b.name, cupy.empty((n, b.channels, h, w), dtype=hidden if b.channels > 1 else cupy.float32))
        if self.precision == "bf16":  # the BF16 copies the convolutions read, and dgrad's output before the ReLU backward
            self.params16 = cupy.empty(NUM_PARAMS, dtype=cupy.uint16)
            self.grads16 = cupy.empty(NUM_PARAMS, dtype=cupy.uint16)
            self.x16 = cupy.empty(self.shape, dtype=cupy.uint16)
            self.dy16 = cupy.empty(self.shape, dtype=cupy.uint16)
            self.dh = cupy.empty(self.h1.shape, dtype=cupy.uint16)

    def _make_bf16_copies(self) -> None:
        from ..layers.precision import BFLOAT16, FLOAT, Convert

        self.w16, self.dw16 = views(self.params16, krsc=True), views(self.grads16, krsc=True)
        self.params_to_bf16 = Convert(self.ctx, (1, NUM_PARAMS, 1, 1), FLOAT, BFLOAT16)
        self.io_to_bf16 = Convert(self.ctx, self.shape, FLOAT, BFLOAT16)  # the input and dy
        self.filter_grads_to_fp32 = {name: Convert(self.ctx, (1, v.size, 1, 1), BFLOAT16, FLOAT)
                                     for name, v in self.dw16.items() if v.ndim == 4}

    def _make_convolutions(self) -> None:
        from ..layers.conv import Conv2d
        from ..layers.fusion import FusedConv2d
        from ..layers.precision import layer_types

        n, _, h, w = self.shape
        if self.graph_api:
            bf16 = self.precision == "bf16"
            self.conv1, self.conv2, self.conv3 = (
                FusedConv2d(self.ctx, s, n, h, w, data_gradient=i > 0, types=layer_types(self.precision, s, i == 0),
                            scratch=self.dh if bf16 else None)
                for i, s in enumerate(LAYERS))
        else:
            self.conv1, self.conv2, self.conv3 = (Conv2d(self.ctx, s, n, h, w, strict_fp32=self.math == "fp32")
                                                  for s in LAYERS)

    @staticmethod
    def _checked_params(params) -> np.ndarray:
        params = np.asarray(params)
        if params.shape != (NUM_PARAMS,):
            raise ValueError(f"parameters have shape {params.shape}, expected ({NUM_PARAMS},)")
        return params.astype(np.float32, copy=False)

    def _to_device_layout(self, params: np.ndarray) -> np.ndarray:
        return to_krsc(params) if self.graph_api else params

    def _from_device_layout(self, params: np.ndarray) -> np.ndarray:
        return from_krsc(params) if self.graph_api else params

    def _choose_algorithms(self, policy) -> None:
        import cupy

        if self.graph_api:  # each graph is timed on random buffers of its own shapes and types
            for conv in (self.conv1, self.conv2, self.conv3):
                conv.choose_algorithms(policy)
        else:
            with self.stream:
                x = cupy.random.random(self.shape, dtype=cupy.float32)  # find times real-looking data, not zeros
            w = self.w
            self.conv1.choose_algorithms(policy, x, w["conv1.weight"], self.a1, None)
            self.conv2.choose_algorithms(policy, self.h1, w["conv2.weight"], self.a2, self.dh1)
            self.conv3.choose_algorithms(policy, self.h2, w["conv3.weight"], self.y, self.dh2)
            del x
        self.stream.synchronize()
        cupy.get_default_memory_pool().free_all_blocks()  # drop find's scratch buffers and workspaces

    def algorithms(self) -> dict[str, dict[str, object]]:
        """layer -> direction -> the chosen algorithm (for logs, benchmarks and docs)."""
        return {conv.spec.name: dict(conv.choice) for conv in (self.conv1, self.conv2, self.conv3)}

    # -- one step --------------------------------------------------------------------------------

    def _check_input(self, array, what: str) -> None:
        if array.shape != self.shape or array.dtype != np.float32 or not array.flags.c_contiguous:
            raise ValueError(f"{what} must be a C-contiguous float32 array of shape {self.shape}, "
                             f"got {array.dtype} {array.shape}")

    def _forward(self, x) -> None:
        """a1/h1, a2/h2 and y from x."""
        w = self.w
        if self.graph_api:
            if self.precision == "bf16":
                self.params_to_bf16(self.params, self.params16)
            for conv, x_in, out in ((self.conv1, x, self.h1), (self.conv2, self.h1, self.h2),
                                    (self.conv3, self.h2, self.y)):
                conv.forward(x_in, *self._forward_params(conv), out)
            return
        for conv, x_in, a, h in ((self.conv1, x, self.a1, self.h1), (self.conv2, self.h1, self.a2, self.h2)):
            name = conv.spec.name
            if self.fused:
                conv.forward_bias_activation(x_in, w[f"{name}.weight"], w[f"{name}.bias"], h, self.relu.act_desc)
            else:
                conv.forward(x_in, w[f"{name}.weight"], w[f"{name}.bias"], a)
                self.relu.forward(a, h)
        self.conv3.forward(self.h2, w["conv3.weight"], w["conv3.bias"], self.y)

    def _backward(self, x) -> None:
        """Every gradient from dy: parameters into self.grads, activations into dh/da."""
        if self.graph_api:
            self._backward_graph_api(x)
            return
        w, dw = self.w, self.dw
        self.conv3.backward_filter(self.h2, self.dy, dw["conv3.weight"])
        self.conv3.backward_bias(self.dy, dw["conv3.bias"])
        self.conv3.backward_data(w["conv3.weight"], self.dy, self.dh2)
        self.relu.backward(self.h2, self.dh2, self.da2)
        self.conv2.backward_filter(self.h1, self.da2, dw["conv2.weight"])
        self.conv2.backward_bias(self.da2, dw["conv2.bias"])
        self.conv2.backward_data(w["conv2.weight"], self.da2, self.dh1)
        self.relu.backward(self.h1, self.dh1, self.da1)
        self.conv1.backward_filter(x, self.da1, dw["conv1.weight"])
        self.conv1.backward_bias(self.da1, dw["conv1.bias"])

    def _forward_params(self, conv) -> tuple:
        """The filter and bias a layer's forward graph reads: FP32 or the BF16 copies (its types)."""
        name, types = conv.spec.name, conv.types.forward
        pick = lambda role: self.w16 if role in types else self.w  # noqa: E731 - a role named is BF16
        return pick("w")[f"{name}.weight"], pick("b")[f"{name}.bias"]

    def _backward_graph_api(self, x) -> None:
        """The backward pass of the NHWC path: each dgrad also applies the ReLU backward below it.
        Bias gradients are FP32 always; in BF16 the convolutions read and write BF16 copies."""
        dy, w, dw, db = self.dy, self.w, self.dw, self.dw
        if self.precision == "bf16":
            self.io_to_bf16(self.dy, self.dy16)
            self.io_to_bf16(x, self.x16)
            dy, x, w, dw = self.dy16, self.x16, self.w16, self.dw16
        c1, c2, c3 = self.conv1, self.conv2, self.conv3
        c3.backward_filter(self.h2, dy, dw["conv3.weight"])
        c3.backward_bias(self.dy, db["conv3.bias"])
        c3.backward_data(dy, w["conv3.weight"], self.h2, self.da2, db["conv2.bias"])
        if not c3.bias_fused:
            c2.backward_bias(self.da2, db["conv2.bias"])
        c2.backward_filter(self.h1, self.da2, dw["conv2.weight"])
        c2.backward_data(self.da2, w["conv2.weight"], self.h1, self.da1, db["conv1.bias"])
        if not c2.bias_fused:
            c1.backward_bias(self.da1, db["conv1.bias"])
        c1.backward_filter(x, self.da1, dw["conv1.weight"])
        if self.precision == "bf16":
            for name, convert in self.filter_grads_to_fp32.items():
                convert(self.dw16[name], self.dw[name])

    def _step(self, x, target, lr: float, loss_sum) -> None:
        """The training step's calls: forward, loss, backward, update."""
        from ..layers.sgd import sgd_step

        self._forward(x)
        self.mse.forward_backward(self.y, target, self.dy, loss_sum)
        self._backward(x)
        if self.reduce_gradients is not None:
            self.reduce_gradients(self.grads)
        sgd_step(self.ctx, self.params, self.grads, lr)

    def train_step_async(self, x, target, lr: float, slot: int = 0) -> None:
        """Queue one SGD step on self.stream; the loss's sum of squares goes to loss_sums[slot].

        x and target: device arrays (N, 1, H, W) that are ready on self.stream. With graph=True the
        step's calls are captured once (CUDA stream capture) and replayed: the batch is first copied
        into fixed buffers, and the loss sum copied out of the graph's own slot into `slot`.
        """
        self._check_input(x, "x")
        self._check_input(target, "target")
        if not self.graph:
            self._step(x, target, lr, self.loss_sums[slot : slot + 1])
            return
        self._copy(self.x_static, x)
        self._copy(self.target_static, target)
        graph_slot = self.loss_sums[LOSS_SLOTS:]
        if self._graph is None or self._graph[1] != lr:
            self.stream.begin_capture()
            try:
                self._step(self.x_static, self.target_static, lr, graph_slot)
            finally:
                self._graph = (self.stream.end_capture(), lr)
        self._graph[0].launch(self.stream)
        self._copy(self.loss_sums[slot : slot + 1], graph_slot)

    def _copy(self, dst, src) -> None:
        """Device-to-device copy on the model's stream (cudaMemcpyAsync; a no-op onto itself)."""
        import cupy

        if dst.data.ptr != src.data.ptr:
            cupy.cuda.runtime.memcpyAsync(dst.data.ptr, src.data.ptr, src.nbytes,
                                          cupy.cuda.runtime.memcpyDeviceToDevice, self.stream.ptr)

    def read_losses(self, count: int) -> np.ndarray:
        """The mean losses of slots 0..count-1 (waits for the stream)."""
        sums = self.loss_sums[:count].get(stream=self.stream)
        self.stream.synchronize()
        return sums.astype(np.float64) / self.mse.numel

    def train_step(self, x, target, lr: float) -> float:
        """One SGD step; returns the loss before the update (synchronises)."""
        self.train_step_async(self._to_device(x), self._to_device(target), lr, slot=0)
        return float(self.read_losses(1)[0])

    def evaluate(self, x, target) -> float:
        """The loss of the current parameters on one batch, without a step (synchronises)."""
        x, target = self._to_device(x), self._to_device(target)
        self._check_input(x, "x")
        self._check_input(target, "target")
        self._forward(x)
        self.mse.forward_backward(self.y, target, self.dy, self.loss_sums[LOSS_SLOTS:])
        return float(self.read_losses(LOSS_SLOTS + 1)[-1])

    def forward(self, x):
        """The model's output for x: a device copy, complete when returned (usable on any stream)."""
        x = self._to_device(x)
        self._check_input(x, "x")
        self._forward(x)
        with self.stream:
            y = self.y.copy()
        self.stream.synchronize()
        return y

    def record_step(self, x, target, lr: float) -> dict[str, np.ndarray]:
        """One SGD step returning every intermediate as host arrays, named as in reference.py."""
        if not self.keep_intermediates:
            raise ValueError("record_step needs DenoiseCNN(..., keep_intermediates=True)")
        x, target = self._to_device(x), self._to_device(target)
        before = self.get_params()
        loss = self.train_step(x, target, lr)
        host = lambda a: a.get(stream=self.stream)  # noqa: E731
        out = {"x": host(x), "target": host(target), "loss": np.array(loss, dtype=np.float32)}
        out.update((b.intermediate, host(getattr(self, b.name))) for b in BUFFERS)
        grads = host(self.grads)
        for name, view in views(grads).items():
            out[f"d{name}"] = view
        out["dparams"] = grads
        out["lr"] = np.array(lr, dtype=np.float32)
        out["params"] = before
        out["params.updated"] = self.get_params()
        return out

    def _to_device(self, array):
        import cupy

        if isinstance(array, cupy.ndarray):
            return array
        with self.stream:
            return cupy.asarray(np.ascontiguousarray(array, dtype=np.float32))

    # -- parameters ------------------------------------------------------------------------------

    def get_params(self) -> np.ndarray:
        """The parameters as a host vector in state_dict order, filters KCRS (whatever the device holds)."""
        out = self.params.get(stream=self.stream)
        self.stream.synchronize()
        return self._from_device_layout(out)

    def get_grads(self) -> np.ndarray:
        """The last step's gradients, laid out as get_params."""
        out = self.grads.get(stream=self.stream)
        self.stream.synchronize()
        return self._from_device_layout(out)

    def set_params(self, params: np.ndarray) -> None:
        self.params.set(self._to_device_layout(self._checked_params(params)), stream=self.stream)
        self.stream.synchronize()

    def close(self) -> None:
        self._graph = None  # the captured step goes first: it may hold NCCL calls on a communicator
        if self.graph_api:
            for conv in (self.conv1, self.conv2, self.conv3):
                conv.close()
        if self.precision == "bf16":
            for convert in (self.params_to_bf16, self.io_to_bf16, *self.filter_grads_to_fp32.values()):
                convert.close()
        self.ctx.close()
