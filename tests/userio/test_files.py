"""userio/files.py: regular files only (a FIFO refused without blocking), JSON errors naming the file,
atomic and durable replacement, and the sweep of partial files that dead processes left."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from cudnn_denoise.userio import files
from cudnn_denoise.userio.files import UserFileError


def call_within(seconds: float, function, *args):
    """function(*args) on a thread: its result or exception, or a failure if it blocks."""
    box = {}

    def target():
        try:
            box["value"] = function(*args)
        except BaseException as exc:  # handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{function.__name__} blocked for {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.mark.parametrize("function", [files.open_regular, files.read_bytes, files.read_json])
def test_a_fifo_is_refused_at_once(tmp_path, function):
    fifo = tmp_path / "noisy.bin"
    os.mkfifo(fifo)
    with pytest.raises(UserFileError, match=rf"^{fifo}: is not a regular file \(a FIFO"):
        call_within(10, function, fifo)


def test_a_folder_and_a_missing_file_are_named(tmp_path):
    with pytest.raises(UserFileError, match=rf"^{tmp_path}: is not a regular file \(a folder\)"):
        files.read_bytes(tmp_path)
    with pytest.raises(UserFileError, match=rf"^{tmp_path / 'x.json'}: no such file"):
        files.read_json(tmp_path / "x.json")


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"height": 8, "name": "\xff\xfe"}', "is not UTF-8 text (byte 0xff at offset 23)"),
        (b"height: 8", "is not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"mean": NaN}', "NaN is not a JSON number"),
    ],
)
def test_json_faults_name_the_file(tmp_path, content, message):
    path = tmp_path / "dataset.json"
    path.write_bytes(content)
    with pytest.raises(UserFileError) as error:
        files.read_json(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value), error.value
    assert "\n" not in str(error.value)


def test_write_atomic_fsyncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    path = tmp_path / "dataset.json"
    path.write_text("old")
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(
        os,
        "fsync",
        lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))), real_fsync(fd)),
    )
    monkeypatch.setattr(
        os, "replace", lambda a, b: (events.append(("replace", str(b))), real_replace(a, b))
    )
    files.write_atomic(path, b"new")
    partial = str(files.partial_name(path))
    assert events == [("fsync", partial), ("replace", str(path)), ("fsync", str(tmp_path))]
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["dataset.json"]


def test_write_atomic_that_fails_keeps_the_old_file_and_no_partial(tmp_path, monkeypatch):
    path = tmp_path / "dataset.json"
    path.write_text("old")

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        files.write_atomic(path, b"new")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["dataset.json"]


def test_sweep_removes_only_what_dead_processes_of_this_host_left(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    host = files.partial_name(tmp_path / "x").name.split(".")[-3]
    names = {
        "dead file": f".a.mrc.{host}.{dead_pid}.partial",
        "dead folder": f".staging.{host}.{dead_pid}.partial",
        "live": f".b.mrc.{host}.1.partial",  # pid 1 runs as long as the machine does
        "mine": files.partial_name(tmp_path / "c.mrc").name,
        "other host": f".d.mrc.otherhost.{dead_pid}.partial",
        "user's file": "e.mrc",
    }
    for key, name in names.items():
        (tmp_path / name).mkdir() if "folder" in key else (tmp_path / name).write_text("x")
    (tmp_path / names["dead folder"] / "noisy.bin").write_text("x")
    assert sorted(p.name for p in files.sweep_partials(tmp_path)) == sorted(
        [names["dead file"], names["dead folder"]]
    )
    left = {names[k] for k in ("live", "mine", "other host", "user's file")}
    assert set(os.listdir(tmp_path)) == left
    files.sweep_partials(tmp_path, mine=True)
    assert set(os.listdir(tmp_path)) == left - {names["mine"]}
