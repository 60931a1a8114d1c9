"""The round loop every introspective trainer shares: resume from the last
complete checkpoint, run rounds, checkpoint after each, log metrics and
progress, write sample images.

A trainer provides:
  state_keys                       config fields (beyond model.* and data.*)
                                   its checkpoints' arrays depend on
  init_state()                     the state before round 1
  checkpoint_items(state)          name -> pytree of arrays to save
  restore_targets(meta)            the same names -> abstract pytrees
  from_items(items)                the state from restored items
  run_round(state, t)              -> (state, metrics dict of host numbers)
  checkpoint_meta(state)           JSON-safe facts needed to restore
  write_samples(state, t, folder)  PNGs of round t (runs on every process;
                                   save_png writes on process 0 only)
  progress(t, rounds, metrics, s)  the terminal line of round t

Every trainer also gets `profile_round` (config.profile_round, 0: off; on the
command line also --config.profile_steps, the same key): round
N runs under the JAX profiler and its trace lands in <workdir>/profile, for
TensorBoard's profile plugin or xprof.

Every launch of the loop appends a line to <workdir>/launches.jsonl when it
starts (the devices it runs on: kind, count, processes, backend) and again
when it ends (the rounds it trained, its wall time); the later line of the
same start supersedes the first. A report can say what a resumed run's
rounds ran on.
"""
import contextlib
import datetime
import functools
import inspect
import json
import os
import time

from absl import logging
import jax

from introjax import checkpoint as ckpt_lib
from introjax import paths
from introjax import report as report_lib
from introjax import workdir_lock
from introjax.errors import WorkdirError
from introjax.metrics import MetricWriter


def prepare_workdir(workdir):
  """Creates `workdir` and proves it is writable."""
  # One probe per process: on a pod the workdir may be shared.
  probe = os.path.join(workdir, f".write_test_{jax.process_index()}")
  remote = paths.is_remote(workdir)
  paths.path(workdir)  # a missing cloud-storage client says so first
  try:
    paths.makedirs(workdir)
    paths.write_text(probe, "ok")
    paths.remove(probe)
  except Exception as e:  # pylint: disable=broad-except
    # A bucket fails in the client's own exceptions (credentials, HTTP),
    # not only in OSError.
    if not (remote or isinstance(e, OSError)):
      raise
    fix = ("check that the bucket exists and that this machine's "
           "credentials may write to it" if remote else
           "choose a folder you can write to")
    raise WorkdirError(
        f"Cannot write to --workdir={workdir} "
        f"({getattr(e, 'strerror', None) or e}); {fix}.") from e


def jsonable(tree):
  """`tree` (results with arrays and dataclasses in it) as plain JSON
  values."""
  return json.loads(json.dumps(tree, default=lambda o: (
      o.tolist() if hasattr(o, "tolist") else vars(o))))


def write_results(workdir, results, markdown=None):
  """<workdir>/results.json (what eval.final measured, JSON-safe) and, if
  given, results.md; process 0 writes, so a shared workdir gets one copy."""
  if jax.process_index() != 0:
    return
  path = os.path.join(workdir, "results.json")
  paths.write_text(path, json.dumps(results, indent=2))
  if markdown is not None:
    path = os.path.join(workdir, "results.md")
    paths.write_text(path, markdown)
  logging.info("Results in %s:\n%s", path,
               markdown if markdown is not None else json.dumps(results,
                                                                indent=2))


def write_report(workdir):
  """<workdir>/report (introjax/report.py) on process 0; a report that
  cannot be written is a warning: the run it describes is already saved."""
  if jax.process_index() != 0:
    return None
  try:
    path = report_lib.write_report(workdir)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("The run is saved but its report is not (%s: %s); "
                    "retry with python -m introjax.report --workdir=%s.",
                    type(e).__name__, e, workdir)
    return None
  logging.info("Report in %s", path)
  return path


def reports(train):
  """`train(..., config, workdir, ...)` that, when it returns, runs the
  eval.final evaluators that read the saved run (semisup) and writes the
  workdir's report (unless config.log.report is False): the one place
  every member's run ends."""
  signature = inspect.signature(train)

  @functools.wraps(train)
  def train_and_report(*args, **kwargs):
    out = train(*args, **kwargs)
    named = signature.bind(*args, **kwargs).arguments
    config, workdir = named["config"], named["workdir"]
    if jax.process_index() == 0:
      # introjax.evaluate reads saved runs, and imports this module.
      from introjax import evaluate  # pylint: disable=g-import-not-at-top
      evaluate.after_run(config, workdir)
    if config.get("log", {}).get("report", True):
      write_report(workdir)
    return out

  return train_and_report


