"""The call trace on the CPU: the reference backend's trace (stable, the order docs/fortran.md gives,
the plan's lines), the plan against the headers and the doc, and the cuDNN backend's rendering of
real calls: descriptors made and read back by the real library, device addresses named by hand.

tests/cli/test_trace_gpu.py checks the cuDNN backend's real calls against the plan.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from cudnn_denoise import dump, plan, train
from cudnn_denoise.bindings import cublas, cudnn, ffi, library
from cudnn_denoise.bindings.cdata import ONE, ZERO, host_float
from cudnn_denoise.bindings.descriptors import (
    ConvolutionDescriptor,
    FilterDescriptor,
    TensorDescriptor,
)
from cudnn_denoise.port import calls, declarations, trace

CPU = ("--backend", "reference")
DOC = Path(__file__).resolve().parents[2] / "docs" / "fortran.md"


def documented_step() -> tuple[str, list[str]]:
    """(the command in the comment above it, the lines) of docs/fortran.md's step listing."""
    match = re.search(r"<!-- (python -m cudnn_denoise\.plan[^>]*) -->\n```\n(.*?)```", DOC.read_text(), re.S)
    assert match, "docs/fortran.md has no `<!-- python -m cudnn_denoise.plan ... -->` listing"
    return match.group(1), match.group(2).splitlines()


def functions(lines) -> list[str]:
    return [line.split(" ", 1)[0] for line in lines]


def train_trace(cli, data, out, *args) -> str:
    result = cli(train.main, "--data", data.noisy.parent, "--out", out / "run", "--trace", out / "calls.trace",
                 *CPU, "--no-shuffle", "--batch-size", 4, *args)
    assert result.code == 0, result.err
    return (out / "calls.trace").read_text()


# ---- the plan, the doc and the headers ----


