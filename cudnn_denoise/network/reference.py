"""The seed network's forward, backward and SGD step in plain NumPy: the CPU oracle.

The math the cuDNN model computes, written out for the Fortran port and the tests; it runs in
float32 or float64 (the dtype of the parameters). Layout NCHW, filters KCRS as PyTorch stores
them, parameters in one flat vector laid out by params.py. Nothing here touches a GPU.

Names of the intermediates (dump files use the same ones; network/buffers.py names them once):
    activations  conv1 relu1 conv2 relu2 conv3        conv3 is the output y; conv* before ReLU
    gradients    dconv3 drelu2 dconv2 drelu1 dconv1   d<name> = dL/d<name>, same shape
    parameters   dconv1.weight dconv1.bias ... dconv3.bias (dL/d<param>, PyTorch shapes)
"""

from __future__ import annotations

import numpy as np

from cudnn_denoise.network import buffers
from cudnn_denoise.params import LAYERS, views

# Per layer: the names of its convolution's output and of the layer's output (its ReLU's, if any).
_LAYER_NAMES: tuple[tuple[str, str], ...] = tuple((conv.intermediate, out.intermediate)
                                                  for conv, out in buffers.LAYER_OUTPUTS)
ACTIVATIONS: tuple[str, ...] = tuple(b.intermediate for b in buffers.ACTIVATIONS)  # forward order
OUTPUT: str = buffers.OUTPUT.intermediate  # "conv3": the network's output y

# im2col works on bands of output rows, so its 9x copy stays near this size (cache-sized and
# reused by malloc) instead of 9x the whole image: ~4x faster on 1024 x 1024 images.
_BAND_BYTES = 8 << 20


# ----------------------------------------------------------------------------------------------
# Convolution: 3x3, stride 1, zero padding 1, cross-correlation (CUDNN_CROSS_CORRELATION, as
# PyTorch), so the output has the input's H x W. With xp = x padded by 1 zero on each side:
#     y[n,k,h,w]  = b[k] + sum_{c,r,s} w[k,c,r,s] * xp[n,c,h+r,w+s]
# Backward, given dy = dL/dy:
#     db[k]       = sum_{n,h,w} dy[n,k,h,w]                         cudnnConvolutionBackwardBias
#     dw[k,c,r,s] = sum_{n,h,w} dy[n,k,h,w] * xp[n,c,h+r,w+s]       cudnnConvolutionBackwardFilter
#     dx[n,c,h,w] = sum_{k,r,s} w[k,c,r,s] * dyp[n,k,h+2-r,w+2-s]   cudnnConvolutionBackwardData
# i.e. dx is the same correlation applied to dy with the filter flipped in r, s and k, c swapped.


def _im2col_band(xp, h0, h1):
    """Output rows h0:h1 of a padded image as one matrix: cols[(c,r,s), (h,w)] = xp[c, h+r, w+s].

    xp is (C, H+2, W+2); the result is (C*3*3, (h1-h0)*W), rows in the order of w.reshape(K, -1).
    """
    channels, _, padded_width = xp.shape
    width = padded_width - 2
    taps = [xp[:, h0 + r : h1 + r, s : s + width] for r in range(3) for s in range(3)]
    cols = np.stack(taps, axis=1)  # (C, 9, h1-h0, W)
    return cols.reshape(channels * 9, (h1 - h0) * width)


def _band_rows(channels, width, dtype):
    """How many output rows one im2col band holds (at least 1)."""
    return max(1, _BAND_BYTES // (9 * channels * width * np.dtype(dtype).itemsize))


def _pad(x):
    """x (N, C, H, W) -> xp (N, C, H+2, W+2), one zero on each side of H and W."""
    return np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))


def _correlate(x, w):
    """y[n,k,h,w] = sum_{c,r,s} w[k,c,r,s] * xp[n,c,h+r,w+s] (no bias).

    x (N,C,H,W), w (K,C,3,3) -> y (N,K,H,W).
    """
    batch, channels, height, width = x.shape
    out_channels = w.shape[0]
    xp = _pad(x)  # (N, C, H+2, W+2)
    w_mat = w.reshape(out_channels, channels * 9)  # (K, C*9)
    y = np.empty((batch, out_channels, height, width), dtype=x.dtype)  # (N, K, H, W)
    rows = _band_rows(channels, width, x.dtype)
    for n in range(batch):
        for h0 in range(0, height, rows):
            h1 = min(h0 + rows, height)
            y_band = w_mat @ _im2col_band(xp[n], h0, h1)  # (K, (h1-h0)*W)
            y[n, :, h0:h1] = y_band.reshape(out_channels, h1 - h0, width)
    return y


def conv2d_forward(x, w, b):
    """y = conv(x, w) + b: x (N,C,H,W), w (K,C,3,3), b (K,) -> y (N,K,H,W)."""
    y = _correlate(x, w)  # (N, K, H, W)
    y += b.reshape(1, -1, 1, 1)
    return y


