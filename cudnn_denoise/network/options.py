"""Which options of the step go together: the rules, written once and checked before any GPU work.

DenoiseCNN checks its keyword arguments with them, train and dump their flags, and port/calls.py
its settings; each names the options its own way (`spelling`), so a message says `--graph-api`
to a user and `graph_api` to a caller of the library.
"""

from __future__ import annotations

from ..layers.precision import PRECISIONS

MATH_MODES = ("tf32", "fp32")

# (broken when, message): {name} is replaced by the option's spelling.
RULES = (
    (lambda o: o["math"] not in MATH_MODES, f"{{math}} must be one of {', '.join(MATH_MODES)}"),
    (lambda o: o["precision"] not in PRECISIONS, f"{{precision}} must be one of {', '.join(PRECISIONS)}"),
    (lambda o: o["keep_intermediates"] and (o["fused"] or o["graph_api"]),
     "{keep_intermediates} needs the unfused forward: {fused} and {graph_api} keep no pre-activation"),
    (lambda o: o["fused"] and o["graph_api"],
     "{fused} (cudnnConvolutionBiasActivationForward) and {graph_api} (fused graph-API engines) "
     "are two ways to fuse the forward: choose one"),
    (lambda o: o["precision"] == "bf16" and not o["graph_api"],
     "{precision} bf16 runs on the graph-API path only: it needs {graph_api}"),
    (lambda o: o["precision"] == "bf16" and o["math"] == "fp32",
     "{precision} bf16 rounds activations to BF16 on tensor cores: it cannot be strict FP32 ({math} fp32)"),
)

# The flags of the cudnn backend alone, with their defaults. The programs parse them with default
# None, so that one given on the command line is told from its default (backends.gpu_flags_given):
# the reference backend refuses those given rather than ignore them.
GPU_ONLY = {"math": "tf32", "deterministic": False, "fused": False, "graph": False, "graph_api": False,
            "profile": 0, "device": None}

DEFAULTS = {"math": "tf32", "precision": "fp32", "fused": False, "graph_api": False,
            "keep_intermediates": False}
KEYWORDS = {name: name for name in DEFAULTS}  # the library's spelling
FLAGS = {name: "--" + name.replace("_", "-") for name in DEFAULTS}  # the programs'


def check(spelling: dict[str, str] = KEYWORDS, **options) -> None:
    """ValueError with the first rule that `options` break (missing ones take DEFAULTS)."""
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"not options of the step: {sorted(unknown)}")
    values = {**DEFAULTS, **options}
    for broken, message in RULES:
        if broken(values):
            raise ValueError(message.format(**spelling))
