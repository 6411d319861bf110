"""Per-call GPU time of a training step: CUDA events around every cuDNN and cuBLAS call.

    with CallProfiler(model.stream) as profiler:
        for _ in range(steps): model.train_step_async(x, target, lr)
    print("\\n".join(profiler.table(steps)))

Calls are numbered in step order (the sequence docs/fortran.md lists), so the table reads as
"where a step goes". Events add a little time of their own; a captured graph cannot be profiled.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict

from ..bindings import library


class CallProfiler:
    """Records (function, start event, end event) for each checked call while installed."""

    def __init__(self, stream):
        self.stream = stream
        self.calls: list[tuple[str, object, object]] = []
        self._previous = None

    @contextlib.contextmanager
    def _around(self, name, args):
        import cupy

        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record(self.stream)
        yield
        end.record(self.stream)
        self.calls.append((name, start, end))

    def __enter__(self):
        previous = library.set_hook(self._around)
        if previous is not None:  # one hook at a time: a trace and a profile do not stack
            library.set_hook(previous)
            raise RuntimeError("another call hook (a --trace?) is installed; profile and trace one at a time")
        return self

    def __exit__(self, *exc):
        library.set_hook(None)

    def per_call(self, steps: int) -> list[tuple[int, str, float]]:
        """(position in the step, function, mean ms per step) for each call of a step."""
        import cupy

        self.stream.synchronize()
        per_step = len(self.calls) // steps
        if per_step * steps != len(self.calls):
            raise ValueError(f"{len(self.calls)} calls do not split into {steps} equal steps")
        totals = defaultdict(float)
        for i, (name, start, end) in enumerate(self.calls):
            totals[(i % per_step, name)] += cupy.cuda.get_elapsed_time(start, end)
        return [(pos, name, ms / steps) for (pos, name), ms in sorted(totals.items())]

    def table(self, steps: int) -> list[str]:
        rows = self.per_call(steps)
        total = sum(ms for _, _, ms in rows)
        lines = ["| # | call | ms/step | share |", "| ---: | --- | ---: | ---: |"]
        lines += [f"| {pos + 1} | {name} | {ms:.3f} | {100 * ms / total:.1f}% |" for pos, name, ms in rows]
        lines.append(f"| | sum of calls | {total:.3f} | 100% |")
        return lines