def conv2d_backward_data(w, dy):
    """dx = dL/dx: w (K,C,3,3), dy (N,K,H,W) -> dx (N,C,H,W)."""
    w_flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C, K, 3, 3)
    return _correlate(dy, w_flipped)


def conv2d_backward_filter(x, dy):
    """(dw, db) = (dL/dw, dL/db): x (N,C,H,W), dy (N,K,H,W) -> dw (K,C,3,3), db (K,)."""
    batch, channels, height, width = x.shape
    out_channels = dy.shape[1]
    xp = _pad(x)  # (N, C, H+2, W+2)
    dw = np.zeros((out_channels, channels * 9), dtype=x.dtype)  # (K, C*9)
    rows = _band_rows(channels, width, x.dtype)
    for n in range(batch):
        for h0 in range(0, height, rows):
            h1 = min(h0 + rows, height)
            dy_band = dy[n, :, h0:h1].reshape(out_channels, -1)  # (K, (h1-h0)*W)
            dw += dy_band @ _im2col_band(xp[n], h0, h1).T
    db = dy.sum(axis=(0, 2, 3))  # (K,)
    return dw.reshape(out_channels, channels, 3, 3), db


def conv2d_backward(x, w, dy):
    """(dx, dw, db) of y = conv(x, w) + b, given dy = dL/dy (N,K,H,W)."""
    dw, db = conv2d_backward_filter(x, dy)
    return conv2d_backward_data(w, dy), dw, db


# ----------------------------------------------------------------------------------------------
# ReLU, loss, SGD


def relu_forward(x):
    """y = max(x, 0), elementwise."""
    return np.maximum(x, 0)


def relu_backward(y, dy):
    """dx = dy where y > 0, else 0 (0 at y == 0 exactly, as PyTorch and cudnnActivationBackward)."""
    return dy * (y > 0)


def mse_loss(y, target):
    """(loss, dy): loss = mean((y - target)^2) over all N elements, dy = 2 (y - target) / N."""
    diff = y - target  # (N, 1, H, W)
    loss = np.mean(diff * diff)  # 0-d, y's dtype
    dy = diff * (2.0 / diff.size)  # (N, 1, H, W)
    return loss, dy


def sgd_update(flat, dflat, lr):
    """flat <- flat - lr * dflat, in place (one cublasSaxpy with alpha = -lr on the GPU)."""
    flat -= lr * dflat


# ----------------------------------------------------------------------------------------------
# The network


def forward(flat, x):
    """Activations {"conv1", "relu1", "conv2", "relu2", "conv3"} of input x (N,1,H,W).

    flat is the parameter vector (params.py layout); x is cast to its dtype. Shapes: conv1, relu1,
    conv2, relu2 are (N,16,H,W); conv3 = y is (N,1,H,W).
    """
    p = views(flat)
    acts = {}
    a = np.asarray(x, dtype=flat.dtype)  # the current layer's input
    for layer, (conv_name, out_name) in zip(LAYERS, _LAYER_NAMES):
        a = conv2d_forward(a, p[f"{layer.name}.weight"], p[f"{layer.name}.bias"])
        acts[conv_name] = a
        if layer.relu:
            a = relu_forward(a)
            acts[out_name] = a
    return acts


def backward(flat, x, acts, dy):
    """(dflat, dacts): gradients of the loss given dy = dL/dy and forward()'s activations.

    dflat has flat's layout (views(dflat)["conv1.weight"] is dL/dw of conv1); dacts holds
    "dconv3" (= dy), "drelu2", "dconv2", "drelu1", "dconv1", each its activation's shape.
    """
    p = views(flat)
    dflat = np.empty_like(flat)
    dp = views(dflat)
    layer_inputs = [np.asarray(x, dtype=flat.dtype)] + [acts[out] for _, out in _LAYER_NAMES[:-1]]
    dacts = {}
    d = dy  # dL/d(current layer's output)
    for i in reversed(range(len(LAYERS))):
        layer, (conv_name, out_name) = LAYERS[i], _LAYER_NAMES[i]
        if layer.relu:
            dacts[f"d{out_name}"] = d
            d = relu_backward(acts[out_name], d)
        dacts[f"d{conv_name}"] = d
        dw, db = conv2d_backward_filter(layer_inputs[i], d)
        dp[f"{layer.name}.weight"][...] = dw
        dp[f"{layer.name}.bias"][...] = db
        if i > 0:  # the input image needs no gradient (the cuDNN model skips it too)
            d = conv2d_backward_data(p[f"{layer.name}.weight"], d)
    return dflat, dacts


