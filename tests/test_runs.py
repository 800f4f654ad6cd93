"""Run files survive what a session can do to them: a full disk mid-write, a crash mid-append, a second trainer, a
lock left by a crash."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from utils import runs


@pytest.mark.fault
def test_a_full_disk_mid_rewrite_leaves_the_old_file_whole(tmp_path, monkeypatch):
    log = tmp_path / runs.LOG
    runs.write_rows(log, [{"step": 1}, {"step": 2}])
    real_write = Path.write_text

    def disk_full(self, text, *args, **kwargs):
        real_write(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        runs.write_rows(log, [{"step": 1}])
    with pytest.raises(OSError, match="No space left"):
        runs.write_json(tmp_path / runs.CONFIG, {"name": "exp2_oneshot"})
    monkeypatch.undo()
    assert runs.read_rows(log) == [{"step": 1}, {"step": 2}]
    assert sorted(p.name for p in tmp_path.iterdir()) == [runs.LOG]  # no partial file left behind


@pytest.mark.fault
def test_a_last_line_cut_by_a_crash_is_dropped_when_the_run_resumes(tmp_path, capsys):
    log = tmp_path / runs.LOG
    log.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "loss": 0.')
    assert runs.read_rows(log) == [{"step": 1}, {"step": 2}]  # readers (the live view) skip it silently
    runs.truncate_rows(log, 2)
    assert "dropped its last line, cut short by a crash (1 row dropped, 2 kept)" in capsys.readouterr().out
    assert log.read_text() == '{"step": 1}\n{"step": 2}\n'


@pytest.mark.bad_input
def test_a_bad_line_inside_a_run_file_is_named(tmp_path):
    log = tmp_path / runs.LOG
    log.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"log.jsonl, line 2: not valid JSON"):
        runs.read_rows(log)


@pytest.mark.bad_input
@pytest.mark.parametrize("text, what", [("", "is empty"), ('{"name": "exp2', "is not valid JSON")])
def test_an_empty_or_corrupt_json_file_is_named(tmp_path, text, what):
    (tmp_path / runs.CONFIG).write_text(text)
    with pytest.raises(ValueError, match=rf"config.json {what} .*restore it from a copy, or start a new run"):
        runs.read_json(tmp_path / runs.CONFIG)


def write_lock(run_dir: Path, host: str, pid: int, age_seconds: float = 0.0) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / runs.LOCK
    path.write_text(json.dumps({"host": host, "pid": pid, "since": "earlier"}))
    then = time.time() - age_seconds
    os.utime(path, (then, then))
    return path


def exited_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.fault
def test_a_live_trainer_keeps_its_run_folder(tmp_path):
    write_lock(tmp_path, socket.gethostname(), os.getpid())
    with pytest.raises(runs.RunLocked, match=rf"pid {os.getpid()} on {socket.gethostname()}.*delete .*lock"):
        runs.TrainingLock(tmp_path).acquire()
    write_lock(tmp_path, "another-machine", 1234, age_seconds=60)  # a live session elsewhere, refreshed a minute ago
    with pytest.raises(runs.RunLocked, match="pid 1234 on another-machine.*taken over 5 min after its last refresh"):
        runs.TrainingLock(tmp_path).acquire()


@pytest.mark.fault
@pytest.mark.parametrize(
    "host, age, why",
    [
        (socket.gethostname(), 0.0, "its process is gone"),  # a crashed kernel on this machine
        ("a-disconnected-colab-vm", runs.LOCK_STALE_SECONDS + 60, "not refreshed for 6 min"),
    ],
)
def test_a_lock_left_by_a_crash_is_taken_over(tmp_path, capsys, host, age, why):
    pid = exited_pid() if host == socket.gethostname() else 1234
    write_lock(tmp_path, host, pid, age_seconds=age)
    lock = runs.TrainingLock(tmp_path)
    lock.acquire()
    assert f"left by a session that ended ({why})" in capsys.readouterr().out
    assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    lock.release()
    assert not tmp_path.exists()  # a run that wrote nothing leaves no folder behind


@pytest.mark.fault
def test_a_held_lock_is_refreshed_while_training_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "HEARTBEAT_SECONDS", 0.05)
    lock = runs.TrainingLock(tmp_path)
    lock.acquire()
    then = time.time() - 3600
    os.utime(lock.path, (then, then))
    time.sleep(0.3)
    assert time.time() - lock.path.stat().st_mtime < 5
    lock.release()
