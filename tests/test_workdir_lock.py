"""One run per workdir: the lock file, its takeover when the holder is gone,
and a trainer refusing a workdir another run holds."""
import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import load_config
from introjax import checkpoint as ckpt_lib
from introjax import workdir_lock
from introjax.errors import WorkdirError
from introjax.training import igm


def _lock(d):
  return d / workdir_lock.LOCK_NAME


def _write_lock(d, **holder):
  _lock(d).write_text(json.dumps(holder))


def _dead_pid():
  """The pid of a process that has exited (and been reaped)."""
  child = subprocess.Popen([sys.executable, "-c", "pass"])
  child.wait()
  return child.pid


def test_hold_writes_host_and_pid_and_removes_the_lock(tmp_path):
  with workdir_lock.hold(str(tmp_path)):
    holder = json.loads(_lock(tmp_path).read_text())
    assert holder["host"] == socket.gethostname()
    assert holder["pid"] == os.getpid()
  assert not _lock(tmp_path).exists()


def test_hold_removes_the_lock_on_an_exception(tmp_path):
  with pytest.raises(RuntimeError, match="boom"):
    with workdir_lock.hold(str(tmp_path)):
      assert _lock(tmp_path).exists()
      raise RuntimeError("boom")
  assert not _lock(tmp_path).exists()


def test_second_hold_on_a_held_workdir_names_the_holder(tmp_path):
  with workdir_lock.hold(str(tmp_path)):
    with pytest.raises(WorkdirError, match=f"pid {os.getpid()}"):
      with workdir_lock.hold(str(tmp_path)):
        pass
    # The refused attempt left the holder's lock in place.
    assert json.loads(_lock(tmp_path).read_text())["pid"] == os.getpid()
  assert not _lock(tmp_path).exists()


def test_lock_of_a_dead_process_is_taken_over(tmp_path):
  dead = _dead_pid()
  _write_lock(tmp_path, host=socket.gethostname(), pid=dead, since=0.0)
  with workdir_lock.hold(str(tmp_path)):
    assert json.loads(_lock(tmp_path).read_text())["pid"] == os.getpid()
  assert not _lock(tmp_path).exists()


def test_lock_of_a_recycled_pid_is_taken_over(tmp_path):
  # The parent is alive, but it started at another time than the lock says:
  # the pid now names another process.
  started = workdir_lock._start_time(os.getppid())
  if started is None:
    pytest.skip("no /proc: start times cannot be read")
  _write_lock(tmp_path, host=socket.gethostname(), pid=os.getppid(),
              started=started + 12345, since=0.0)
  with workdir_lock.hold(str(tmp_path)):
    assert json.loads(_lock(tmp_path).read_text())["pid"] == os.getpid()


def test_lock_on_another_host_names_the_host_and_the_file(tmp_path):
  _write_lock(tmp_path, host="other-host-7", pid=os.getpid(), since=0.0)
  with pytest.raises(WorkdirError) as e:
    with workdir_lock.hold(str(tmp_path)):
      pass
  assert "other-host-7" in str(e.value)
  assert str(_lock(tmp_path)) in str(e.value)
  assert _lock(tmp_path).exists()   # not ours to delete


def test_trainer_refuses_a_held_workdir_then_trains_once_it_is_stale(
    tmp_path):
  config = load_config("igm_texture.py:tiny")
  config.rounds, config.generate.num_images = 1, 0
  workdir = str(tmp_path)
  # A live run of this host: the test's parent process.
  _write_lock(tmp_path, host=socket.gethostname(), pid=os.getppid(),
              since=0.0)
  with pytest.raises(WorkdirError, match=f"pid {os.getppid()}"):
    igm.train_and_evaluate(config, workdir)
  assert not (tmp_path / "checkpoints").exists()
  assert json.loads(_lock(tmp_path).read_text())["pid"] == os.getppid()

  # That run is gone: the same command now trains.
  _write_lock(tmp_path, host=socket.gethostname(), pid=_dead_pid(),
              since=0.0)
  igm.train_and_evaluate(config, workdir)
  checkpoints = ckpt_lib.Checkpointer(workdir)
  try:
    assert checkpoints.latest_round() == 1
  finally:
    checkpoints.close()
  assert not _lock(tmp_path).exists()
