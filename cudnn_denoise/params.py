"""The seed network's parameters: names, shapes, flat layout and PyTorch-style initialisation.

Every parameter lives in one contiguous float32 vector, in PyTorch's state_dict order, so one
cublasSaxpy updates all of them and a checkpoint is that vector written out. The cuDNN model, the
NumPy reference, checkpoints and dumps all take their layout from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ConvSpec:
    """One 3x3, stride 1, pad 1 convolution with bias; `relu` says whether ReLU follows it."""

    name: str
    in_channels: int
    out_channels: int
    relu: bool
    kernel: int = 3
    pad: int = 1


# The seed: 1 -> 16 -> 16 -> 1 channels, ReLU after the first two convolutions.
LAYERS: tuple[ConvSpec, ...] = (
    ConvSpec("conv1", 1, 16, relu=True),
    ConvSpec("conv2", 16, 16, relu=True),
    ConvSpec("conv3", 16, 1, relu=False),
)


@dataclass(frozen=True)
class ParamSpec:
    """One tensor of the flat vector: its name, PyTorch shape and element offset."""

    name: str
    shape: tuple[int, ...]
    offset: int

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def _param_specs() -> tuple[ParamSpec, ...]:
    specs = []
    offset = 0
    for layer in LAYERS:
        weight = (layer.out_channels, layer.in_channels, layer.kernel, layer.kernel)  # KCRS
        for name, shape in ((f"{layer.name}.weight", weight), (f"{layer.name}.bias", (layer.out_channels,))):
            specs.append(ParamSpec(name, shape, offset))
            offset += math.prod(shape)
    return tuple(specs)


PARAMS: tuple[ParamSpec, ...] = _param_specs()
NUM_PARAMS: int = sum(p.size for p in PARAMS)  # 2,625 for the seed
PARAM_BY_NAME: dict[str, ParamSpec] = {p.name: p for p in PARAMS}


def views(flat, *, krsc: bool = False):
    """Name -> view of `flat` (NumPy or CuPy, 1-D, NUM_PARAMS long) in each tensor's shape.

    krsc: the vector holds its filters in KRSC order (the NHWC path's, see to_krsc), so weights are
    viewed as (K, R, S, C).
    """
    if flat.shape != (NUM_PARAMS,):
        raise ValueError(f"parameter vector has shape {flat.shape}, expected ({NUM_PARAMS},)")
    out = {}
    for p in PARAMS:
        shape = (p.shape[0], p.shape[2], p.shape[3], p.shape[1]) if krsc and len(p.shape) == 4 else p.shape
        out[p.name] = flat[p.offset : p.offset + p.size].reshape(shape)
    return out


def to_krsc(flat: np.ndarray) -> np.ndarray:
    """A copy of a host parameter vector with every filter reordered KCRS -> KRSC (biases kept).

    The NHWC path keeps its filters this way on the device; checkpoints and every other consumer
    see KCRS (PyTorch's order), so the model converts when parameters enter or leave it.
    """
    return _reordered(flat, krsc=True)


def from_krsc(flat: np.ndarray) -> np.ndarray:
    """The inverse of to_krsc: filters KRSC -> KCRS."""
    return _reordered(flat, krsc=False)


def _reordered(flat: np.ndarray, *, krsc: bool) -> np.ndarray:
    """A float32 copy of flat with each filter moved into KRSC order (krsc) or back into KCRS."""
    out = np.array(flat, dtype=np.float32)
    target = views(out, krsc=krsc)
    axes = (0, 2, 3, 1) if krsc else (0, 3, 1, 2)
    for name, weight in views(np.asarray(flat), krsc=not krsc).items():
        if weight.ndim == 4:
            target[name][...] = weight.transpose(axes)
    return out


def init_params(seed: int = 0) -> np.ndarray:
    """A fresh float32 vector initialised as PyTorch's nn.Conv2d does by default.

    PyTorch draws the weight with kaiming_uniform_(a=sqrt(5)), which is uniform in
    +-1/sqrt(fan_in), and the bias uniform in +-1/sqrt(fan_in), fan_in = C*R*S. The draws come from
    NumPy's PCG64 seeded with `seed` (not PyTorch's generator), in state_dict order.
    """
    rng = np.random.default_rng(seed)
    flat = np.empty(NUM_PARAMS, dtype=np.float32)
    for layer in LAYERS:
        bound = 1.0 / math.sqrt(layer.in_channels * layer.kernel * layer.kernel)
        for suffix in ("weight", "bias"):
            spec = PARAM_BY_NAME[f"{layer.name}.{suffix}"]
            flat[spec.offset : spec.offset + spec.size] = rng.uniform(-bound, bound, spec.size)
    return flat
