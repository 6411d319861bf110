"""PyTorch as the oracle: the seed's network built from our flat parameter vector, one step of it."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from cudnn_denoise.params import LAYERS, PARAMS, views


def torch_dtype(dtype) -> torch.dtype:
    """The torch dtype of a torch or NumPy dtype."""
    return dtype if isinstance(dtype, torch.dtype) else torch.from_numpy(np.zeros(0, dtype)).dtype


def torch_net(flat: np.ndarray, device: str = "cpu", dtype=torch.float64) -> nn.Sequential:
    """The seed network as nn.Sequential, its children named like our activations (conv1, relu1,
    ...), so that its state_dict names are ours; it holds the parameters of `flat`."""
    children = OrderedDict()
    for number, spec in enumerate(LAYERS, start=1):
        children[spec.name] = nn.Conv2d(spec.in_channels, spec.out_channels, spec.kernel, padding=spec.pad)
        if spec.relu:
            children[f"relu{number}"] = nn.ReLU()
    net = nn.Sequential(children).to(device=device, dtype=torch_dtype(dtype))
    net.load_state_dict({name: torch.from_numpy(np.array(v)) for name, v in views(flat).items()})
    return net


def torch_record(flat: np.ndarray, x: np.ndarray, target: np.ndarray, lr: float, dtype=torch.float64) -> dict:
    """What record_step returns (every key of reference.ReferenceModel.record_step), computed by
    PyTorch autograd and torch.optim.SGD in `dtype` on the CPU."""
    net = torch_net(flat, dtype=dtype)
    record = {"x": x, "target": target, "params": np.asarray(flat), "lr": np.float64(lr)}
    acts, a = {}, torch.from_numpy(np.asarray(x)).to(torch_dtype(dtype))
    for name, child in net.named_children():
        a = child(a)
        a.retain_grad()
        acts[name] = a
    loss = nn.functional.mse_loss(a, torch.from_numpy(np.asarray(target)).to(torch_dtype(dtype)))
    loss.backward()
    record.update({name: t.detach().numpy() for name, t in acts.items()})
    record.update({f"d{name}": t.grad.numpy() for name, t in acts.items()})
    record["loss"] = loss.detach().numpy()
    grads = {name: p.grad.numpy().copy() for name, p in net.named_parameters()}
    record.update({f"d{name}": g for name, g in grads.items()})
    record["dparams"] = np.concatenate([grads[p.name].ravel() for p in PARAMS])
    torch.optim.SGD(net.parameters(), lr=lr).step()
    state = net.state_dict()
    record["params.updated"] = np.concatenate([state[p.name].numpy().ravel() for p in PARAMS])
    return record


def torch_step(net: nn.Sequential, x: np.ndarray, target: np.ndarray, autocast: bool = False) -> dict[str, np.ndarray]:
    """Output, MSE loss and the flat gradient vector (state_dict order) for one batch; autocast:
    under torch.autocast BF16 (CUDA), PyTorch's mixed-precision recipe."""
    param = next(net.parameters())
    xt = torch.from_numpy(x).to(param.device, param.dtype)
    tt = torch.from_numpy(target).to(param.device, param.dtype)
    net.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        y = net(xt)
        loss = nn.functional.mse_loss(y, tt)
    loss.backward()
    grads = torch.cat([p.grad.reshape(-1) for p in net.parameters()])
    return {"y": y.detach().float().cpu().numpy(), "loss": np.array(loss.item()), "grads": grads.cpu().numpy()}


def rel_error(ours, ref) -> float:
    """||ours - ref|| / ||ref||, in float64."""
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))
