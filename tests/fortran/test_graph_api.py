"""fortran/denoise_graph_api.f90 against layers/graphs.py: the same tensor descriptors, read back.

graph_descriptors.f90 builds every graph of the graph API step with the real cuDNN (tensor,
convolution, pointwise, reduction and operation descriptors; the operation graph needs a handle,
so a GPU) and prints each tensor as cuDNN reports it; here graphs.py builds the same graphs, its
tensors recorded as they are made and read back with BackendDescriptor.get.
"""

import shutil
from pathlib import Path

import numpy as np
import pytest
from test_fortran import HERE, build, compile_program, run  # noqa: F401 (build: a fixture)

from cudnn_denoise import params
from cudnn_denoise.bindings import CudnnError, cublas, cudnn, load_cudart
from cudnn_denoise.layers import graphs
from cudnn_denoise.layers.precision import layer_types
from cudnn_denoise.params import LAYERS
from cudnn_denoise.port import engine_table

N, H, W = 2, 8, 6
CONV1, CONV2, CONV3 = LAYERS


def bf16(spec):
    """--precision bf16's data types of one layer's graphs."""
    return layer_types("bf16", spec, spec is CONV1)


def python_graphs():
    """label -> list of (uid, data type, alignment, virtual, dims, strides) in order of creation."""
    made = []
    original = graphs.tensor

    def recording(uid, dims, *, virtual=False, dtype=graphs.FLOAT):
        t = original(uid, dims, virtual=virtual, dtype=dtype)
        made.append(t)
        return t

    builders = {
        "conv1.forward": lambda: graphs.forward_graph(CONV1, N, H, W),
        "conv2.forward": lambda: graphs.forward_graph(CONV2, N, H, W),
        "conv3.forward": lambda: graphs.forward_graph(CONV3, N, H, W),
        "conv1.wgrad": lambda: graphs.wgrad_graph(CONV1, N, H, W),
        "conv2.wgrad": lambda: graphs.wgrad_graph(CONV2, N, H, W),
        "conv3.wgrad": lambda: graphs.wgrad_graph(CONV3, N, H, W),
        "conv2.dgrad_bias": lambda: graphs.dgrad_graph(CONV2, N, H, W, True),
        "conv2.dgrad": lambda: graphs.dgrad_graph(CONV2, N, H, W, False),
        "conv3.dgrad_bias": lambda: graphs.dgrad_graph(CONV3, N, H, W, True),
        "conv3.dgrad": lambda: graphs.dgrad_graph(CONV3, N, H, W, False),
        "conv2.plain_dgrad": lambda: graphs.plain_dgrad_graph(CONV2, N, H, W),
        "conv3.plain_dgrad": lambda: graphs.plain_dgrad_graph(CONV3, N, H, W),
        "relu_backward_bias": lambda: graphs.relu_backward_graph(16, N, H, W, bias_gradient=True),
        "relu_backward": lambda: graphs.relu_backward_graph(16, N, H, W, bias_gradient=False),
        "conv1.forward.bf16": lambda: graphs.forward_graph(CONV1, N, H, W, bf16(CONV1).forward),
        "conv2.forward.bf16": lambda: graphs.forward_graph(CONV2, N, H, W, bf16(CONV2).forward),
        "conv3.forward.bf16": lambda: graphs.forward_graph(CONV3, N, H, W, bf16(CONV3).forward),
        "conv1.wgrad.bf16": lambda: graphs.wgrad_graph(CONV1, N, H, W, bf16(CONV1).wgrad),
        "conv3.wgrad.bf16": lambda: graphs.wgrad_graph(CONV3, N, H, W, bf16(CONV3).wgrad),
        "conv2.dgrad_bias.bf16": lambda: graphs.dgrad_graph(CONV2, N, H, W, True, bf16(CONV2).dgrad),
        "conv3.plain_dgrad.bf16": lambda: graphs.plain_dgrad_graph(CONV3, N, H, W, bf16(CONV3).dgrad),
        "relu_backward_bias.bf16": lambda: graphs.relu_backward_graph(16, N, H, W, bf16(CONV2).dgrad,
                                                                      bias_gradient=True),
        "relu_backward.bf16": lambda: graphs.relu_backward_graph(16, N, H, W, bf16(CONV2).dgrad,
                                                                 bias_gradient=False),
    }
    result = {}
    graphs.tensor = recording
    try:
        for label, builder in builders.items():
            made.clear()
            ops, roles = builder()
            rows = []
            for t in made:
                rows.append((t.get("CUDNN_ATTR_TENSOR_UNIQUE_ID", "CUDNN_TYPE_INT64")[0],
                             t.get("CUDNN_ATTR_TENSOR_DATA_TYPE", "CUDNN_TYPE_DATA_TYPE")[0],
                             graphs.ALIGNMENT,  # set, but cuDNN 9 does not read it back
                             int(bool(t.get("CUDNN_ATTR_TENSOR_IS_VIRTUAL", "CUDNN_TYPE_BOOLEAN")[0])),
                             tuple(t.get("CUDNN_ATTR_TENSOR_DIMENSIONS", "CUDNN_TYPE_INT64", 4)),
                             tuple(t.get("CUDNN_ATTR_TENSOR_STRIDES", "CUDNN_TYPE_INT64", 4))))
            result[label] = (rows, len(ops), len(roles))
    finally:
        graphs.tensor = original
    return result