def samples_dir(workdir):
  return os.path.join(workdir, "samples")


def profile_dir(workdir):
  return os.path.join(workdir, "profile")


LAUNCHES_NAME = "launches.jsonl"


def _now():
  return datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds")


def device_facts():
  """What this process's JAX runs on: backend, device kind and counts."""
  devices = jax.devices()
  return {"backend": jax.default_backend(),
          "device_kind": devices[0].device_kind,
          "device_count": len(devices),
          "process_count": jax.process_count(),
          "jax_version": jax.__version__}


def record_launch(workdir, launch):
  """Appends `launch` (JSON-safe) to <workdir>/launches.jsonl; process 0
  writes."""
  if jax.process_index() != 0:
    return
  paths.append_text(os.path.join(workdir, LAUNCHES_NAME),
                    json.dumps(launch) + "\n")


def _profiled(workdir, enabled):
  """A JAX profiler trace of the enclosed work into <workdir>/profile.

  Every process traces its own devices and host (no process decides for the
  others): on a pod each worker writes its own
  profile/plugins/profile/<time>/<host>.xplane.pb, into one folder when the
  workdir is shared (gs://…), else on each worker's disk.
  """
  if not enabled:
    return contextlib.nullcontext()
  return jax.profiler.trace(profile_dir(workdir))


def run_rounds(trainer, config, workdir):
  """Trains until `config.rounds` rounds are complete; returns the state.

  With `config.profile_round` = N > 0 (configs without the field: off), round
  N (training, checkpoint and samples) is traced into <workdir>/profile. Round
  1 includes compilation, so a later round shows the steady state. One run
  at a time holds the workdir (workdir_lock.py).
  """
  prepare_workdir(workdir)
  with workdir_lock.hold(workdir):
    return _run_rounds(trainer, config, workdir)


def _run_rounds(trainer, config, workdir):
  launch = {"started": _now(), "trainer": config.get("trainer"),
            **device_facts(), "first_round": None,
            "last_round": None, "rounds": config.rounds}
  began = time.perf_counter()
  record_launch(workdir, launch)  # so a report of a run in progress has it
  try:
    return _train_rounds(trainer, config, workdir, launch)
  finally:
    record_launch(workdir, {**launch, "ended": _now(),
                            "wall_seconds": time.perf_counter() - began})


def _train_rounds(trainer, config, workdir, launch):
  profile_round = config.get("profile_round", 0)
  config_dict = json.loads(config.to_json())
  checkpoints = ckpt_lib.Checkpointer(workdir)
  writer = MetricWriter(workdir)
  try:
    latest = checkpoints.latest_round()
    if latest is None:
      state, start = trainer.init_state(), 1
    else:
      meta = checkpoints.restore_meta(latest)
      ckpt_lib.check_compatible(
          meta["config"], config_dict,
          ckpt_lib.structural_keys(config, trainer.state_keys),
          checkpoints.directory)
      state = trainer.from_items(
          checkpoints.restore(latest, trainer.restore_targets(meta)))
      start = latest + 1
      logging.info("Resumed from round %d in %s.", latest,
                   checkpoints.directory)
    if (profile_round and start <= config.rounds
        and not start <= profile_round <= config.rounds):
      logging.warning("profile_round=%d is not among the rounds this run "
                      "trains (%d … %d); no profile is written.",
                      profile_round, start, config.rounds)
    for t in range(start, config.rounds + 1):
      began = time.perf_counter()
      with _profiled(workdir, t == profile_round):
        state, metrics = trainer.run_round(state, t)
        checkpoints.save(t, trainer.checkpoint_items(state),
                         {"round": t, "config": config_dict,
                          **trainer.checkpoint_meta(state)})
        # On every process: reading split arrays back is a collective (only
        # process 0 writes the PNGs).
        trainer.write_samples(state, t, samples_dir(workdir))
        if t == profile_round:
          # Dispatch is asynchronous: wait, so the trace holds the work.
          jax.block_until_ready(state)
      seconds = time.perf_counter() - began
      writer.write(t, {**metrics, "round_seconds": seconds})
      launch["first_round"] = launch["first_round"] or t
      launch["last_round"] = t
      logging.info("%s", trainer.progress(t, config.rounds, metrics, seconds))
  finally:
    checkpoints.close()
    writer.close()
  return state
