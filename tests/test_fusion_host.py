"""The NHWC path's operation graphs, built host-side with the real cuDNN (no GPU needed), and the
KRSC filter layout that path keeps on the device."""

import numpy as np
import pytest

from cudnn_denoise.layers import fusion
from cudnn_denoise.params import LAYERS, PARAMS, from_krsc, init_params, to_krsc, views


@pytest.mark.usefixtures("backend_api")
@pytest.mark.parametrize("spec", LAYERS, ids=[s.name for s in LAYERS])
def test_every_operation_of_the_step_finalizes(spec):
    """Tensors, convolutions, pointwise and reduction operations finalize without a handle; what
    is left for the GPU is the graph, its heuristics and its plans."""
    ops, uids = fusion.forward_graph(spec, 3, 37, 53)
    assert uids == {"x": 1, "w": 2, "b": 3, "y": 4}
    assert len(ops) == (3 if spec.relu else 2)  # conv, bias add [, ReLU]
    ops, uids = fusion.wgrad_graph(spec, 3, 37, 53)
    assert len(ops) == 1 and uids == {"x": 1, "dy": 2, "dw": 3}
    for bias in (True, False):
        ops, uids = fusion.dgrad_graph(spec, 3, 37, 53, bias)
        assert len(ops) == (3 if bias else 2) and ("db" in uids) == bias


@pytest.mark.usefixtures("backend_api")
def test_tensors_are_nhwc_in_nchw_dimension_order():
    t = fusion.tensor(5, (4, 16, 32, 48))
    assert t.get("CUDNN_ATTR_TENSOR_STRIDES", "CUDNN_TYPE_INT64", 4) == [32 * 48 * 16, 1, 48 * 16, 16]
    assert fusion.nhwc_strides(16, 16, 3, 3) == [144, 1, 48, 16]  # a KRSC filter


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
