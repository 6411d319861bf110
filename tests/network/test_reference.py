"""cudnn_denoise.network.reference against PyTorch on the CPU: activations, loss, every gradient, SGD."""

import numpy as np
import pytest

from cudnn_denoise.network import reference
from cudnn_denoise.params import LAYERS, PARAM_BY_NAME, PARAMS, init_params, views

torch = pytest.importorskip("torch")

from torch_oracle import torch_net, torch_record  # noqa: E402  (needs torch)

# Bound on ||ours - oracle|| / ||oracle|| per tensor, from the arithmetic both sides use.
# float32: ~170 unit roundoffs (u = 2^-24 = 6e-8): the two libraries sum up to ~10^6 terms in
# different orders (measured worst on small images: 9e-7). float64: far above float64 rounding
# (measured ~1e-15) but far below float32's, so a float32 step hiding in the float64 path fails.
RTOL = {np.float32: 1e-5, np.float64: 1e-10}

LR = 0.01


def relative_errors(ours, oracle):
    """||ours[k] - oracle[k]|| / ||oracle[k]|| (the plain norm where the oracle is all zeros)."""
    errors = {}
    for key, want in oracle.items():
        got = np.asarray(ours[key], dtype=np.float64)
        want = np.asarray(want, dtype=np.float64)
        assert got.shape == want.shape, f"{key}: shape {got.shape}, oracle {want.shape}"
        scale = np.linalg.norm(want) or 1.0
        errors[key] = np.linalg.norm(got - want) / scale
    return errors


def assert_within(errors, rtol):
    """Every relative error below rtol; the message lists every failing tensor, not the first."""
    failing = {key: f"{err:.2e}" for key, err in errors.items() if not err < rtol}
    assert not failing, f"relative error >= {rtol:g}: {failing}"


def random_batch(shape, seed):
    rng = np.random.default_rng(seed)
    return rng.random(shape), rng.random(shape)  # x, target in [0, 1) like the data


def check_parity(shape, dtype, *, flat=None, seed=0):
    """One training step of ReferenceModel vs PyTorch, same dtype: every tensor within RTOL."""
    flat = init_params(seed) if flat is None else flat
    x, target = random_batch(shape, seed)
    ours = reference.ReferenceModel(flat, dtype=dtype).record_step(x, target, LR)
    errors = relative_errors(ours, torch_record(flat, x, target, LR, dtype))
    assert_within(errors, RTOL[dtype])
    return ours


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1, 8, 8), (2, 1, 37, 53), (3, 1, 1, 5), (4, 1, 64, 64)])
def test_step_matches_pytorch(shape, dtype):
    check_parity(shape, dtype, seed=shape[0])


ACTIVATION_GRADIENTS = ("drelu1", "dconv1", "drelu2", "dconv2")


def relu_flips(ours, oracle) -> np.ndarray:
    """The oracle's ReLU inputs (conv1, conv2) at the pixels where ours has the other sign."""
    flipped = [np.asarray(oracle[k], np.float64)[(np.asarray(ours[k]) > 0) != (np.asarray(oracle[k]) > 0)]
               for k in ("conv1", "conv2")]
    return np.concatenate(flipped)


