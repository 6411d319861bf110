"""outdir and signals: one writer per output folder (refused at once, free again after any exit,
kill -9 included), a file set replaced as a whole with its marker last, and the signal modes
(raising, flag, held) that restore the handlers they found."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from cudnn_denoise.userio import outdir, signals
from cudnn_denoise.userio.outdir import FolderBusy, OutputLock, Staging

HOLDER = """
import sys
from cudnn_denoise.userio.outdir import OutputLock
with OutputLock(sys.argv[1], "holder"):
    print("locked", flush=True)
    sys.stdin.readline()
"""


@pytest.fixture
def holder(tmp_path):
    """Start a process that holds the lock of a folder until its stdin closes or it is killed."""
    procs = []

    def start(folder):
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout.readline() == "locked\n"
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


def test_a_second_writer_is_refused_at_once_naming_the_first(tmp_path, holder):
    proc = holder(tmp_path / "out")
    with pytest.raises(FolderBusy) as error:
        with OutputLock(tmp_path / "out", "train"):
            pass
    assert str(error.value).startswith(f"--out {tmp_path / 'out'}: holder (pid {proc.pid} on ")
    assert "choose another --out" in str(error.value)


@pytest.mark.parametrize("end", ["exits", "is killed"])
def test_the_lock_is_free_after_its_holder_ends_in_any_way(tmp_path, holder, end):
    proc = holder(tmp_path / "out")
    if end == "exits":
        proc.stdin.close()
    else:
        proc.send_signal(signal.SIGKILL)  # no cleanup ran: the kernel released the lock
    proc.wait()
    with OutputLock(tmp_path / "out", "train"):
        assert (tmp_path / "out" / outdir.LOCK_NAME).read_text().startswith("train (pid ")


def test_a_waiter_gets_the_lock_when_the_holder_ends(tmp_path, holder):
    proc = holder(tmp_path / "out")
    proc.stdin.close()  # the holder ends while we wait (or before: either way we get it)
    with OutputLock(tmp_path / "out", "train", wait=True):
        pass
    proc.wait()


def test_the_lock_leaves_nothing_behind(tmp_path):
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "data.bin").write_text("x")
    for name in ("kept", "made"):
        with OutputLock(tmp_path / name, "make_dataset"):
            assert (tmp_path / name / outdir.LOCK_NAME).exists()
    assert os.listdir(tmp_path / "kept") == ["data.bin"]
    assert not (tmp_path / "made").exists()  # made for the lock and left empty: removed


def test_a_file_where_the_folder_belongs_is_named(tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(
        ValueError, match=rf"^--out {tmp_path / 'out'}: exists and is not a folder$"
    ):
        with OutputLock(tmp_path / "out", "train"):
            pass
    with pytest.raises(
        ValueError, match=rf"^--out {tmp_path / 'out' / 'run'}: cannot be made \(Not a directory\)"
    ):
        with OutputLock(tmp_path / "out" / "run", "train"):
            pass


def write_set(folder, names, text):
    for name in names:
        (folder / name).write_text(text)


def test_staging_moves_the_set_in_with_its_marker_last(tmp_path, monkeypatch):
    write_set(tmp_path, ["noisy.bin", "clean.bin", "dataset.json"], "old")
    (tmp_path / "notes.txt").write_text("the user's")
    moved = []
    real_replace, real_unlink = os.replace, os.unlink
    monkeypatch.setattr(
        os, "replace", lambda a, b: (moved.append(os.path.basename(b)), real_replace(a, b))
    )
    with Staging(tmp_path, "dataset.json") as stage:
        write_set(stage.path, ["noisy.bin", "clean.bin", "dataset.json"], "new")
        assert (tmp_path / "dataset.json").read_text() == "old"
        monkeypatch.setattr(
            os,
            "unlink",
            lambda p, **kw: (moved.append("unlink " + os.path.basename(p)), real_unlink(p, **kw)),
        )
        stage.commit()
    assert moved[0] == "unlink dataset.json" and moved[-1] == "dataset.json"
    assert sorted(moved[1:-1]) == ["clean.bin", "noisy.bin"]
    assert {n: (tmp_path / n).read_text() for n in os.listdir(tmp_path)} == {
        "noisy.bin": "new",
        "clean.bin": "new",
        "dataset.json": "new",
        "notes.txt": "the user's",
    }


def test_staging_left_by_an_error_changes_nothing(tmp_path):
    write_set(tmp_path, ["noisy.bin", "dataset.json"], "old")
    with pytest.raises(OSError), Staging(tmp_path, "dataset.json") as stage:
        write_set(stage.path, ["noisy.bin"], "new")
        raise OSError(28, "No space left on device")
    assert sorted(os.listdir(tmp_path)) == ["dataset.json", "noisy.bin"]
    assert (tmp_path / "noisy.bin").read_text() == "old"


def test_a_signal_during_the_commit_waits_until_the_set_is_in(tmp_path, monkeypatch):
    write_set(tmp_path, ["a.bin", "b.bin", "manifest.json"], "old")
    real_replace = os.replace

    def replace_and_interrupt(a, b):  # SIGINT arrives between the renames
        real_replace(a, b)
        os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(signals.Stopped) as stopped, signals.raising():
        with Staging(tmp_path, "manifest.json") as stage:
            write_set(stage.path, ["a.bin", "b.bin", "manifest.json"], "new")
            monkeypatch.setattr(os, "replace", replace_and_interrupt)
            stage.commit()
            monkeypatch.setattr(os, "replace", real_replace)
    assert stopped.value.signum == signal.SIGINT and stopped.value.handled() == 130
    assert {n: (tmp_path / n).read_text() for n in os.listdir(tmp_path)} == {
        "a.bin": "new",
        "b.bin": "new",
        "manifest.json": "new",
    }


def test_signal_modes_restore_the_handlers_they_found():
    def mine(signum, frame):
        pass

    old = {sig: signal.signal(sig, mine) for sig in signals.SIGNALS}
    try:
        with signals.raising():
            with signals.flag() as stop:
                os.kill(os.getpid(), signal.SIGTERM)
                assert stop.received == signal.SIGTERM
            with pytest.raises(signals.Stopped) as stopped:
                os.kill(os.getpid(), signal.SIGTERM)
            assert stopped.value.handled() == 143
        assert all(signal.getsignal(sig) is mine for sig in signals.SIGNALS)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def dropped_signal():
    """SIGINT whose Stopped is swallowed, as an extension module's init or a fork hook can do."""
    try:
        os.kill(os.getpid(), signal.SIGINT)
    except signals.Stopped:
        pass


@pytest.mark.parametrize("safe_point", ["flag", "held", "check", "end of raising"])
def test_a_dropped_stop_is_raised_again_at_the_next_safe_point(safe_point):
    reached = []
    with pytest.raises(signals.Stopped) as stopped, signals.raising():
        dropped_signal()
        reached.append("dropped")
        if safe_point == "flag":
            with signals.flag():
                reached.append("inside flag")
        elif safe_point == "held":
            with signals.held():
                reached.append("inside held")
        elif safe_point == "check":
            signals.check()
            reached.append("after check")
    assert reached == ["dropped"] and stopped.value.handled() == 130


def test_a_handled_stop_is_not_raised_again():
    with signals.raising():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except signals.Stopped as exc:
            assert exc.handled() == 143  # a program's top dealt with it
        with signals.flag() as stop:
            assert stop.received is None
