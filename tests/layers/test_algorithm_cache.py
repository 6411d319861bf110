"""The on-disk cache of chosen algorithms: keys, round trip, and what it does with a bad file."""

import json

from cudnn_denoise.layers.algorithm_cache import FORMAT, AlgorithmCache, default_path, make_key
from cudnn_denoise.layers.algorithms import Policy

CHOICE = {"algo": 1, "algo_name": "CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM", "workspace": 4096,
          "math_type": 0, "deterministic": True, "time_ms": 0.4}


def test_key_names_everything_a_choice_depends_on():
    tf32 = Policy("find", strict_fp32=False, deterministic=False, workspace_limit=1 << 30)
    fp32 = Policy("find", strict_fp32=True, deterministic=False, workspace_limit=1 << 30)
    keys = {
        make_key("H100", 91900, "NCHW x 4x1x64x64", "forward", tf32),
        make_key("H200", 91900, "NCHW x 4x1x64x64", "forward", tf32),
        make_key("H100", 92400, "NCHW x 4x1x64x64", "forward", tf32),
        make_key("H100", 91900, "NCHW x 4x1x64x32", "forward", tf32),
        make_key("H100", 91900, "NCHW x 4x1x64x64", "backward_data", tf32),
        make_key("H100", 91900, "NCHW x 4x1x64x64", "forward", fp32),
    }
    assert len(keys) == 6


def test_round_trip_through_the_file(tmp_path):
    path = tmp_path / "sub" / "algorithms.json"
    AlgorithmCache(path).put("k", CHOICE)
    assert AlgorithmCache(path).get("k") == CHOICE
    assert json.loads(path.read_text())["format"] == FORMAT


def test_unreadable_or_foreign_files_start_empty_and_are_rewritten(tmp_path):
    path = tmp_path / "algorithms.json"
    for text in ("{not json", json.dumps({"format": "other", "entries": {"k": CHOICE}})):
        path.write_text(text)
        cache = AlgorithmCache(path)
        assert cache.get("k") is None
        cache.put("k", CHOICE)
        assert AlgorithmCache(path).get("k") == CHOICE


def test_environment_variable_moves_or_disables_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDNN_DENOISE_ALGORITHM_CACHE", str(tmp_path / "a.json"))
    assert default_path() == tmp_path / "a.json"
    monkeypatch.setenv("CUDNN_DENOISE_ALGORITHM_CACHE", "off")
    assert default_path() is None
