"""The step's option rules (network/options.py): each refuses its case, in the caller's words, and
DenoiseCNN checks them before it asks for a GPU, so a bad combination is named on any machine."""

import pytest

from cudnn_denoise.bindings.device import NoGpuError
from cudnn_denoise.network import options
from cudnn_denoise.network.model import DenoiseCNN
from cudnn_denoise.params import init_params

BROKEN = [
    ({"math": "fp64"}, "math must be one of tf32, fp32"),
    ({"precision": "fp16"}, "precision must be one of fp32, bf16"),
    ({"keep_intermediates": True, "fused": True}, "keep_intermediates needs the unfused forward"),
    ({"keep_intermediates": True, "graph_api": True}, "keep_intermediates needs the unfused forward"),
    ({"fused": True, "graph_api": True}, "are two ways to fuse the forward"),
    ({"precision": "bf16"}, "precision bf16 runs on the graph-API path only: it needs graph_api"),
    ({"precision": "bf16", "graph_api": True, "math": "fp32"}, "cannot be strict FP32 (math fp32)"),
]


@pytest.mark.parametrize("given, message", BROKEN)
def test_model_refuses_before_asking_for_a_gpu(given, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        DenoiseCNN(init_params(0), batch=1, height=8, width=8, **given)


@pytest.mark.parametrize("given", [{}, {"fused": True}, {"graph_api": True, "precision": "bf16"},
                                   {"keep_intermediates": True, "math": "fp32"}])
def test_allowed_combinations_pass_the_rules(given):
    options.check(**given)
    try:
        DenoiseCNN(init_params(0), batch=1, height=8, width=8, **given)
    except NoGpuError:
        pass  # past the rules; this machine has no GPU


def test_programs_see_their_flags():
    with pytest.raises(ValueError, match="--fused .* and --graph-api .* choose one"):
        options.check(options.FLAGS, fused=True, graph_api=True)
    with pytest.raises(TypeError, match="batch"):
        options.check(batch=4)
