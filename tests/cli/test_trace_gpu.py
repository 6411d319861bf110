"""The cuDNN backend's real calls against the plan (cudnn_denoise.plan, docs/fortran.md): train and
dump with --trace, every step's and evaluation's calls in the plan's order with the plan's arguments,
CHOSEN standing for the algorithm, its workspace and (TF32) math type."""

from __future__ import annotations

import pytest

from cudnn_denoise import dump, train
from cudnn_denoise.port import calls, trace

pytestmark = pytest.mark.gpu


def assert_follows(lines: list[str], planned: list[calls.Call], what: str) -> None:
    assert [line.split(" ", 1)[0] for line in lines] == [call.function for call in planned], what
    different = [(call.line(), line) for call, line in zip(planned, lines) if not call.matches(line)]
    assert not different, f"{what}: (plan, trace) {different[:3]}"


@pytest.mark.parametrize("options", [(), ("--fused",), ("--graph",), ("--math", "fp32")],
                         ids=["plain", "fused", "graph", "fp32"])
def test_train_trace_follows_the_plan(cli, make_data, tmp_path, options):
    data = make_data(8, size=32)  # two full batches of 4
    val = make_data(4, size=32, name="val")
    path = tmp_path / "calls.trace"
    result = cli(train.main, "--data", data.noisy.parent, "--out", tmp_path / "run", "--backend", "cudnn",
                 "--no-shuffle", "--lr", 0.01, "--log-every", 2, "--val-data", val.noisy.parent,
                 "--trace", path, *options)
    assert result.code == 0, result.err
    settings = calls.Settings(fused="--fused" in options, graph="--graph" in options,
                             math="fp32" if "fp32" in options else "tf32")
    sections = trace.read_sections(path.read_text())
    titles = [title for title, _ in sections]
    assert titles[:3] == ["setup", "step 1", "step 2"] and set(titles[3:]) <= {"evaluate", "other calls"}
    assert sections[0][1], "the setup made no calls"
    assert_follows(sections[1][1], calls.step(settings, 4, 32, 32, 0.01, slot=0), "step 1")
    if settings.graph:
        assert sections[2][1] == []  # a replay makes no calls
    else:
        assert_follows(sections[2][1], calls.step(settings, 4, 32, 32, 0.01, slot=1), "step 2")
    evaluations = [lines for title, lines in sections if title == "evaluate"]
    assert evaluations
    for lines in evaluations:
        assert_follows(lines, calls.evaluate(settings, 4, 32, 32), "evaluate")
    named = [line for title, lines in sections if title != "setup" for line in lines]
    assert not [line for line in named if "unnamed@" in line], "a call on memory the model does not name"


def test_dump_trace_follows_the_plan(cli, make_data, tmp_path):
    data = make_data(6, size=32)
    ckpt = tmp_path / "run"
    assert cli(train.main, "--data", data.noisy.parent, "--out", ckpt, "--backend", "reference",
               "--max-steps", 0).code == 0
    path = tmp_path / "dump.trace"
    result = cli(dump.main, "--checkpoint", ckpt / "checkpoint", "--data", data.noisy.parent, "--index", 1,
                 "--batch-size", 3, "--lr", 0.1, "--out", tmp_path / "dump", "--backend", "cudnn",
                 "--math", "fp32", "--trace", path)
    assert result.code == 0, result.err
    sections = trace.read_sections(path.read_text())
    assert [title for title, _ in sections][:2] == ["setup", "step 1"]
    assert_follows(sections[1][1], calls.step(calls.Settings(keep_intermediates=True, math="fp32"), 3, 32, 32, 0.1),
                   "dump step")
