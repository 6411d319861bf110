"""The network on one backend, run tile by tile on whole micrographs, and a micrograph's whole
way through it (run_frame: moments, the map into the model's range, the network, the map back,
the output's moments and the preview's block means, in frame_math / device_math).

cudnn: a DenoiseCNN is built for one input shape, and tiling gives every window of an image one
shape, so one model is built per window shape and the last MAX_MODELS are kept; they share one
device copy of the parameters and one stream. Unless forced, the tile comes from free GPU memory
(the whole micrograph when it fits). An out-of-memory error (CuPy's, or a cuDNN / cuBLAS
allocation failure) drops the models, halves the tile and runs the micrograph again.
reference: reference.forward_fixed_order, whose rounding does not depend on a pixel's place, so
tiles give the whole image's output bit for bit; REFERENCE_TILE pixels a tile unless forced, so
that host memory stays bounded whatever the micrograph's size.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..micrographs.moments import Moments
from ..network import backends, reference
from . import tiling
from .frame_math import HostMath
from .intensity import TrainingStats, check_finite, scaling_for
from .preview import bin_factor

# Device memory per window pixel: DenoiseCNN keeps its training buffers even for forward (four
# 16-channel ones: a1 a2 dh1 dh2, and y dy), plus the window's copy and the output's copy; its
# workspace limit is four 16-channel buffers (model.default_workspace_limit), and find's scratch
# of that size exists while the algorithms are chosen.
GPU_WINDOW_PIXEL_BYTES = 4 * (4 * 16 + 2 + 2) + 2 * (4 * 16 * 4)
# The micrograph on the device: as read, on the model's scale, its extended copy (tiling.extended),
# the network's output and that on the input's scale (float32), and the moments' float64 copy and
# deviations (device_math).
GPU_IMAGE_PIXEL_BYTES = 4 * 5 + 8 * 2
GPU_FIXED_BYTES = 256 << 20  # the workspace limit's fixed part, handles, cuDNN's own allocations
GPU_MEMORY_FRACTION = 0.8  # of the free memory: room for the allocator's rounding
MAX_MODELS = 2  # cuDNN models kept (window shapes): micrographs of two sizes alternate without rebuilding
MIN_TILE = 8  # out-of-memory below this is an error
REFERENCE_TILE = 512  # the NumPy model's default: ~70 MB of activations per window

_OOM_STATUSES = ("CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED", "CUBLAS_STATUS_ALLOC_FAILED")


class OutOfGpuMemory(RuntimeError):
    """A micrograph does not fit on the GPU even in the smallest tiles."""


def select_device(index: int) -> str:
    """Make CUDA device `index` current (CuPy); its name. ValueError when out of range."""
    import cupy

    count = cupy.cuda.runtime.getDeviceCount()
    if not 0 <= index < count:
        raise ValueError(f"--device {index} is out of range: {count} CUDA device(s) visible (0..{count - 1})")
    cupy.cuda.Device(index).use()
    return cupy.cuda.runtime.getDeviceProperties(index)["name"].decode()


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether exc is a device allocation failure (CuPy, CUDA runtime, cuDNN or cuBLAS)."""
    import cupy

    if isinstance(exc, cupy.cuda.memory.OutOfMemoryError):
        return True
    if isinstance(exc, cupy.cuda.runtime.CUDARuntimeError):
        return exc.status == 2  # cudaErrorMemoryAllocation
    return getattr(exc, "status_name", None) in _OOM_STATUSES


@dataclass
class Denoised:
    """One frame's output as written (host float32), its moments (for the file's header) and,
    for a preview, the block means of the model's input and of the output."""

    y: np.ndarray
    moments: Moments
    panels: tuple[np.ndarray, np.ndarray] | None = None


