"""A saved model samples from its checkpoint alone: no training data read."""
import os

import jax
import numpy as np
from PIL import Image
import pytest

from conftest import load_config
from introjax import parallel
from introjax import saved
from introjax.errors import ImageError
from introjax.training.igm import TextureIGM, train_and_evaluate


@pytest.fixture(scope="module")
def trained_on_a_file(tmp_path_factory):
  """A 1-round tiny IGM run on an image file, and the file's path."""
  root = tmp_path_factory.mktemp("saved")
  path = str(root / "texture.png")
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 255, (24, 24), np.uint8)).save(path)
  config = load_config("igm_texture.py:tiny")
  config.rounds, config.generate.num_images = 1, 0
  config.data.image_path = path
  workdir = str(root / "run")
  train_and_evaluate(config, workdir)
  return workdir, path, config


def test_sampling_reads_no_data_and_matches_the_trained_model(
    trained_on_a_file):
  workdir, path, config = trained_on_a_file
  with_data, cascade, _ = saved.load_model(workdir, with_data=True)
  os.remove(path)   # sampling must not need it
  try:
    alone, cascade_alone, _ = saved.load_model(workdir)
    assert alone.positive is None
    for name in TextureIGM.SHAPES:
      assert getattr(alone, name) == getattr(with_data, name), name
    key = jax.random.PRNGKey(4)
    x_alone, _ = alone.generate(cascade_alone, 2, 24, key)
    x_data, _ = with_data.generate(cascade, 2, 24, key)
    np.testing.assert_array_equal(x_alone, x_data)
    # Training, which needs the positives, still says where they are.
    with pytest.raises(ImageError):
      TextureIGM(config, parallel.make_mesh())
  finally:
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(path)
