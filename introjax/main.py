r"""Trains an introspective model from a config file.

    python -m introjax.main --config=configs/igm_texture.py --workdir=runs/brick
    python -m introjax.main --config=configs/igm_texture.py:paper \
        --workdir=runs/brick_paper --config.data.image_path=pebbles.jpg

Rerunning the same command resumes from the last complete round. The logic
lives in libraries (`introjax.training`) so notebooks can call
`train_and_evaluate(config, workdir)` directly.
"""
from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from introjax import cli
from introjax import config_utils
from introjax.errors import UserError
from introjax.training import icl
from introjax.training import igm
from introjax.training import images
from introjax.training import winn

_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics "
                               "and sample images go.", required=True)
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A config file, optionally with a variant: "
    "configs/igm_texture.py:paper.", lock_config=True)

TRAINERS = {"igm": igm.train_and_evaluate, "icl": icl.train_and_evaluate,
            "winn": winn.train_and_evaluate,
            "igm_images": images.train_igm, "winn_images": images.train_winn}


def _maybe_initialize_distributed():
  """On a multi-host pod every worker runs this same command; one host
  (laptop, single GPU) needs nothing."""
  try:
    jax.distributed.initialize()
  except (ValueError, RuntimeError):
    pass


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  config = _CONFIG.value
  if config.trainer not in TRAINERS:
    raise UserError(f"Unknown trainer {config.trainer!r} in the config; the "
                    f"known ones are {', '.join(TRAINERS)}.")
  _maybe_initialize_distributed()
  TRAINERS[config.trainer](config, _WORKDIR.value)


def run(argv=None):
  cli.run_app(main, argv, before=config_utils.check_overrides)


if __name__ == "__main__":
  run()
