"""The NHWC path's operation graphs, built host-side with the real cuDNN (no GPU needed), and the
KRSC filter layout that path keeps on the device."""

import numpy as np
import pytest

from cudnn_denoise.layers import fusion, graphs
from cudnn_denoise.layers.precision import BFLOAT16, FLOAT, PRECISIONS, layer_types
from cudnn_denoise.params import LAYERS, PARAMS, from_krsc, init_params, to_krsc, views


def uids(roles):
    return {role: r.uid for role, r in roles.items()}


@pytest.mark.usefixtures("backend_api")
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("index", range(len(LAYERS)), ids=[s.name for s in LAYERS])
def test_every_operation_of_the_step_finalizes(index, precision):
    """Tensors, convolutions, pointwise and reduction operations finalize without a handle; what
    is left for the GPU is the graph, its heuristics and its plans."""
    spec = LAYERS[index]
    types = layer_types(precision, spec, first=index == 0)
    ops, roles = graphs.forward_graph(spec, 3, 37, 53, types.forward)
    assert uids(roles) == {"x": 1, "w": 2, "b": 3, "y": 4}
    assert len(ops) == (3 if spec.relu else 2)  # conv, bias add [, ReLU]
    ops, roles = graphs.wgrad_graph(spec, 3, 37, 53, types.wgrad)
    assert len(ops) == 1 and uids(roles) == {"x": 1, "dy": 2, "dw": 3}
    for bias in (True, False):
        ops, roles = graphs.dgrad_graph(spec, 3, 37, 53, bias, types.dgrad)
        assert len(ops) == (3 if bias else 2) and ("db" in roles) == bias
    ops, roles = graphs.plain_dgrad_graph(spec, 3, 37, 53, types.dgrad)
    assert len(ops) == 1 and uids(roles) == {"dy": 1, "w": 2, "dh": 3}
    ops, roles = graphs.relu_backward_graph(spec.in_channels, 3, 37, 53, types.dgrad)
    assert len(ops) == 2 and uids(roles) == {"dh": 1, "h": 2, "da": 3, "db": 4}
    assert roles["db"].dtype == FLOAT  # bias gradients stay FP32 in every precision
    ops, roles = graphs.relu_backward_graph(spec.in_channels, 3, 37, 53, types.dgrad, bias_gradient=False)
    assert len(ops) == 1 and uids(roles) == {"dh": 1, "h": 2, "da": 3}


def test_bf16_types_keep_parameters_loss_and_bias_gradients_fp32():
    conv1, conv2, conv3 = (layer_types("bf16", s, first=i == 0) for i, s in enumerate(LAYERS))
    assert conv1.forward == {"y": BFLOAT16}  # FLOAT input and filter, BF16 activation out
    assert "b" not in conv2.forward and conv2.forward["y"] == BFLOAT16
    assert "y" not in conv3.forward  # the loss reads FLOAT
    assert all(t.tag == " bf16" for t in (conv1, conv2, conv3)) and layer_types("fp32", LAYERS[1], False).tag == ""
    for t in (conv1, conv2, conv3):
        assert t.wgrad["dw"] == BFLOAT16 and "db" not in t.dgrad


@pytest.mark.usefixtures("backend_api")
def test_tensors_are_nhwc_in_nchw_dimension_order():
    t = graphs.tensor(5, (4, 16, 32, 48))
    assert t.get("CUDNN_ATTR_TENSOR_STRIDES", "CUDNN_TYPE_INT64", 4) == [32 * 48 * 16, 1, 48 * 16, 16]
    assert graphs.nhwc_strides(16, 16, 3, 3) == [144, 1, 48, 16]  # a KRSC filter


def test_krsc_reorders_each_filter_and_round_trips():
    flat = init_params(5)
    krsc = to_krsc(flat)
    np.testing.assert_array_equal(from_krsc(krsc), flat)
    kcrs, moved = views(flat), views(krsc, krsc=True)
    for p in PARAMS:
        if len(p.shape) == 4:  # element (k, c, r, s) sits at (k, r, s, c)
            np.testing.assert_array_equal(moved[p.name], kcrs[p.name].transpose(0, 2, 3, 1))
        else:
            np.testing.assert_array_equal(moved[p.name], kcrs[p.name])
    assert not np.array_equal(krsc, flat)  # conv2 and conv3 really move (conv1 has C = 1)


@pytest.mark.usefixtures("backend_api")
@pytest.mark.parametrize("precision", PRECISIONS)
def test_each_dgrad_form_builds_its_graphs(precision):
    """The DGRAD_FORMS a hidden layer times, and the graphs (their cache names) each runs; the
    bias gradient is in a graph's reduction (db role) exactly when the form is not "cublas"."""
    spec = LAYERS[2]
    types = layer_types(precision, spec, first=False)
    tag = " bf16" if precision == "bf16" else ""
    options = fusion.dgrad_options(spec, 2, 8, 8, types, fusion.DGRAD_FORMS, scratch=True)
    names = {form: [name for name, _ in built] for form, _, _, built in options}
    assert names == {
        "fused": [f"graph backward_data relu bias{tag}"],
        "fused cublas": [f"graph backward_data relu{tag}"],
        "split": [f"graph backward_data{tag}", f"graph relu_backward bias{tag}"],
        "split cublas": [f"graph backward_data{tag}", f"graph relu_backward{tag}"],
    }
    for form, bias, split, built in options:
        assert (bias, split) == (not form.endswith("cublas"), form.startswith("split"))
        assert ("db" in built[-1][1][1]) == bias  # the last graph's roles
        assert split == (len(built) == 2)
    without_scratch = fusion.dgrad_options(spec, 2, 8, 8, types, fusion.DGRAD_FORMS, scratch=False)
    assert [o[0] for o in without_scratch] == ["fused", "fused cublas"]
    forced = fusion.dgrad_options(spec, 2, 8, 8, types, ("split cublas",), scratch=True)
    assert [o[0] for o in forced] == ["split cublas"]