def test_full_size_image_matches_pytorch_float64():
    """1024 x 1024: PyTorch float64 is the oracle for both dtypes.

    PyTorch's own float32 CPU gradients are off by up to 1.4e-5 here (sums of 10^6 terms), so
    float32 PyTorch is no oracle at this size. Among 2 x 16 M ReLU inputs a few can lie closer to 0
    than float32 resolves (seen: one at 6e-9, with NumPy 2.4's BLAS); ours may round such an
    input to the other side, which is right in float32 but moves that pixel's activation
    gradient: by ~3e-4 of the tensor's norm for one flip (one element of dconv2, its 3 x 3 x 16
    neighbours in drelu1 and dconv1). So a flip is allowed only where |input| < 1e-6, and each adds
    1e-3 to the bound of the activation gradients; everything else stays within RTOL.
    """
    flat = init_params(1)
    x, target = random_batch((1, 1, 1024, 1024), seed=1)
    oracle = torch_record(flat, x, target, LR)
    for dtype in (np.float64, np.float32):
        ours = reference.ReferenceModel(flat, dtype=dtype).record_step(x, target, LR)
        flips = relu_flips(ours, oracle)
        assert np.all(np.abs(flips) < 1e-6), f"{dtype.__name__}: ReLU inputs flipped far from 0: {flips}"
        assert flips.size <= (0 if dtype is np.float64 else 4), f"{dtype.__name__}: {flips.size} ReLU flips"
        errors = relative_errors(ours, oracle)
        assert_within({k: e for k, e in errors.items() if k not in ACTIVATION_GRADIENTS}, RTOL[dtype])
        assert_within({k: errors[k] for k in ACTIVATION_GRADIENTS}, RTOL[dtype] + 1e-3 * flips.size)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_at_exactly_zero_matches_pytorch(dtype):
    """Zero filters and biases make conv1 channel 3 and conv2 channel 5 exactly 0 everywhere."""
    flat = init_params(0)
    p = views(flat)
    for name, channel in (("conv1", 3), ("conv2", 5)):
        p[f"{name}.weight"][channel] = 0
        p[f"{name}.bias"][channel] = 0
    ours = check_parity((2, 1, 16, 16), dtype, flat=flat)
    assert np.all(ours["conv1"][:, 3] == 0) and np.all(ours["conv2"][:, 5] == 0)
    # ReLU passes no gradient at 0, so nothing reaches the zeroed filters.
    for name, channel in (("conv1", 3), ("conv2", 5)):
        assert np.all(ours[f"d{name}.weight"][channel] == 0) and ours[f"d{name}.bias"][channel] == 0


def test_relu_backward_at_minus_one_zero_one():
    y = reference.relu_forward(np.array([-1.0, 0.0, 1.0]))
    dx = reference.relu_backward(y, np.array([5.0, 6.0, 7.0]))
    t = torch.tensor([-1.0, 0.0, 1.0], requires_grad=True)
    torch.relu(t).backward(torch.tensor([5.0, 6.0, 7.0]))
    np.testing.assert_array_equal(dx, [0.0, 0.0, 7.0])
    np.testing.assert_array_equal(dx, t.grad.numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_layer_matches_pytorch(dtype):
    """conv2d_forward / conv2d_backward alone, with channel counts the seed does not use."""
    rng = np.random.default_rng(7)
    x, w, b = (
        rng.standard_normal((2, 3, 9, 11)),
        rng.standard_normal((5, 3, 3, 3)),
        rng.standard_normal(5),
    )
    dy = rng.standard_normal((2, 5, 9, 11)).astype(dtype)
    x, w, b = x.astype(dtype), w.astype(dtype), b.astype(dtype)
    tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, padding=1)
    ty.backward(torch.from_numpy(dy))
    y = reference.conv2d_forward(x, w, b)
    dx, dw, db = reference.conv2d_backward(x, w, dy)
    ours = {"y": y, "dx": dx, "dw": dw, "db": db}
    oracle = {
        "y": ty.detach().numpy(),
        "dx": tx.grad.numpy(),
        "dw": tw.grad.numpy(),
        "db": tb.grad.numpy(),
    }
    assert all(a.dtype == dtype for a in ours.values())
    assert_within(relative_errors(ours, oracle), RTOL[dtype])


def test_loss_trajectory_matches_pytorch():
    """20 SGD steps in float32 at lr 0.05 on one batch: each loss within RTOL, and falling."""
    lr, steps = 0.05, 20
    flat = init_params(3)
    x, target = random_batch((4, 1, 24, 24), seed=3)
    ours = reference.ReferenceModel(flat, dtype=np.float32)
    model = torch_net(flat, dtype=np.float32)
    sgd = torch.optim.SGD(model.parameters(), lr=lr)
    tx, ttarget = (
        torch.from_numpy(x.astype(np.float32)),
        torch.from_numpy(target.astype(np.float32)),
    )
    ours_losses, torch_losses = [], []
    for _ in range(steps):
        ours_losses.append(ours.train_step(x, target, lr))
        sgd.zero_grad()
        loss = torch.nn.functional.mse_loss(model(tx), ttarget)
        loss.backward()
        sgd.step()
        torch_losses.append(loss.item())
    ours_losses, torch_losses = np.array(ours_losses), np.array(torch_losses)
    worst = np.max(np.abs(ours_losses - torch_losses) / torch_losses)
    assert worst < RTOL[np.float32], f"worst relative loss difference {worst:.2e}"
    assert np.all(np.diff(ours_losses) < 0) and ours_losses[-1] < 0.5 * ours_losses[0], ours_losses


