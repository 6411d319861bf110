"""The step's intermediate buffers, named once.

Each buffer has two names: the DenoiseCNN attribute (the trace, port/calls.py and docs/fortran.md's
Setup table use it) and the intermediate it holds as reference.py and the dump files name it. Without
keep_intermediates a ReLU works in place, so h<i> is a<i> and da<i> is dh<i>: one buffer, named by
the trace with both names joined in sorted order ("a1/h1").

    activations  a1 h1 a2 h2 y            conv1 relu1 conv2 relu2 conv3    (forward order)
    gradients    dy dh2 da2 dh1 da1       dconv3 drelu2 dconv2 drelu1 dconv1 (backward order)
"""

from __future__ import annotations

from dataclasses import dataclass

from ..params import LAYERS


@dataclass(frozen=True)
class Buffer:
    name: str                 # the model's attribute, the trace's name
    intermediate: str         # reference.py's and the dump's name
    channels: int             # (N, channels, H, W)
    in_place_of: str | None   # the buffer it shares without keep_intermediates (a ReLU in place)



def _layer_outputs() -> tuple[tuple[Buffer, Buffer], ...]:
    out = []
    for i, layer in enumerate(LAYERS, start=1):
        name = "y" if i == len(LAYERS) else f"a{i}"  # the last convolution's output is the prediction
        conv = Buffer(name, layer.name, layer.out_channels, None)
        out.append((conv, Buffer(f"h{i}", f"relu{i}", layer.out_channels, name) if layer.relu else conv))
    return tuple(out)


# Per layer: (its convolution's output, its output: the ReLU's, or the convolution's if none).
LAYER_OUTPUTS: tuple[tuple[Buffer, Buffer], ...] = _layer_outputs()
ACTIVATIONS: tuple[Buffer, ...] = tuple(dict.fromkeys(b for pair in LAYER_OUTPUTS for b in pair))  # forward order


def _gradient(b: Buffer) -> Buffer:
    """dL/d b. The ReLU backward over a conv output writes it in place of dL/d(ReLU output)."""
    relu = next((o.name for o in ACTIVATIONS if o.in_place_of == b.name), None)
    return Buffer("d" + b.name, "d" + b.intermediate, b.channels, relu and "d" + relu)


GRADIENTS: tuple[Buffer, ...] = tuple(_gradient(b) for b in reversed(ACTIVATIONS))  # backward order
BUFFERS: tuple[Buffer, ...] = ACTIVATIONS + GRADIENTS
OUTPUT: Buffer = ACTIVATIONS[-1]  # y, the dump's conv3


def trace_name(name: str, keep_intermediates: bool) -> str:
    """The name a trace gives the memory buffer `name` is in: both names of a shared one, sorted."""
    if keep_intermediates:
        return name
    pair = next(({b.name, b.in_place_of} for b in BUFFERS if b.in_place_of and name in (b.name, b.in_place_of)),
                {name})
    return "/".join(sorted(pair))


def layer_buffers(i: int, keep_intermediates: bool) -> tuple[str, str, str, str]:
    """Trace names of hidden layer i's (conv output, ReLU output, dL/d ReLU output, dL/d conv output)."""
    return tuple(trace_name(f"{kind}{i}", keep_intermediates) for kind in ("a", "h", "dh", "da"))
