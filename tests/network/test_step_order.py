"""The model's step in the order port/calls.py writes it, on the CPU: DenoiseCNN's own _step runs
with recording stand-ins for its layers, and port/calls.py's step with its layer methods
recording, and the two lists of (operation, layer, buffers) must be one: the model's buffers are
network/buffers.py's names, as a trace joins them. The GPU test
(tests/cli/test_trace_gpu.py) then checks each operation's calls and arguments."""

import types

import pytest

from cudnn_denoise.layers import sgd
from cudnn_denoise.network.buffers import BUFFERS, trace_name
from cudnn_denoise.network.model import DenoiseCNN
from cudnn_denoise.port import calls

# a layer method of the model -> the _Step method of port/calls.py that writes its calls
OPERATIONS = {
    "conv.forward": "conv_forward",
    "conv.forward_bias_activation": "conv_forward_bias_relu",
    "conv.backward_filter": "conv_backward_filter",
    "conv.backward_bias": "conv_backward_bias",
    "conv.backward_data": "conv_backward_data",
    "relu.forward": "relu_forward",
    "relu.backward": "relu_backward",
    "mse.forward_backward": "loss",
    "sgd": "sgd",
}
BUFFER_NAMES = {"x"} | {b.name for b in BUFFERS}
TRACE_NAMES = {"x"} | {trace_name(b.name, keep_intermediates=False) for b in BUFFERS}
NO_BUFFERS = ("loss", "sgd")  # port/calls.py writes their buffers (y, dy; params, grads) itself


class Layer:
    """Stands in for a Conv2d, ReLU or MSELoss: records each call by its _Step name."""

    def __init__(self, log, kind, index=None):
        self.log, self.kind, self.index = log, kind, index
        self.spec = types.SimpleNamespace(name=f"conv{index}")  # the model names parameters by it

    def __getattr__(self, method):
        operation = OPERATIONS[f"{self.kind}.{method}"]
        return lambda *args: self.log.append((operation, self.index, buffers(args, operation)))


def buffers(args, operation) -> tuple:
    """The buffers among a call's arguments, by their trace names."""
    if operation in NO_BUFFERS:
        return ()
    return tuple(trace_name(a, keep_intermediates=False) for a in args if isinstance(a, str) and a in BUFFER_NAMES)


def model_order(fused: bool, monkeypatch) -> list:
    log = []
    model = object.__new__(DenoiseCNN)  # no __init__: nothing on a GPU
    model.graph_api, model.precision, model.fused = False, "fp32", fused
    for i in (1, 2, 3):
        setattr(model, f"conv{i}", Layer(log, "conv", i))
    model.relu, model.mse = Layer(log, "relu"), Layer(log, "mse")
    for b in BUFFERS:
        setattr(model, b.name, b.name)
    model.w = model.dw = {f"conv{i}.{p}": f"conv{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias")}
    model.relu.act_desc = None
    model.ctx = model.params = model.grads = None
    monkeypatch.setattr(sgd, "sgd_step", lambda *args: log.append(("sgd", None, ())))
    model._step("x", "target", 0.1, None)
    return log


def plan_buffers(args, operation) -> tuple:
    if operation in NO_BUFFERS:
        return ()
    return tuple(a for a in args if isinstance(a, str) and a in TRACE_NAMES)


def plan_order(fused: bool, monkeypatch) -> list:
    log = []
    for method in ("conv_forward", "conv_forward_bias_relu", "conv_backward_filter", "conv_backward_bias",
                   "conv_backward_data"):
        monkeypatch.setattr(calls._Step, method, lambda self, i, *a, m=method: log.append((m, i, plan_buffers(a, m))))
    for method in ("relu_forward", "relu_backward", "loss", "sgd"):
        monkeypatch.setattr(calls._Step, method, lambda self, *a, m=method: log.append((m, None, plan_buffers(a, m))))
    calls.step(calls.Settings(fused=fused), 4, 8, 8, 0.1)
    return log


@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
def test_the_model_runs_its_step_in_the_order_the_port_writes(fused, monkeypatch):
    model = model_order(fused, monkeypatch)
    assert len(model) == (15 if fused else 17)
    assert model == plan_order(fused, monkeypatch)
