"""Chosen convolution algorithms kept on disk, so that a second run skips cudnnFind...AlgorithmEx.

One JSON file (default $XDG_CACHE_HOME/cudnn_denoise/algorithms.json, or the path in
CUDNN_DENOISE_ALGORITHM_CACHE; "off" disables it) maps a key to a choice. The key names everything
the choice depends on: GPU, cuDNN version, the convolution's shapes and layout, the direction and
the policy (math mode, determinism, workspace limit). The file is replaced atomically; an
unreadable one is ignored and rewritten, never an error.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)
FORMAT = "cudnn_denoise.algorithms/1"


def default_path() -> Path | None:
    env = os.environ.get("CUDNN_DENOISE_ALGORITHM_CACHE")
    if env == "off":
        return None
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cudnn_denoise" / "algorithms.json"


def make_key(gpu: str, cudnn_version: int, geometry: str, direction: str, policy) -> str:
    """One string naming everything a choice depends on."""
    return (f"{gpu} | cudnn {cudnn_version} | {geometry} | {direction} | "
            f"{'fp32' if policy.strict_fp32 else 'tf32'} | deterministic={policy.deterministic} | "
            f"workspace<={policy.workspace_limit}")


class AlgorithmCache:
    """get(key) -> dict or None; put(key, dict) writes the whole file again."""

    def __init__(self, path: Path | None):
        self.path = path
        self.entries: dict[str, dict] = self._read() if path is not None else {}

    def _read(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("algorithm cache %s unreadable (%s); starting a new one", self.path, exc)
            return {}
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            log.warning("algorithm cache %s has another format; starting a new one", self.path)
            return {}
        return data.get("entries", {})

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def put(self, key: str, value: dict) -> None:
        self.entries[key] = value
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps({"format": FORMAT, "entries": self.entries}, indent=1, sort_keys=True))
            os.replace(tmp, self.path)
        except OSError as exc:  # a cache that cannot be written costs time, not correctness
            log.warning("algorithm cache %s not written: %s", self.path, exc)
