"""PyTorch as the oracle: the seed's network built from our flat parameter vector, one step of it."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cudnn_denoise.params import LAYERS, PARAMS, views


def torch_net(flat: np.ndarray, device: str = "cpu", dtype=torch.float64) -> nn.Sequential:
    """nn.Sequential(Conv, ReLU, Conv, ReLU, Conv) holding the parameters of `flat`."""
    modules = []
    for spec in LAYERS:
        modules.append(nn.Conv2d(spec.in_channels, spec.out_channels, spec.kernel, padding=spec.pad))
        if spec.relu:
            modules.append(nn.ReLU())
    net = nn.Sequential(*modules).to(device=device, dtype=dtype)
    # Sequential names conv1..3 as "0", "2", "4": state_dict order is ours.
    state = dict(zip((p.name for p in PARAMS), net.state_dict()))
    with torch.no_grad():
        for ours, theirs in state.items():
            net.state_dict()[theirs].copy_(torch.from_numpy(np.array(views(flat)[ours])))
    return net


def torch_step(net: nn.Sequential, x: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    """Output, MSE loss and the flat gradient vector (state_dict order) for one batch."""
    param = next(net.parameters())
    xt = torch.from_numpy(x).to(param.device, param.dtype)
    tt = torch.from_numpy(target).to(param.device, param.dtype)
    net.zero_grad(set_to_none=True)
    y = net(xt)
    loss = nn.functional.mse_loss(y, tt)
    loss.backward()
    grads = torch.cat([p.grad.reshape(-1) for p in net.parameters()])
    return {"y": y.detach().cpu().numpy(), "loss": np.array(loss.item()), "grads": grads.cpu().numpy()}


def rel_error(ours, ref) -> float:
    """||ours - ref|| / ||ref||, in float64."""
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))
