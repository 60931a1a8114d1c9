r"""Trains an introspective model from a config file.

    python -m introjax.main --config=configs/igm_texture.py --workdir=runs/brick
    python -m introjax.main --config=configs/igm_texture.py:paper \
        --workdir=runs/brick_paper --config.data.image_path=pebbles.jpg

On a multi-host TPU pod every worker runs the same command and JAX finds
its peers itself. Elsewhere (several GPU hosts, or processes on one machine)
name them with flags or the matching environment variables:

    JAX_COORDINATOR_ADDRESS=host0:1234 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=0 \
        python -m introjax.main --config=... --workdir=...

Rerunning the same command resumes from the last complete round. The logic
lives in libraries (`introjax.training`) so notebooks can call
`train_and_evaluate(config, workdir)` directly.
"""
import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from introjax import cli
from introjax import config_utils
from introjax import paths
from introjax.errors import UserError
from introjax.members import MEMBERS

_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics "
                               "and sample images go.", required=True)
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A config file, optionally with a variant: "
    "configs/igm_texture.py:paper.", lock_config=True)

_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 for a multi-process "
    "run (default: $JAX_COORDINATOR_ADDRESS); unset on one host or a TPU pod.")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Processes of a multi-process run (default: "
    "$JAX_NUM_PROCESSES).")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "This process's index, 0 … num_processes - 1 "
    "(default: $JAX_PROCESS_ID).")


def _env_int(name):
  value = os.environ.get(name)
  if value is None:
    return None
  try:
    return int(value)
  except ValueError:
    raise UserError(f"${name}={value!r} is not an integer; set it to a "
                    "whole number or unset it.") from None


def distributed_settings():
  """(coordinator_address, num_processes, process_id) from the flags, else
  the environment; None where neither sets it."""
  return (_COORDINATOR.value or os.environ.get("JAX_COORDINATOR_ADDRESS"),
          _NUM_PROCESSES.value if _NUM_PROCESSES.value is not None
          else _env_int("JAX_NUM_PROCESSES"),
          _PROCESS_ID.value if _PROCESS_ID.value is not None
          else _env_int("JAX_PROCESS_ID"))


def _initialize_distributed():
  """Joins a multi-process run when one is named or detected; one host
  (laptop, single GPU) needs nothing and gets nothing."""
  address, num_processes, process_id = distributed_settings()
  if num_processes is not None or process_id is not None:
    if None in (address, num_processes, process_id):
      raise UserError(
          "A multi-process run needs all of --coordinator_address, "
          "--num_processes and --process_id (or $JAX_COORDINATOR_ADDRESS, "
          "$JAX_NUM_PROCESSES, $JAX_PROCESS_ID); set the missing ones.")
    if not 0 <= process_id < num_processes:
      raise UserError(f"--process_id={process_id} is not in 0 … "
                      f"{num_processes - 1}; number processes from 0.")
    jax.distributed.initialize(address, num_processes, process_id)
  else:
    try:  # cluster auto-detection (Cloud TPU pods, SLURM, Open MPI)
      jax.distributed.initialize()
    except (ValueError, RuntimeError):
      pass
  if jax.process_index() != 0:  # one log for the run
    logging.set_verbosity(logging.WARNING)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  config = _CONFIG.value
  if config.trainer not in MEMBERS:
    raise UserError(f"Unknown trainer {config.trainer!r} in the config; the "
                    f"known ones are {', '.join(MEMBERS)}.")
  paths.path(_WORKDIR.value)  # a gs:// workdir without its client: say so now
  _initialize_distributed()
  MEMBERS[config.trainer].train(config, _WORKDIR.value)


def run(argv=None):
  argv = config_utils.resolve_aliases(sys.argv if argv is None else argv)
  cli.run_app(main, argv, before=config_utils.check_overrides)


if __name__ == "__main__":
  run()
