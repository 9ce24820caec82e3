"""One run per folder: the lock, its owner in the message, stale locks taken over, nothing left."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gradw.runlock import LOCK_NAME, RunLock, RunLockError

HOLD = (
    "import sys, time; from gradw.runlock import RunLock; RunLock(sys.argv[1], '{what}').acquire(); "
    "print('held', flush=True); time.sleep(60)"
)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _holder(folder: Path, what: str = "training") -> subprocess.Popen:
    """Another process that takes the folder's lock and keeps it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD.format(what=what), str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_the_lock_names_its_owner_and_goes_away(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    with RunLock(folder, "training") as lock:
        owner = json.loads(lock.path.read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        with pytest.raises(RunLockError, match=rf"in use by another training: pid {os.getpid()}"):
            RunLock(folder, "evaluation").acquire()
        (folder / "result.txt").write_text("kept")
    assert not (folder / LOCK_NAME).exists() and (folder / "result.txt").read_text() == "kept"


def test_a_folder_the_lock_made_is_removed_when_the_run_wrote_nothing(tmp_path: Path) -> None:
    with RunLock(tmp_path / "a" / "b", "training"):
        pass
    assert not (tmp_path / "a" / "b").exists()
    (tmp_path / "mine").mkdir()
    with RunLock(tmp_path / "mine", "training"):
        pass
    assert (tmp_path / "mine").is_dir()  # a folder that was already there stays


def test_a_lock_of_a_dead_process_is_taken_over_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pid = _dead_pid()
    tmp_path.joinpath(LOCK_NAME).write_text(
        json.dumps({"pid": pid, "host": socket.gethostname(), "what": "training"})
    )
    with RunLock(tmp_path, "training") as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert f"taking over {tmp_path / LOCK_NAME}: its training (pid {pid}" in capsys.readouterr().err


def test_a_lock_from_another_host_is_refused_with_the_file_to_remove(tmp_path: Path) -> None:
    tmp_path.joinpath(LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere", "what": "evaluation"}))
    with pytest.raises(RunLockError, match=rf"pid 1 on host elsewhere.*remove {tmp_path / LOCK_NAME}"):
        RunLock(tmp_path, "evaluation").acquire()


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "gradw", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )


def _train_args(corpus: Path, run: Path) -> list[str]:
    return [
        "train", "--config", "tiny", f"out_dir={run}", f"cache_dir={run.parent / 'cache'}",
        f"data.train={corpus / 'train'}", f"data.augment={corpus / 'augment' / 'train'}",
        f"data.val={corpus / 'val'}", f"data.val_augment={corpus / 'augment' / 'test'}",
        "speaker.name=resnet-tiny", "speaker.checkpoint=random", "speaker.tap=layer4", "tensorboard=false",
    ]  # fmt: skip


def _evaluate_args(corpus: Path, out: Path) -> list[str]:
    return [
        "evaluate", "--test", str(corpus / "test"), "--augment", str(corpus / "augment" / "test"),
        "--scorer", "resnet-tiny", "--scorer-checkpoint", "random", "--snrs", "0", "--categories", "noise",
        "--out", str(out),
    ]  # fmt: skip


def test_a_second_training_or_evaluation_into_a_busy_folder_is_refused(
    toy_corpus: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    first = _holder(run)
    try:
        train = _cli(*_train_args(toy_corpus, run), cwd=tmp_path)
        evaluate = _cli(*_evaluate_args(toy_corpus, run), cwd=tmp_path)
    finally:
        first.kill()
        first.wait()
    for result in (train, evaluate):
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1
        assert f"{run} is in use by another training: pid {first.pid}" in result.stderr
    assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # nothing written beside the lock


def test_a_killed_runs_lock_is_taken_over_by_the_next(toy_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    holder = _holder(out, "evaluation")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    time.sleep(0.1)
    # what its writes left half-done: temporary files named with its (now dead) pid
    stale = [
        out / f".results.json.{holder.pid}.{'a' * 32}.tmp",
        out / "cache" / f".emb-x.npz.{holder.pid}.{'b' * 32}.tmp",
    ]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half")
    result = _cli(*_evaluate_args(toy_corpus, out), "--n-boot", "20", "--max-trials", "20", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"taking over {out / LOCK_NAME}: its evaluation (pid {holder.pid}" in result.stderr
    assert (out / "results.json").is_file() and not (out / LOCK_NAME).exists()
    assert not any(p.exists() for p in stale) and not list(out.rglob("*.tmp"))


def test_taking_a_lock_removes_temporary_files_of_dead_writers_only(tmp_path: Path) -> None:
    dead = _dead_pid()
    (tmp_path / "scores").mkdir()
    stale = tmp_path / "scores" / f".clean.txt.{dead}.{'c' * 32}.tmp"
    live = tmp_path / f".clean.txt.{os.getpid()}.{'d' * 32}.tmp"
    for path in (stale, live):
        path.write_text("half")
    with RunLock(tmp_path, "evaluation"):
        assert not stale.exists() and live.exists()


def test_resume_with_nothing_to_resume_is_an_error(toy_corpus: Path, tmp_path: Path) -> None:
    result = _cli(*_train_args(toy_corpus, tmp_path / "none"), "--resume", cwd=tmp_path)
    assert result.returncode == 2
    assert "nothing to resume" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "none").exists()


class _Interrupted(Exception):
    pass


def _raise_interrupted(signum: int, frame: object) -> None:
    raise _Interrupted


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupt_that_comes_while_the_lock_is_created_leaves_no_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: signal.Signals
) -> None:
    """The signal reaches the process inside the call that creates the file: without holding it
    back, its handler would raise the moment that call returns, before anything knows the file is
    this run's."""
    real_open = os.open

    def open_then_signalled(path: str, flags: int, mode: int = 0o777) -> int:
        fd = real_open(path, flags, mode)
        os.kill(os.getpid(), signum)
        return fd

    previous = signal.signal(signum, _raise_interrupted)
    try:
        monkeypatch.setattr("gradw.runlock.os.open", open_then_signalled)
        with pytest.raises(_Interrupted):
            RunLock(tmp_path / "run", "training").acquire()
        assert signal.getsignal(signum) is _raise_interrupted  # the handler is given back
    finally:
        signal.signal(signum, previous)
    assert not (tmp_path / "run" / LOCK_NAME).exists()
    assert not (tmp_path / "run").exists()  # nor the folder the lock made
