import os
import pathlib

import pytest

from introjax import config_utils

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_config(spec):
  """A config from configs/, e.g. 'igm_texture.py:tiny'."""
  return config_utils.load_config_file(str(REPO / "configs" / spec))


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