def fortran_graphs(build, tmp_path):  # noqa: F811
    libs = []
    for path in (Path(cudnn.path), Path(cublas.path), Path(load_cudart().path)):
        libs += [f"-L{path.parent}", f"-l:{path.name}", f"-Wl,-rpath,{path.parent}"]
    source = tmp_path / "graph_descriptors.f90"
    shutil.copy(HERE / "graph_descriptors.f90", source)
    exe = compile_program(source, build, ["denoise_graph_api.o", "denoise_check.o", "cudnn_interfaces.o",
                                        "cudnn_denoise_checkpoint.o"], libs)
    result = run([exe])
    assert result.returncode == 0, result.stderr
    out = {}
    for line in result.stdout.splitlines():
        label, *fields = line.split()
        rows, _, _ = out.setdefault(label, ([], 0, 0))
        if fields[0] == "ops":
            out[label] = (rows, int(fields[1]), int(fields[2]))
        else:
            v = [int(f) for f in fields]
            rows.append((v[1], v[2], v[3], v[4], tuple(v[5:9]), tuple(v[9:13])))
    return out


def test_fortran_builds_the_graphs_that_python_builds(build, tmp_path):  # noqa: F811
    try:
        expected = python_graphs()
    except CudnnError as exc:  # pragma: no cover - a cuDNN without the backend API on this host
        pytest.skip(f"cuDNN's backend descriptors are not available here: {exc}")
    got = fortran_graphs(build, tmp_path)
    assert list(got) == list(expected)
    for label in expected:
        assert got[label] == expected[label], label


def test_fortran_reorders_filters_to_krsc_as_python_does(build, tmp_path):  # noqa: F811
    source = tmp_path / "krsc_order.f90"
    shutil.copy(HERE / "krsc_order.f90", source)
    libs = []
    for path in (Path(cudnn.path), Path(cublas.path), Path(load_cudart().path)):
        libs += [f"-L{path.parent}", f"-l:{path.name}", f"-Wl,-rpath,{path.parent}"]
    exe = compile_program(source, build, ["denoise_graph_api.o", "denoise_check.o", "cudnn_interfaces.o",
                                          "cudnn_denoise_checkpoint.o"], libs)
    result = run([exe])
    assert result.returncode == 0, result.stderr
    *values, roundtrip = result.stdout.splitlines()
    expected = params.to_krsc(np.arange(params.NUM_PARAMS, dtype=np.float32))
    assert [int(v) for v in values] == expected.astype(int).tolist()
    assert roundtrip == "roundtrip T"


def test_fortran_reads_the_engine_table_that_python_writes(build, tmp_path):  # noqa: F811
    rows = [engine_table.Row("conv1", "forward", 0, 12, "graph forward relu"),
            engine_table.Row("conv1", "backward_filter", 3, 7, "graph backward_filter"),
            engine_table.Row("conv2", "backward_data", 1, 40, "graph backward_data relu bias"),
            engine_table.Row("conv3", "backward_data", 5, 41, "graph backward_data relu")]
    path = engine_table.write(tmp_path / engine_table.FILE_NAME, rows, 4, 256, 256, "tf32", comment="H200")
    assert engine_table.read(path) == ({"batch": 4, "height": 256, "width": 256, "math": "tf32"}, rows)
    source = tmp_path / "engine_table_read.f90"
    shutil.copy(HERE / "engine_table_read.f90", source)
    libs = []
    for lib in (Path(cudnn.path), Path(cublas.path), Path(load_cudart().path)):
        libs += [f"-L{lib.parent}", f"-l:{lib.name}", f"-Wl,-rpath,{lib.parent}"]
    exe = compile_program(source, build, ["denoise_graph_api.o", "denoise_check.o", "cudnn_interfaces.o",
                                          "cudnn_denoise_checkpoint.o"], libs)
    result = run([exe, path])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == printed(rows)
    other = engine_table.write(tmp_path / "other.txt", rows, 4, 512, 512, "tf32")
    refused = run([exe, other])
    assert refused.returncode == 2 and "not this run's" in refused.stderr
    # --precision bf16: the split dgrad forms' rows, whose reduction is in relu_backward
    rows16 = [engine_table.Row("conv1", "forward", 0, 12, "graph forward relu bf16"),
              engine_table.Row("conv2", "backward_data", 2, 9, "graph backward_data bf16"),
              engine_table.Row("conv2", "relu_backward", 0, 3, "graph relu_backward bias bf16"),
              engine_table.Row("conv3", "backward_data", 1, 9, "graph backward_data bf16"),
              engine_table.Row("conv3", "relu_backward", 0, 4, "graph relu_backward bf16"),
              engine_table.Row("conv3", "backward_filter", 1, 8, "graph backward_filter bf16")]
    bf16 = engine_table.write(tmp_path / "bf16.txt", rows16, 4, 256, 256, "tf32")
    result = run([exe, bf16, "bf16"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == printed(rows16)
    for table, precision in ((bf16, "fp32"), (path, "bf16")):  # a table of the other precision
        refused = run([exe, table, precision])
        assert refused.returncode == 2 and "an engine table for --precision" in refused.stderr, refused.stderr


def printed(rows) -> list[str]:
    """engine_table_read's lines for these rows: bias T where the operation has the reduction."""
    return [f"{r.layer} {r.direction} {r.position} {r.engine} {'T' if ' bias' in r.operation else 'F'}"
            for r in rows]
