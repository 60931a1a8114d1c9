import os
import pathlib
import tempfile

# One persistent compilation cache for the session's workers and the
# processes its tests start (set before JAX starts): the tiny configs
# compile the same programs in many tests, and a cache hit skips XLA. A
# hit is the program compiled from the same HLO, so results are unchanged.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    tempfile.gettempdir(), f"introjax-tests-xla-cache-{os.getuid()}"))
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 << 30))
# libtpu is installed for tests/test_aot.py's compiles; on a machine with no
# accelerator every JAX process would otherwise try to bring up a TPU first
# (and print libtpu's warnings). A TPU or GPU machine keeps JAX's own choice.
if not any(os.path.exists(d) for d in ("/dev/accel0", "/dev/vfio/0",
                                       "/dev/nvidia0")):
  os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # pylint: disable=wrong-import-position
import numpy as np
import pytest

from introjax import checkpoint as ckpt_lib
from introjax import config_utils

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_config(spec):
  """A config from configs/, e.g. 'igm_texture.py:tiny', without the
  end-of-run report (tests/test_report.py and one tiny run check it)."""
  config = config_utils.load_config_file(str(REPO / "configs" / spec))
  config.log.report = False
  return config


@pytest.fixture
def tiny_config():
  return load_config("igm_texture.py:tiny")


def subprocess_env(**extra):
  """The environment for a child Python that imports this checkout."""
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(
      [str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
  env.update(extra)
  return env


def restore_latest(model, workdir):
  """Every array of `workdir`'s latest checkpoint (restored with `model`'s
  targets), as numpy, and its round."""
  checkpoints = ckpt_lib.Checkpointer(workdir)
  try:
    latest = checkpoints.latest_round()
    meta = checkpoints.restore_meta(latest)
    items = checkpoints.restore(latest, model.restore_targets(meta))
  finally:
    checkpoints.close()
  return jax.device_get(items), latest


def assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)