def test_the_documented_step_is_what_the_plan_prints(capsys):
    command, lines = documented_step()
    assert plan.main(shlex.split(command)[3:]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert lines == printed, f"docs/fortran.md's step listing is stale: paste the output of `{command}`"


@pytest.mark.parametrize("flag, value, rule", [
    ("--batch-size", "0", "must be an integer from 1 to 2147483647, not '0'"),  # was ZeroDivisionError
    ("--patch-size", "99999999999", "must be an integer from 1 to 2147483647, not '99999999999'"),
    ("--lr", "nan", "must be a finite number > 0, not 'nan'"),  # was printed as alpha=nan
])
def test_plan_refuses_bad_numbers_in_one_line(cli, flag, value, rule):
    result = cli(plan.main, flag, value)
    assert result.code == 2 and result.out == ""
    see = f"(see {plan.cli.prog('plan')} --help)"
    assert result.one_line_error() == f"error: argument {flag}: {rule} {see}"


@pytest.mark.parametrize("batch, size", [
    (2147483647, 2147483647),
    (1, 11586),  # 16 x 11586^2 = 2147766336: past a C int
])
def test_plan_refuses_shapes_whose_element_counts_overflow_a_c_int(cli, batch, size):
    result = cli(plan.main, "--batch-size", batch, "--patch-size", size)
    assert result.code == 2 and result.out == ""
    line = result.one_line_error()
    assert f"batch {batch} x 16 channels x {size} x {size} = " in line and "over a C int" in line


def test_plan_accepts_the_largest_shape_that_fits_a_c_int(cli):
    result = cli(plan.main, "--batch-size", 1, "--patch-size", 11585)  # 16 x 11585^2 = 2147395600
    assert result.code == 0, result.err


@pytest.mark.parametrize("settings", [calls.Settings(), calls.Settings(fused=True, graph=True, math="fp32"),
                                      calls.Settings(keep_intermediates=True)], ids=["plain", "fused-graph", "keep"])
def test_plan_calls_name_the_headers_arguments_and_enums(settings):
    declared = {f.name: [a.name for a in f.args] for f in declarations.read_declarations().functions}
    planned = calls.step(settings, 3, 5, 7, 0.01) + calls.evaluate(settings, 3, 5, 7)
    for call in planned:
        assert [name for name, _ in call.args] == declared[call.function], call.function
        for constant in re.findall(r"\bCU(?:DNN|BLAS)_[A-Z0-9_]+", call.line()):
            assert hasattr((cudnn if constant.startswith("CUDNN") else cublas).lib, constant), constant


def test_plan_variants():
    plain = functions(c.line() for c in calls.step(calls.Settings(), 4, 8, 8, 0.1))
    assert len(plain) == 28 and plain.count("cublasSgemv_v2") == 6
    assert "cudnnConvolutionBackwardBias" not in plain
    fused = functions(c.line() for c in calls.step(calls.Settings(fused=True), 4, 8, 8, 0.1))
    assert fused[:4] == ["cudnnConvolutionBiasActivationForward"] * 2 + ["cudnnConvolutionForward", "cudnnAddTensor"]
    assert fused[4:] == plain[8:]
    graph = calls.step(calls.Settings(graph=True), 4, 8, 8, 0.1, slot=7)
    assert "x=x_static" in graph[0].line() and "result=loss_sums[1024]" in graph[11].line()
    evaluate = functions(c.line() for c in calls.evaluate(calls.Settings(graph=True), 4, 8, 8))
    assert evaluate == plain[:14]


def test_matches_takes_chosen_values_as_wildcards():
    call = calls.step(calls.Settings(), 4, 8, 8, 0.1)[0]
    real = (call.line().replace("convDesc=conv1.conv_desc.forward{pad=1,1 stride=1,1 dilation=1,1 "
                                "CUDNN_CROSS_CORRELATION CUDNN_DATA_FLOAT (chosen)}",
                                "convDesc=conv1.conv_desc.forward{pad=1,1 stride=1,1 dilation=1,1 "
                                "CUDNN_CROSS_CORRELATION CUDNN_DATA_FLOAT CUDNN_DEFAULT_MATH}")
            .replace("algo=(chosen)", "algo=CUDNN_CONVOLUTION_FWD_ALGO_GEMM")
            .replace("workSpace=workspace workSpaceSizeInBytes=(chosen)", "workSpace=NULL workSpaceSizeInBytes=0"))
    assert "(chosen)" not in real and call.matches(real)
    assert not call.matches(real.replace("x=x ", "x=y "))
    assert not call.matches(real.replace("beta=0.0", "beta=1.0"))


# ---- the reference backend's trace ----


def test_reference_trace_is_stable_and_lists_the_documented_calls(cli, data32, tmp_path):
    texts = [train_trace(cli, data32, tmp_path / str(run), "--max-steps", 2, "--lr", 0.02) for run in (1, 2)]
    assert texts[0] == texts[1]
    sections = trace.read_sections(texts[0])
    assert [title for title, _ in sections] == ["setup", "step 1", "step 2"]
    assert sections[0][1] == []  # the reference makes no calls
    documented = functions(documented_step()[1])
    for slot, (title, lines) in enumerate(sections[1:]):
        assert functions(lines) == documented, title
        assert lines == [c.line() for c in calls.step(calls.Settings(), 4, 32, 32, 0.02, slot=slot)], title
    header = texts[0].splitlines()[:3]
    assert header[0] == trace.FORMAT and header[1].startswith("# backend reference")
    assert header[2] == "# settings: fused=no graph=no keep_intermediates=no math=tf32"


def test_reference_trace_of_a_graph_run_captures_once_and_evaluates(cli, data32, make_data, tmp_path):
    val = make_data(4, size=32, name="val")
    text = train_trace(cli, data32, tmp_path, "--max-steps", 2, "--graph", "--fused", "--val-data",
                       val.noisy.parent, "--log-every", 2)
    sections = trace.read_sections(text)
    assert [title for title, _ in sections] == ["setup", "step 1", "step 2", "evaluate", "evaluate"]
    settings = calls.Settings(fused=True, graph=True)
    assert sections[1][1] == [c.line() for c in calls.step(settings, 4, 32, 32, 0.001)]
    assert sections[2][1] == []
    assert "# step 1 was captured into a CUDA graph" in text
    assert "# step 2 made no calls: it replayed the CUDA graph captured earlier" in text
    assert sections[3][1] == [c.line() for c in calls.evaluate(settings, 4, 32, 32)]


def test_dump_trace_lists_the_step_with_separate_relu_buffers(cli, data32, tmp_path):
    ckpt = tmp_path / "run"
    assert cli(train.main, "--data", data32.noisy.parent, "--out", ckpt, *CPU, "--max-steps", 0).code == 0
    result = cli(dump.main, "--checkpoint", ckpt / "checkpoint", "--data", data32.noisy.parent, "--index", 2,
                 "--batch-size", 3, "--lr", 0.5, "--out", tmp_path / "dump", "--trace", tmp_path / "dump.trace",
                 *CPU, "--math", "fp32")
    assert result.code == 0, result.err
    sections = trace.read_sections((tmp_path / "dump.trace").read_text())
    assert [title for title, _ in sections] == ["setup", "step 1"]
    settings = calls.Settings(keep_intermediates=True, math="fp32")
    assert sections[1][1] == [c.line() for c in calls.step(settings, 3, 32, 32, 0.5)]
    assert "y=h1" in sections[1][1][2]  # relu1 writes its own buffer


@pytest.mark.parametrize("main", [train.main, dump.main], ids=["train", "dump"])
def test_help_names_trace(main, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert re.search(r"--trace FILE\s+write every cuDNN and cuBLAS call", capsys.readouterr().out)


# ---- the cuDNN backend's rendering, on the CPU ----


def conv1_descriptors(n, h, w, math):
    """conv1's descriptors as layers/conv.py sets them, made by the real library."""
    nchw, f32 = cudnn.CUDNN_TENSOR_NCHW, cudnn.CUDNN_DATA_FLOAT
    conv = ConvolutionDescriptor().set_2d(1, 1, 1, 1, 1, 1, cudnn.CUDNN_CROSS_CORRELATION, f32)
    return {"conv1.x_desc": TensorDescriptor().set_4d(nchw, f32, n, 1, h, w),
            "conv1.y_desc": TensorDescriptor().set_4d(nchw, f32, n, 16, h, w),
            "conv1.w_desc": FilterDescriptor().set_4d(f32, nchw, 16, 1, 3, 3),
            "conv1.conv_desc.forward": conv.set_math_type(math)}


def test_real_calls_are_written_as_the_plan_writes_them():
    n, h, w = 2, 4, 5
    descriptors = conv1_descriptors(n, h, w, cudnn.CUDNN_FMA_MATH)
    handles = {0x10: "cudnn_handle", 0x20: "cublas_handle"}
    objects = {trace._address(d.ptr): (name, d) for name, d in descriptors.items()}
    objects.update({address: (name, None) for address, name in handles.items()})
    # device addresses as a model would lay them out: params holds conv1.weight at offset 0
    buffers = {(0x1000, 4 * n * h * w): (4, {"x"}), (0x2000, 4 * 2625): (4, {"params"}),
               (0x2000, 4 * 144): (4, {"conv1.weight"}), (0x9000, 4 * n * 16 * h * w): (4, {"a1", "h1"}),
               (0x20000, 4 * n * 16): (4, {"conv1.db_per_sample"}), (0x30000, 4 * 20): (4, {"ones"}),
               (0x40000, 4 * 16): (4, {"dconv1.bias"}), (0x50000, 4 * 1025): (4, {"loss_sums"}),
               (0x60000, 4 * n * h * w): (4, {"dy"}), (0x70000, 4096): (1, {"workspace"})}
    d, address = descriptors, lambda a: ffi.cast("void *", a)
    records = [
        trace._Record("cudnnConvolutionForward", (
            ffi.cast("cudnnHandle_t", 0x10), ONE, d["conv1.x_desc"].ptr, address(0x1000), d["conv1.w_desc"].ptr,
            address(0x2000), d["conv1.conv_desc.forward"].ptr, cudnn.CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
            address(0x70000), 512, ZERO, d["conv1.y_desc"].ptr, address(0x9000)), False),
        trace._Record("cublasSdot_v2", (ffi.cast("cublasHandle_t", 0x20), n * h * w, address(0x60000), 1,
                                        address(0x60000), 1, address(0x50000 + 4 * 3)), True),
        trace._Record("cublasSgemv_v2", (ffi.cast("cublasHandle_t", 0x20), cublas.CUBLAS_OP_N, 16, n, ONE,
                                         address(0x20000), 16, address(0x30000), 1, ZERO, address(0x40000),
                                         1), False),
        trace._Record("cublasSaxpy_v2", (ffi.cast("cublasHandle_t", 0x20), 2625, host_float(-0.25),
                                         address(0x90000), 1, address(0x2000), 1), False),
    ]
    lines = [trace.render(r, "compute", buffers, objects) for r in records]
    settings = calls.Settings(math="fp32")
    expected = calls.step(settings, n, h, w, 0.25, slot=3)
    assert expected[0].matches(lines[0]), lines[0]
    assert "algo=CUDNN_CONVOLUTION_FWD_ALGO_GEMM workSpace=workspace workSpaceSizeInBytes=512" in lines[0]
    assert lines[1] == expected[11].line()  # the dot product's result in device memory: loss_sums[3]
    assert lines[2] == expected[-2].line()  # conv1's db: the first N of the 20 ones
    # the update's x is no buffer of this table: named by address, not guessed
    assert lines[3] == expected[-1].line().replace("x=grads", "x=unnamed@0x90000")


def test_buffer_names():
    buffers = {(0x100, 40): (4, {"h1", "a1"}), (0x100, 8): (4, {"view"}), (0x400, 16): (1, {"bytes"})}
    assert trace.buffer_name(buffers, 0x100, 40) == "a1/h1"
    assert trace.buffer_name(buffers, 0x100, 8) == "view"
    assert trace.buffer_name(buffers, 0x104, 4) == "view[1]"
    assert trace.buffer_name(buffers, 0x108, 12) == "a1/h1[2:5]"
    assert trace.buffer_name(buffers, 0x404, None) == "bytes[4]"
    assert trace.buffer_name(buffers, 0, 4) == "NULL"
    assert trace.buffer_name(buffers, 0x900, 4) == "unnamed@0x900"


def test_hooked_setup_calls_name_a_temporary_descriptor(tmp_path):
    path = tmp_path / "calls.trace"
    with trace.open_trace(path, "cudnn", calls.Settings()) as tracer:
        with tracer.setup("descriptors"):
            with TensorDescriptor() as desc:
                desc.set_4d(cudnn.CUDNN_TENSOR_NCHW, cudnn.CUDNN_DATA_FLOAT, 1, 1, 1, 8)
        kept = FilterDescriptor().set_4d(cudnn.CUDNN_DATA_FLOAT, cudnn.CUDNN_TENSOR_NCHW, 16, 1, 3, 3)
    kept.close()  # untraced: the tracer is closed
    assert library.set_hook(None) is None  # close() removed the hook
    sections = trace.read_sections(path.read_text())
    assert sections[0] == ("setup", [
        "cudnnCreateTensorDescriptor tensorDesc=(out)",
        "cudnnSetTensor4dDescriptor tensorDesc=temporary format=CUDNN_TENSOR_NCHW dataType=CUDNN_DATA_FLOAT "
        "n=1 c=1 h=1 w=8",
        "cudnnDestroyTensorDescriptor tensorDesc=temporary"])
    assert sections[1][0] == "other calls"
    assert functions(sections[1][1]) == ["cudnnCreateFilterDescriptor", "cudnnSetFilter4dDescriptor"]
    assert sections[1][1][1].startswith("cudnnSetFilter4dDescriptor filterDesc=unnamed@0x")


def test_tracer_refuses_to_share_the_hook(tmp_path):
    previous = library.set_hook(lambda name, args: None)
    try:
        with pytest.raises(RuntimeError, match="another call hook"):
            trace.open_trace(tmp_path / "calls.trace", "cudnn", calls.Settings())
    finally:
        library.set_hook(previous)


def test_the_committed_gpu_trace_follows_the_plan():
    """docs/examples/trace_train_h100.txt: a real cudnn run on the H100 (2 steps of 4 x 1 x 64 x 64,
    --log-every 1, so every step's loss goes to slot 0). If the plan changes, make it again there:
    python -m cudnn_denoise.train --data D --max-steps 2 --log-every 1 --backend cudnn --trace F."""
    from pathlib import Path

    from cudnn_denoise.port import calls, trace

    text = (Path(__file__).resolve().parents[2] / "docs" / "examples" / "trace_train_h100.txt").read_text()
    sections = trace.read_sections(text)
    steps = [lines for title, lines in sections if title.startswith("step")]
    assert len(steps) == 2
    planned = calls.step(calls.Settings(), 4, 64, 64, 0.001, slot=0)
    for lines in steps:
        assert len(lines) == len(planned)
        mismatched = [(c.line(), line) for c, line in zip(planned, lines) if not c.matches(line)]
        assert not mismatched, mismatched[:1]
