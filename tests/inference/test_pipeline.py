"""The denoise pipeline (cudnn_denoise/inference/pipeline.py): readers ahead, the network in this
thread, writers behind. Inputs are fake sources (frames in memory, delays injected) so that the
threads finish out of order; outputs are real raw files (RawWriter: partial name, then rename);
the network is the reference backend, whose tiles are exact.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cudnn_denoise.data.format import DataError
from cudnn_denoise.inference import pipeline
from cudnn_denoise.inference.engine import Denoiser
from cudnn_denoise.inference.files import Job, open_writer
from cudnn_denoise.inference.intensity import TrainingStats, scaling_for
from cudnn_denoise.micrographs.moments import Moments
from cudnn_denoise.params import init_params
from cudnn_denoise.userio import signals
from cudnn_denoise.userio.files import PARTIAL

STATS = TrainingStats(mean=0.5, std=0.1)
SHAPE = (40, 56)


class FakeSource:
    """A source of in-memory frames; read(i) sleeps delay seconds first."""

    def __init__(self, frames: list[np.ndarray | BaseException], delay: float = 0.0):
        self.path = None  # set by Inputs
        self._frames, self.delay = frames, delay
        self.frames = len(frames)
        self.height, self.width = SHAPE
        self.header = None
        self.closed = False
        self.reads = 0

    def read(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        assert not self.closed, f"{self.path} read after close"
        time.sleep(self.delay)
        self.reads += 1
        frame = self._frames[index]
        if isinstance(frame, BaseException):
            raise frame
        if out is None:
            return frame.copy()
        np.copyto(out, frame)
        return out

    def close(self) -> None:
        self.closed = True


def frames(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(1000.0, 40.0, SHAPE).astype(np.float32) for _ in range(count)]


class Inputs:
    """Jobs for named fake sources (or exceptions that opening them raises), outputs in out/."""

    def __init__(self, tmp_path: Path, sources: dict[str, object]):
        self.out = tmp_path / "out"
        self.out.mkdir()
        self.sources = {Path(name): s for name, s in sources.items()}
        for path, s in self.sources.items():
            if isinstance(s, FakeSource):
                s.path = path
        self.jobs = [Job(path, self.out / f"{path.stem}.bin") for path in self.sources]
        self.opened: list[FakeSource] = []

    def open_source(self, path: Path):
        source = self.sources[path]
        if isinstance(source, BaseException):
            raise source
        self.opened.append(source)
        return source

    def run(self, *, slow_first_write: bool = False, **kw) -> list[pipeline.FileResult]:
        """The pipeline's results; slow_first_write: each output's frame 0 is written late."""

        def writer(job, source):
            raw = open_writer(job, source, "raw", "test")
            if slow_first_write:
                write = raw.write
                raw.write = lambda index, y, moments: (time.sleep(0.2 if index == 0 else 0.0), write(index, y))
            return raw

        results = pipeline.denoise_files(
            self.jobs, Denoiser("reference", init_params(4), tile=16), open_source=self.open_source,
            stats=STATS, normalize=False, open_writer=writer, **kw)
        with contextlib.closing(results):
            return list(results)

    def output(self, name: str) -> np.ndarray:
        return np.fromfile(self.out / f"{name}.bin", np.float32).reshape(-1, *SHAPE)

    def files(self) -> list[str]:
        return sorted(p.name for p in self.out.iterdir())


def pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("denoise-read", "denoise-write"))]


def sequential(x: np.ndarray) -> np.ndarray:
    """One frame denoised on its own, as the pipeline must: scaled in, the network, scaled back."""
    scaling = scaling_for(Moments.of(x), STATS)
    return scaling.from_model(Denoiser("reference", init_params(4), tile=16).denoise(scaling.to_model(x)))


def test_outputs_are_the_sequential_denoise_bit_for_bit(tmp_path):
    inputs = Inputs(tmp_path, {"a.bin": FakeSource(frames(1, 0)),
                               "stack.bin": FakeSource(frames(3, 1), delay=0.02),
                               "c.bin": FakeSource(frames(1, 2))})
    results = inputs.run(slow_first_write=True)  # the stack's frames still written in order
    assert [r.error for r in results] == [None] * 3 and [r.frames for r in results] == [1, 3, 1]
    for name, source in [("a", "a.bin"), ("stack", "stack.bin"), ("c", "c.bin")]:
        expected = np.stack([sequential(x) for x in inputs.sources[Path(source)]._frames])
        np.testing.assert_array_equal(inputs.output(name), expected)
    assert inputs.files() == ["a.bin", "c.bin", "stack.bin"]
    assert all(s.closed for s in inputs.opened)
    assert pipeline_threads() == []


def test_results_come_in_input_order_when_later_files_finish_first(tmp_path):
    """The first input is read slowly, and its output is held until the last one is written:
    later inputs are read first and finished first. Six inputs fit in the writers' queue (4 +
    AHEAD frames), so m5 is queued while m0 waits."""
    inputs = Inputs(tmp_path, {f"m{i}.bin": FakeSource(frames(1, i), delay=0.3 if i == 0 else 0.0)
                               for i in range(6)})
    last_written = threading.Event()
    finished = []

    def on_output(job, index, count, panels):
        if job.source.name == "m0.bin":
            assert last_written.wait(timeout=30)
        elif job.source.name == "m5.bin":
            last_written.set()
        finished.append(job.source.name)

    results = inputs.run(on_output=on_output, preview_size=16, readers=4, writers=4)
    assert [r.job for r in results] == inputs.jobs
    assert finished[-1] == "m0.bin"  # the scenario happened
    assert all(r.seconds > 0 for r in results)


def test_a_bad_input_is_named_and_the_others_go_on(tmp_path):
    nan_stack = frames(3, 5)
    nan_stack[1][2, 3] = np.nan
    inputs = Inputs(tmp_path, {"a.bin": FakeSource(frames(1, 0)),
                               "unreadable.bin": DataError("unreadable.bin: not a readable MRC file"),
                               "nan.bin": FakeSource(nan_stack),
                               "short.bin": FakeSource([frames(1, 6)[0], OSError(5, "I/O error")]),
                               "mid.bin": FakeSource([frames(1, 7)[0], OSError(5, "I/O error"), frames(1, 8)[0]]),
                               "d.bin": FakeSource(frames(1, 3))})
    results = inputs.run()
    assert [r.job.source.name for r in results] == [j.source.name for j in inputs.jobs]
    errors = {r.job.source.name: r.error for r in results}
    assert errors["a.bin"] is None and errors["d.bin"] is None
    assert "unreadable.bin" in errors["unreadable.bin"]
    assert errors["nan.bin"].startswith("nan.bin frame 1: holds 1 NaN")
    assert errors["short.bin"].startswith("short.bin: OSError")
    assert errors["mid.bin"].startswith("mid.bin: OSError")  # the frame after it is dropped, not written
    assert inputs.files() == ["a.bin", "d.bin"]  # the stacks that failed part way left nothing
    assert len(inputs.opened) == 5 and all(s.closed for s in inputs.opened)


def test_a_stop_leaves_only_finished_outputs_and_no_threads(tmp_path):
    inputs = Inputs(tmp_path, {f"m{i}.bin": FakeSource(frames(2, i)) for i in range(6)})
    seen = []

    def on_frame():
        seen.append(1)
        if len(seen) == 5:  # m2's first frame denoised: m0 and m1 may be finished
            raise signals.Stopped(signal.SIGINT)

    reported = []
    results = pipeline.denoise_files(
        inputs.jobs, Denoiser("reference", init_params(4), tile=16), open_source=inputs.open_source,
        stats=STATS, normalize=False, on_frame=on_frame,
        open_writer=lambda job, source: open_writer(job, source, "raw", "test"))
    with pytest.raises(signals.Stopped), contextlib.closing(results):
        for result in results:
            reported.append(result.job.output.name)
    left = inputs.files()
    assert not any(PARTIAL in name for name in left)
    assert set(reported) <= set(left) <= {"m0.bin", "m1.bin"}
    for name in left:  # complete: both frames
        assert inputs.output(name[:-4]).shape == (2, *SHAPE)
    assert pipeline_threads() == []
    assert all(s.closed for s in inputs.opened)


def test_reading_stays_a_few_frames_ahead(tmp_path):
    inputs = Inputs(tmp_path, {f"m{i}.bin": FakeSource(frames(1, i)) for i in range(12)})
    ahead = []

    def on_frame():
        time.sleep(0.05)  # a slow network: the readers could run far ahead
        read = sum(s.reads for s in inputs.sources.values())
        ahead.append(read - len(ahead) - 1)

    inputs.run(on_frame=on_frame, readers=2)
    assert max(ahead) <= 2 + pipeline.AHEAD


@pytest.mark.parametrize("where", ["reading", "writing"])
def test_a_thread_s_unexpected_error_surfaces_here_naming_the_file(tmp_path, where):
    bug = RuntimeError("a bug")
    inputs = Inputs(tmp_path, {"a.bin": FakeSource(frames(1, 0)),
                               "b.bin": FakeSource([bug] if where == "reading" else frames(1, 1))})

    def on_output(job, index, count, panels):
        if job.source.name == "b.bin":
            raise bug

    with pytest.raises(RuntimeError, match="a bug") as caught:
        inputs.run(on_output=on_output, preview_size=16)
    assert any("b.bin" in note for note in caught.value.__notes__)
    assert not any(PARTIAL in name for name in inputs.files())
    assert pipeline_threads() == []