def forward_fixed_order(flat, x: np.ndarray) -> np.ndarray:
    """The network's output (H, W) of one image x (H, W), float32, each pixel's sums in one order.

    For each layer: the bias, then the products added channel by channel and tap by tap (r, s),
    each a separate float32 multiply and add. A pixel's rounding then does not depend on where it
    sits in the image, so a window's output equals the whole image's there bit for bit (denoise's
    exact tiling rests on this). forward() is faster but its BLAS products round a pixel by its
    place in the matrix; the two agree to float32 rounding.
    """
    p = views(np.asarray(flat, dtype=np.float32))
    a = np.asarray(x, dtype=np.float32)[None]  # (C=1, H, W)
    for layer in LAYERS:
        w, b = p[f"{layer.name}.weight"], p[f"{layer.name}.bias"]  # (K, C, 3, 3), (K,)
        channels, height, width = a.shape
        ap = np.pad(a, ((0, 0), (1, 1), (1, 1)))  # (C, H+2, W+2): the layer's own zero padding
        y = np.empty((layer.out_channels, height, width), dtype=np.float32)  # (K, H, W)
        y[...] = b[:, None, None]
        for c in range(channels):
            for r in range(3):
                for s in range(3):
                    y += w[:, c, r, s, None, None] * ap[c, r : r + height, s : s + width]
        a = np.maximum(y, 0) if layer.relu else y
    return a[0]


class ReferenceModel:
    """The NumPy network behind the surface the cuDNN model shares (train_step, forward, ...).

    Holds a private copy of the parameters in `dtype` (np.float32 or np.float64); inputs are cast
    to it. get_params() always returns float32, the checkpoint's type.

    reduce_gradients: None, or a callable that changes the flat gradient vector in place between
    the backward pass and SGD (data-parallel training: distributed.World.average_gradients).
    """

    name = "reference"
    reduce_gradients = None

    def __init__(self, params: np.ndarray, *, dtype=np.float32):
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
        self.dtype = np.dtype(dtype)
        self.set_params(params)
        self._losses: dict[int, float] = {}  # slot -> loss, for train_step_async

    def set_params(self, flat: np.ndarray) -> None:
        self.flat = np.array(flat, dtype=self.dtype)  # a copy: (NUM_PARAMS,)
        views(self.flat)  # checks the shape

    def get_params(self) -> np.ndarray:
        return self.flat.astype(np.float32)  # a copy: (NUM_PARAMS,)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """y (N,1,H,W) of x (N,1,H,W)."""
        return forward(self.flat, x)[OUTPUT]

    def train_step(self, x: np.ndarray, target: np.ndarray, lr: float) -> float:
        """One SGD step on (x, target); returns the loss before the update, as PyTorch's loop."""
        return float(self.record_step(x, target, lr)["loss"])

    def train_step_async(self, x: np.ndarray, target: np.ndarray, lr: float, slot: int = 0) -> None:
        """train_step, keeping the loss in `slot` for read_losses (the cuDNN model's interface)."""
        self._losses[slot] = self.train_step(x, target, lr)

    def read_losses(self, count: int) -> np.ndarray:
        """The losses of slots 0..count-1."""
        return np.array([self._losses[slot] for slot in range(count)], dtype=np.float64)

    def evaluate(self, x: np.ndarray, target: np.ndarray) -> float:
        """The loss of the current parameters on (x, target), without a step."""
        x = np.asarray(x, dtype=self.dtype)
        return float(mse_loss(forward(self.flat, x)[OUTPUT], np.asarray(target, dtype=self.dtype))[0])

    def record_step(self, x: np.ndarray, target: np.ndarray, lr: float) -> dict[str, np.ndarray]:
        """One SGD step that returns every intermediate, in the model's dtype, by name:

        "x", "target"                        the inputs (N,1,H,W)
        "params"                             the flat parameters before the step (NUM_PARAMS,)
        "conv1" "relu1" "conv2" "relu2" "conv3"   activations; "conv3" is y
        "loss"                               0-d, mean((y - target)^2)
        "dconv3" "drelu2" "dconv2" "drelu1" "dconv1"   activation gradients
        "dconv1.weight" "dconv1.bias" ... "dconv3.bias"   parameter gradients (PyTorch shapes)
        "dparams"                            the same gradients as one flat vector (NUM_PARAMS,),
                                             after reduce_gradients where one is set
        "lr"                                 0-d, the learning rate
        "params.updated"                     the flat parameters after flat - lr * dparams
        """
        x = np.asarray(x, dtype=self.dtype)
        target = np.asarray(target, dtype=self.dtype)
        record = {"x": x, "target": target, "params": self.flat.copy()}
        acts = forward(self.flat, x)
        loss, dy = mse_loss(acts[OUTPUT], target)
        dflat, dacts = backward(self.flat, x, acts, dy)
        if self.reduce_gradients is not None:
            self.reduce_gradients(dflat)
        sgd_update(self.flat, dflat, lr)
        record.update(acts)
        record["loss"] = np.asarray(loss, dtype=self.dtype)
        record.update(dacts)
        record.update({f"d{name}": g for name, g in views(dflat).items()})
        record["dparams"] = dflat
        record["lr"] = np.asarray(lr, dtype=self.dtype)
        record["params.updated"] = self.flat.copy()
        return record

    def close(self) -> None:
        """Nothing to release (the cuDNN model frees its handles and buffers here)."""
