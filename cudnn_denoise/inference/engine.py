"""The network on one backend, run tile by tile on whole micrographs (the model's scale in and out).

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

import numpy as np

from ..network import backends, reference
from . import tiling

# Device memory per window pixel: DenoiseCNN keeps its training buffers even for forward (four
# 16-channel ones: a1 a2 dh1 dh2, and y dy), plus the window's copy and the output's copy; its
# workspace limit is four 16-channel buffers (model.default_workspace_limit), and find's scratch
# of that size exists while the algorithms are chosen.
GPU_WINDOW_PIXEL_BYTES = 4 * (4 * 16 + 2 + 2) + 2 * (4 * 16 * 4)
GPU_IMAGE_PIXEL_BYTES = 4 * 3  # the micrograph, its extended copy (tiling.extended) and its output, on the device
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


class Denoiser:
    """denoise(x) -> the network's output of one micrograph, tiled exactly (tiling.py).

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

            self.stream = cupy.cuda.Stream(non_blocking=True)
            with self.stream:
                self.params = cupy.asarray(np.asarray(params, dtype=np.float32))  # shared by the models
        else:
            self.params = np.asarray(params, dtype=np.float32)  # (NUM_PARAMS,)

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

    def denoise(self, x: np.ndarray, restore=None) -> np.ndarray:
        """The network's output of x (H, W) float32, as a host float32 array; restore(y), if
        given, is applied to the output first (on the device for cudnn)."""
        if self.backend == "reference":
            out = np.empty_like(x)
            forward = lambda w: reference.forward_fixed_order(self.params, w)  # noqa: E731
            tiling.run_tiled(x, forward, self.tile_for(*x.shape), out)
            return restore(out) if restore is not None else out
        while True:
            try:
                return self._denoise_gpu(x, restore)
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                failure = f"{type(exc).__name__}: {exc}"
            # Out of the except clause: the traceback, and the device arrays its frames hold, are gone.
            self._halve_tile(x.shape, failure)

    def _denoise_gpu(self, x: np.ndarray, restore) -> np.ndarray:
        import cupy

        tile = self.tile_for(*x.shape)
        model = self._model(tiling.window_shape(*x.shape, tile))
        with self.stream:
            x_dev = cupy.asarray(x)  # (H, W)
            out = cupy.empty_like(x_dev)  # (H, W)
            forward = lambda w: model.forward(cupy.ascontiguousarray(w)[None, None])[0, 0]  # noqa: E731
            tiling.run_tiled(x_dev, forward, tile, out)
            if restore is not None:
                out = restore(out)
            host = out.get(stream=self.stream)
        self.stream.synchronize()
        return host

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
