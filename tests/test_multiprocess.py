"""Two processes (2 CPU devices each, one 4-device mesh, gloo collectives)
train the tiny IGM texture, IGM faces (a dataset split over the hosts) and
ICL digits (with the WINN classifier, whose per-class thresholds need every
process's labels) configs end to end through `introjax.main`, and agree
with one process on the same 4-device mesh. Each process runs the three
configs in turn (tests/multiprocess_check.py), so three JAX processes start
in all.

What must match, and why not bit for bit: the cross-process sums run over
gloo, in another order than the in-process ones, so the float results
differ in the last bits; synthesis (Adam on the input, whose steps are
±learning_rate for any tiny gradient) amplifies that into small pixel
differences. So one round is compared: the critic/classifier weights after
training from the same start to 1e-3, the metrics to 1e-3 relative, the
step counts exactly; a checkpoint from two processes restores to the same
arrays as one from one process within those tolerances.
"""
import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np

from conftest import REPO, load_config, restore_latest, subprocess_env
from introjax import parallel
from introjax.training.icl import IntrospectiveClassifier
from introjax.training.igm import TextureIGM
from introjax.training.images import ImageIGM
from multiprocess_check import RUNS

# Seconds for all three configs (each had 600 s when it ran in processes of
# its own).
_TIMEOUT = 1800


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _launch(out, devices, log, **env):
  return subprocess.Popen(
      [sys.executable, str(REPO / "tests" / "multiprocess_check.py"),
       str(out)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True,
      env=subprocess_env(
          XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
          JAX_PLATFORMS="cpu", **env))


def _run_all(jobs):
  """Waits for every job; once one fails, the rest are stopped (a worker
  whose peer died would wait in a collective until the timeout)."""
  deadline = time.monotonic() + _TIMEOUT
  try:
    while time.monotonic() < deadline:
      codes = [job.poll() for job in jobs.values()]
      if None not in codes or any(c not in (None, 0) for c in codes):
        break
      time.sleep(0.5)
  finally:
    for job in jobs.values():
      if job.poll() is None:
        job.kill()
      job.wait()


def _sections(log):
  """A driver's log split at its `== <name> ==` lines."""
  sections, name = {}, None
  for line in log.splitlines(keepends=True):
    if line.startswith("== ") and line.strip()[3:-3] in RUNS:
      name = line.strip()[3:-3]
      sections[name] = ""
    elif name is not None:
      sections[name] += line
  return sections


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _assert_metrics_close(one, two):
  assert [m["round"] for m in one] == [m["round"] for m in two]
  for a, b in zip(one, two):
    assert a.keys() == b.keys()
    for key in a:
      if key == "round_seconds":
        continue
      # Synthesis numbers carry the amplified rounding (see above).
      loose = "synthesis" in key
      np.testing.assert_allclose(b[key], a[key], rtol=5e-2 if loose else 1e-3,
                                 atol=2e-2 if loose else 1e-4, err_msg=key)


def test_two_processes_match_one_process(tmp_path):
  port = _free_port()
  jobs, logs = {}, {}
  for rank in (0, 1, "single"):
    logs[rank] = tmp_path / f"process_{rank}.log"
    with open(logs[rank], "w") as log:
      if rank == "single":
        jobs[rank] = _launch(tmp_path / "1proc", 4, log)
      else:
        jobs[rank] = _launch(
            tmp_path / "2proc", 2, log,
            JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
            JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(rank))
  _run_all(jobs)
  logs = {rank: path.read_text() for rank, path in logs.items()}
  failed = [rank for rank, job in jobs.items() if job.returncode != 0]
  assert not failed, "\n".join(
      f"process {rank} exited {jobs[rank].returncode}:\n{logs[rank][-3000:]}"
      for rank in failed)
  sections = {rank: _sections(log) for rank, log in logs.items()}
  for rank in jobs:
    assert list(sections[rank]) == list(RUNS), rank
  # One log for the run: process 1 prints no progress lines.
  assert "round 1/1" in sections[0]["igm"]
  assert "round 1/" not in logs[1]
  assert "4 devices" in sections[0]["icl"]

  faces_config = load_config(RUNS["faces"][0])
  faces_config.data.max_images = 62
  for name, model in (
      ("igm", TextureIGM(load_config(RUNS["igm"][0]),
                         parallel.make_mesh(jax.devices()[:1]))),
      ("faces", ImageIGM(faces_config, parallel.make_mesh(jax.devices()[:1]))),
      ("icl", None)):
    one, two = tmp_path / "1proc" / name, tmp_path / "2proc" / name
    _assert_metrics_close(_metrics(one), _metrics(two))
    if model is None:
      config = load_config(RUNS["icl"][0])
      config.data.max_train = 402
      config.train.epochs_per_round = 1.0
      config.icl.variants = ("baseline", "icl", "winn")
      model = IntrospectiveClassifier(config,
                                      parallel.make_mesh(jax.devices()[:1]))
    items_one, round_one = restore_latest(model, one)
    items_two, round_two = restore_latest(model, two)
    assert round_one == round_two
    if name in ("igm", "faces"):
      jax.tree.map(lambda a, b: np.testing.assert_allclose(
          b, a, rtol=1e-3, atol=1e-3), items_one["critics"],
                   items_two["critics"])
      np.testing.assert_allclose(items_two["state"]["pool"].images,
                                 items_one["state"]["pool"].images, atol=5e-2)
    if name == "igm":
      assert (two / "samples" / "round_001.png").exists()
      assert (two / "samples" / "final_32x32.png").exists()
    elif name == "icl":
      for variant in config.icl.variants:
        jax.tree.map(lambda a, b: np.testing.assert_allclose(
            b, a, rtol=1e-3, atol=1e-3), items_one["variants"][variant][
                "params"], items_two["variants"][variant]["params"])
      results = [json.loads((tmp_path / n / "icl" / "results.json")
                            .read_text()) for n in ("1proc", "2proc")]
      assert results[0]["test_error"] == results[1]["test_error"]