class Denoiser:
    """denoise(x) -> the network's output of one micrograph, tiled exactly (tiling.py);
    run_frame(frame, ...) -> a Denoised, from the frame as read.

    backend: "cudnn" or "reference" (already resolved); tile: force a tile size (pixels);
    report(line): where notes go (the tile halved after an out-of-memory error).
    """

    def __init__(self, backend: str, params: np.ndarray, *, math: str = "tf32", tile: int | None = None,
                 report=print):
        if tile is not None and tile < 1:
            raise ValueError(f"--tile-size must be at least 1, not {tile}")
        self.backend, self.math, self.forced_tile, self.report = backend, math, tile, report
        self._tiles: dict[tuple[int, int], int] = {}  # image shape -> the tile in use
        self._models: OrderedDict[tuple[int, int], object] = OrderedDict()  # window shape -> DenoiseCNN
        if backend == "cudnn":
            import cupy

            from .device_math import DeviceMath

            self.stream = cupy.cuda.Stream(non_blocking=True)
            with self.stream:
                self.params = cupy.asarray(np.asarray(params, dtype=np.float32))  # shared by the models
            self.frame_math = DeviceMath(self.stream)
        else:
            self.params = np.asarray(params, dtype=np.float32)  # (NUM_PARAMS,)
            self.frame_math = HostMath()

    def frame_buffer(self, shape: tuple[int, int]) -> np.ndarray:
        """A host float32 frame to read into or download to: pinned (page-locked) memory on the
        GPU, so that copies run at the bus's rate; CuPy's pinned pool takes it back when the
        array is dropped."""
        if self.backend == "reference":
            return np.empty(shape, np.float32)
        import cupy

        count = shape[0] * shape[1]
        return np.frombuffer(cupy.cuda.alloc_pinned_memory(count * 4), np.float32, count).reshape(shape)

    def run_frame(self, frame: np.ndarray, stats: TrainingStats | None, *, normalize: bool,
                  preview_size: int | None = None) -> Denoised:
        """The output of one frame as read (a host float32 array, from frame_buffer): brought
        into the model's range with its own moments (intensity.py), denoised, brought back
        unless `normalize`. DataError when the frame holds NaN or infinity."""
        ops = self.frame_math
        x = ops.upload(frame)
        moments = ops.moments(x)  # waits for the GPU: `frame` may be reused from here on
        check_finite(moments, frame)
        scaling = scaling_for(moments, stats)
        x_model = ops.affine(x, scaling.to_model)
        y = self.network(x_model)
        if not normalize:
            y = ops.affine(y, scaling.from_model)
        panels = None
        if preview_size is not None:
            factor = bin_factor(*frame.shape, preview_size)
            panels = tuple(ops.to_host(ops.block_means(image, factor)) for image in (x_model, y))
        out = self.frame_buffer(frame.shape)
        written = ops.moments(y)
        ops.download(y, out)
        return Denoised(out, written, panels)

    def tile_for(self, height: int, width: int) -> int:
        """The tile size used for micrographs of this shape."""
        shape = (height, width)
        if shape not in self._tiles:
            if self.forced_tile is not None:
                self._tiles[shape] = self.forced_tile
            elif self.backend == "cudnn":
                self._tiles[shape] = tiling.tile_for_memory(
                    int(self._free_gpu_bytes() * GPU_MEMORY_FRACTION), height, width,
                    window_pixel_bytes=GPU_WINDOW_PIXEL_BYTES, image_pixel_bytes=GPU_IMAGE_PIXEL_BYTES,
                    fixed_bytes=GPU_FIXED_BYTES)
            else:
                self._tiles[shape] = REFERENCE_TILE
        return self._tiles[shape]

    def denoise(self, x: np.ndarray) -> np.ndarray:
        """The network's output of a host float32 micrograph (H, W), as a host array."""
        if self.backend == "reference":
            return self.network(x)
        y = self.network(self.frame_math.upload(np.ascontiguousarray(x, np.float32)))
        return y.get(stream=self.stream)

    def network(self, x):
        """The network's output of x (H, W): NumPy arrays on the reference backend, CuPy ones
        on cudnn (queued on the stream)."""
        if self.backend == "reference":
            out = np.empty_like(x)
            forward = lambda w: reference.forward_fixed_order(self.params, w)  # noqa: E731
            tiling.run_tiled(x, forward, self.tile_for(*x.shape), out)
            return out
        while True:
            try:
                return self._network_gpu(x)
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                failure = f"{type(exc).__name__}: {exc}"
            # Out of the except clause: the traceback, and the device arrays its frames hold, are gone.
            self._halve_tile(x.shape, failure)

    def _network_gpu(self, x):
        import cupy

        tile = self.tile_for(*x.shape)
        model = self._model(tiling.window_shape(*x.shape, tile))
        with self.stream:
            out = cupy.empty_like(x)  # (H, W)
            forward = lambda w: model.forward(cupy.ascontiguousarray(w)[None, None])[0, 0]  # noqa: E731
            tiling.run_tiled(x, forward, tile, out)
        return out

    def _model(self, window: tuple[int, int]):
        """The DenoiseCNN for one window shape, built on first use (the oldest dropped)."""
        if window in self._models:
            self._models.move_to_end(window)
            return self._models[window]
        while len(self._models) >= MAX_MODELS:
            self._models.popitem(last=False)[1].close()
        model = backends.build("cudnn", self.params, batch=1, height=window[0], width=window[1], math=self.math,
                               stream=self.stream)
        self._models[window] = model
        return model

    def _halve_tile(self, shape: tuple[int, int], failure: str) -> None:
        import cupy

        tile = min(self.tile_for(*shape), max(shape))
        self.close_models()
        cupy.get_default_memory_pool().free_all_blocks()
        if tile // 2 < MIN_TILE:
            raise OutOfGpuMemory(f"out of GPU memory even with {tile}-pixel tiles ({failure})")
        self._tiles[shape] = tile // 2
        self.report(f"note: out of GPU memory with {tile}-pixel tiles; going on with {tile // 2}")

    def _free_gpu_bytes(self) -> int:
        import cupy

        free, _total = cupy.cuda.runtime.memGetInfo()
        return free + cupy.get_default_memory_pool().free_bytes()

    def close_models(self) -> None:
        while self._models:
            self._models.popitem()[1].close()

    def close(self) -> None:
        if self.backend == "cudnn":
            self.close_models()
        self.frame_math.close()