def test_record_step_keys_and_model_surface():
    flat = init_params(0)
    x, target = random_batch((2, 1, 6, 7), seed=0)
    model = reference.ReferenceModel(flat, dtype=np.float64)
    record = model.record_step(x, target, LR)
    activations = ["conv1", "relu1", "conv2", "relu2", "conv3"]
    assert list(reference.ACTIVATIONS) == activations
    assert set(record) == (
        {"x", "target", "params", "loss", "dparams", "lr", "params.updated"}
        | set(activations)
        | {f"d{a}" for a in activations}
        | {f"d{p.name}" for p in PARAMS}
    )
    assert record["loss"].shape == () and record["lr"] == LR
    assert all(v.dtype == np.float64 for v in record.values())
    np.testing.assert_array_equal(record["params"], flat)  # float32 values, exact in float64
    np.testing.assert_array_equal(
        record["params.updated"], record["params"] - LR * record["dparams"]
    )
    np.testing.assert_array_equal(record["dconv2.weight"], views(record["dparams"])["conv2.weight"])
    # The model now holds the updated parameters; get_params hands them out as float32.
    assert model.get_params().dtype == np.float32
    np.testing.assert_array_equal(model.get_params(), record["params.updated"].astype(np.float32))
    # train_step returns the loss before its update; forward gives conv3.
    model.set_params(flat)
    np.testing.assert_array_equal(model.forward(x), record["conv3"])
    assert model.train_step(x, target, LR) == float(record["loss"])
    model.close()


def test_model_dtype_follows_argument():
    x, target = random_batch((1, 1, 5, 5), seed=0)
    for dtype in (np.float32, np.float64):
        model = reference.ReferenceModel(init_params(0), dtype=dtype)
        assert model.forward(x).dtype == dtype
        assert model.record_step(x, target, LR)["dconv1.weight"].dtype == dtype
    with pytest.raises(ValueError, match="float16"):
        reference.ReferenceModel(init_params(0), dtype=np.float16)


def test_init_params_within_pytorch_bounds():
    """Uniform in +-1/sqrt(fan_in) like nn.Conv2d's default init, and spread across that range."""
    flat = init_params(0)
    assert flat.dtype == np.float32
    for layer in LAYERS:
        conv = torch.nn.Conv2d(
            layer.in_channels, layer.out_channels, layer.kernel, padding=layer.pad
        )
        fan_in = conv.weight[0].numel()
        bound = 1.0 / np.sqrt(fan_in)
        for suffix in ("weight", "bias"):
            name = f"{layer.name}.{suffix}"
            ours, theirs = views(flat)[name], getattr(conv, suffix).detach().numpy()
            assert ours.shape == theirs.shape == PARAM_BY_NAME[name].shape
            assert np.abs(theirs).max() <= bound  # the bound is PyTorch's
            assert np.abs(ours).max() <= bound, name
            if ours.size >= 16:
                assert np.abs(ours).max() > 0.75 * bound and abs(ours.mean()) < 0.25 * bound, name
    assert not np.array_equal(init_params(0), init_params(1))
    np.testing.assert_array_equal(init_params(5), init_params(5))


def test_fixed_order_forward_agrees_with_the_blas_forward():
    from cudnn_denoise.params import init_params
    from cudnn_denoise.network.reference import ReferenceModel, forward_fixed_order

    x = np.random.default_rng(6).random((37, 53), dtype=np.float32)
    flat = init_params(6)
    fast = ReferenceModel(flat).forward(x[None, None])[0, 0]
    exact = forward_fixed_order(flat, x)
    assert exact.dtype == np.float32 and exact.shape == x.shape
    assert np.linalg.norm(exact - fast) / np.linalg.norm(fast) < 1e-6
