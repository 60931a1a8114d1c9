"""IGM and WINN on datasets of whole images: the loaders, the ResNet critic,
and tiny runs end to end (bundled faces; SVHN and CIFAR-10 through
`tfds.testing.mock_data`).

The face runs share one trainer, so XLA compiles its steps once.
"""
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from conftest import assert_trees_equal, load_config, restore_latest
from introjax import parallel
from introjax.data import datasets
from introjax.errors import ConfigError, ConfigMismatchError, DataError
from introjax.models import cascade as cascade_lib
from introjax.models import critics
from introjax.training import igm
from introjax.training import images


def train(model, workdir, config=None):
  """`images.train_winn`/`train_igm` with an already compiled trainer."""
  return igm.train_texture(lambda config, mesh: model, config or model.config,
                           workdir)


def read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def data_config(**fields):
  return ml_collections.ConfigDict(fields)


# Loaders ---------------------------------------------------------------------


def test_lfw_subset_is_the_bundled_faces_resized_to_32():
  import skimage.data
  faces, name, total = datasets.load_images(data_config(source="lfw_subset",
                                                        image_size=32))
  # scikit-image's set is 100 faces, then 100 non-faces: only the faces.
  assert name == "lfw_subset" and total == 100
  assert faces.shape == (100, 32, 32, 1) and faces.dtype == np.uint8
  raw = np.round(skimage.data.lfw_subset() * 255).astype(np.uint8)
  native, _, _ = datasets.load_images(data_config(source="lfw_subset"))
  np.testing.assert_array_equal(native[..., 0], raw[:100])
  # Faces look like the mean face; the background crops do not.
  mean_face = raw[:100].mean(0)
  def likeness(images):  # a blank crop (no variance) is no likeness
    return np.median([np.corrcoef(i.ravel(), mean_face.ravel())[0, 1]
                      if i.std() else 0.0 for i in images])
  assert likeness(native[..., 0]) > 0.5 > 0.0 > likeness(raw[100:])
  raw = raw[7]
  expected = np.asarray(Image.fromarray(raw).resize((32, 32), Image.BICUBIC))
  np.testing.assert_array_equal(faces[7, ..., 0], expected)
  rgb, _, _ = datasets.load_images(data_config(source="lfw_subset",
                                               channels=3, max_images=5))
  assert rgb.shape == (5, 25, 25, 3)
  np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])
  # One process's rows: only those are kept; an empty share keeps the shape.
  part, _, total = datasets.load_images(
      data_config(source="lfw_subset", image_size=32), rows=lambda n: (7, 9))
  assert total == 100
  np.testing.assert_array_equal(part, faces[7:9])
  none, _, _ = datasets.load_images(
      data_config(source="lfw_subset", image_size=32),
      rows=lambda n: (n, n + 8))
  assert none.shape == (0, 32, 32, 1)


def test_celeb_a_is_centre_cropped_as_it_is_decoded():
  with tfds.testing.mock_data(num_examples=3):
    raw = tfds.data_source("celeb_a", split="train", download=False)
    crops, name, total = datasets.load_images(data_config(
        source="tfds", name="celeb_a", split="train", crop=64,
        image_size=64))
    framed, _, _ = datasets.load_images(data_config(
        source="tfds", name="celeb_a", crop=108, image_size=64,
        channels=1))
    last, _, _ = datasets.load_images(data_config(
        source="tfds", name="celeb_a", split="train", crop=64,
        image_size=64), rows=lambda n: (2, 4))
    empty, _, _ = datasets.load_images(data_config(
        source="tfds", name="celeb_a", split="train", crop=64,
        image_size=64), rows=lambda n: (4, 8))
    originals = [np.asarray(raw[i]["image"]) for i in range(3)]
  assert name == "tfds:celeb_a" and crops.shape == (3, 64, 64, 3)
  assert total == 3
  np.testing.assert_array_equal(last, crops[2:])
  assert empty.shape == (0, 64, 64, 3)
  for crop, original in zip(crops, originals):
    h, w = original.shape[:2]   # 218×178
    top, left = (h - 64) // 2, (w - 64) // 2
    np.testing.assert_array_equal(crop,
                                  original[top:top + 64, left:left + 64])
  assert framed.shape == (3, 64, 64, 1)


def test_split_slices_hold_out_the_tail_of_a_one_split_dataset():
  # celeb_a_hq has only 'train': the 256²+ configs train on train[:29000]
  # and hold out train[29000:], as the official scripts do.
  config = load_config("introvae_celeba.py:256")
  assert (config.data.split, config.data.eval_split) == ("train[:29000]",
                                                         "train[29000:]")
  shapes = [datasets.tfds_split_shape("celeb_a_hq/256", s)
            for s in (config.data.split, config.data.eval_split)]
  assert shapes == [((256, 256, 3), 29000), ((256, 256, 3), 1000)]
  assert datasets.tfds_split_shape("cifar10", "train[90%:]+test")[1] == 15000
  with pytest.raises(DataError, match="has no split 'test'; use one of train"):
    datasets.tfds_split_shape("celeb_a_hq/256", "test")
  # The loader reads the same slices.
  with tfds.testing.mock_data(num_examples=5):
    head, _, _ = datasets.load_images(data_config(
        source="tfds", name="celeb_a", split="train[:3]", crop=64,
        image_size=64))
    tail, _, total = datasets.load_images(data_config(
        source="tfds", name="celeb_a", split="train[3:]", crop=64,
        image_size=64))
    whole, _, _ = datasets.load_images(data_config(
        source="tfds", name="celeb_a", split="train", crop=64,
        image_size=64))
  assert head.shape[0] == 3 and tail.shape[0] == total == 2
  np.testing.assert_array_equal(np.concatenate([head, tail]), whole)


def test_unusable_data_is_one_sentence():
  with pytest.raises(DataError, match="is not prepared in .* never "
                     "downloads"):
    datasets.load_images(data_config(source="tfds", name="svhn_cropped",
                                     data_dir="/nonexistent/tfds"))
  with pytest.raises(DataError, match="data.crop=40 is larger than the "
                     "25×25 images"):
    datasets.load_images(data_config(source="lfw_subset", crop=40))
  with pytest.raises(DataError, match="Unknown image source"):
    datasets.load_images(data_config(source="faces"))


# The ResNet critic ------------------------------------------------------------


def test_resnet_critic_shape_parameters_and_batch_independence():
  model = ml_collections.ConfigDict(dict(name="resnet_critic", features=16,
                                         norm="layer"))
  critic = critics.build_critic(model)
  params = critics.init_critic(critic, jax.random.PRNGKey(0), (32, 32, 3))
  f, c = 16, 3
  conv = lambda k, cin: k * k * cin * f + f
  expected = (conv(3, c) + conv(3, f) + conv(1, c)          # first block
              + 2 * conv(3, f) + conv(1, f) + 2 * 2 * f     # down block
              + 2 * (2 * conv(3, f) + 2 * 2 * f)           # two plain blocks
              + f + 1)                                      # the logit
  assert sum(p.size for p in jax.tree.leaves(params)) == expected
  x = jax.random.uniform(jax.random.PRNGKey(1), (6, 32, 32, 3), jnp.float32,
                         -1, 1)
  logits = critics.critic_logits(critic)
  batch = logits(params, x)
  assert batch.shape == (6,) and batch.dtype == jnp.float32
  # A sample's logit does not depend on the rest of the batch.
  alone = jnp.concatenate([logits(params, x[i:i + 1]) for i in range(6)])
  np.testing.assert_allclose(batch, alone, rtol=1e-5, atol=1e-5)
  order = np.array([3, 0, 5, 1, 4, 2])
  np.testing.assert_allclose(logits(params, x[order]), batch[order],
                             rtol=1e-5, atol=1e-5)
  with pytest.raises(ConfigError, match="model.features"):
    critics.build_critic(ml_collections.ConfigDict(dict(
        name="resnet_critic", features=(16, 32), norm="layer")))


# Faces end to end ------------------------------------------------------------


@pytest.fixture(scope="module")
def faces():
  return images.ImageWINN(load_config("winn_celeba.py:tiny"),
                          parallel.make_mesh())


@pytest.fixture(scope="module")
def face_runs(faces, tmp_path_factory):
  """A finished tiny WINN-single run on the bundled faces, and one killed
  in round 2 (resumed by the test that needs it)."""
  full = str(tmp_path_factory.mktemp("full"))
  state = train(faces, full)
  killed = str(tmp_path_factory.mktemp("killed"))
  real_round = faces.run_round

  def killed_in_round_2(state, t):
    if t == 2:
      raise KeyboardInterrupt("killed")
    return real_round(state, t)

  faces.run_round = killed_in_round_2
  try:
    with pytest.raises(KeyboardInterrupt):
      train(faces, killed)
  finally:
    del faces.run_round
  round_1, last = restore_latest(faces, killed)
  assert last == 1
  return dict(full=full, state=state, killed=killed, round_1=round_1)


def test_positives_are_whole_dataset_images(faces):
  pos = faces.positive_patches(jax.random.PRNGKey(2), 12, 16)
  assert pos.shape == (12, 16, 16, 1)
  data = np.asarray(faces.positive, np.float32) / 127.5 - 1.0
  for p in np.asarray(pos):
    assert np.abs(data - p).max(axis=(1, 2, 3)).min() < 1e-6
  # With flips every positive is an image or its mirror, and both occur.
  config = load_config("winn_celeba.py:tiny")
  config.data.flip = True
  flipping = images.ImageWINN(config, parallel.make_mesh())
  pos = np.asarray(flipping.positive_patches(jax.random.PRNGKey(2), 64, 16))
  as_is = [np.abs(data - p).max(axis=(1, 2, 3)).min() < 1e-6 for p in pos]
  mirrored = [np.abs(data[:, :, ::-1] - p).max(axis=(1, 2, 3)).min() < 1e-6
              for p in pos]
  assert all(a or m for a, m in zip(as_is, mirrored))
  assert 0 < sum(as_is) < 64 and 0 < sum(mirrored) < 64


def test_compiled_steps_take_the_dataset_as_an_argument(faces):
  """No compiled step holds its own copy of the dataset: a jitted function
  that closed over it would carry it as a constant of its program."""
  state = faces.init_state()
  key = jax.random.PRNGKey(0)
  steps = {
      "classification": (faces._train_critic_fn, (
          faces.positive, state.critic, state.opt_state, state.pool, key, 1)),
      "synthesis": (faces._synthesize_fn, (
          faces.positive, state.critic, state.negatives, key))}
  for name, (step, args) in steps.items():
    consts = jax.make_jaxpr(step)(*args).consts
    assert all(np.size(c) < faces.positive.size for c in consts), name


def test_face_run_learns_and_writes_checkpoints_samples_and_swd(faces,
                                                                face_runs):
  rounds = read_metrics(face_runs["full"])
  assert [r["round"] for r in rounds] == [1, 2, 3]
  for r in rounds:
    assert np.isfinite(r["swd_mean"]) and "swd_16" in r
    assert r["synthesis_logit_end"] > r["synthesis_logit_start"]
  # The final critic scores real faces above round 1's negatives and the
  # final negatives above round 1's: they moved towards the data.
  final = cascade_lib.critic(face_runs["state"].cascade, 0)
  f = lambda x: float(jnp.mean(faces.logits(final, x)))
  first = face_runs["round_1"]["state"]["negatives"]
  assert f(face_runs["state"].negatives) > f(first)
  assert f(faces.positive_patches(jax.random.PRNGKey(0), 64, 16)) > f(first)
  samples = set(os.listdir(os.path.join(face_runs["full"], "samples")))
  assert {"round_001.png", "round_003.png", "final_16x16.png"} <= samples
  # The final grid: 4 new 16×16 faces, 2×2 with 2-pixel gaps.
  grid = Image.open(os.path.join(face_runs["full"], "samples",
                                 "final_16x16.png"))
  assert grid.size == (34, 34)
  assert os.path.isdir(os.path.join(face_runs["full"], "checkpoints", "3"))


def test_face_run_resumes_to_the_uninterrupted_result(faces, face_runs):
  train(faces, face_runs["killed"])
  resumed, last = restore_latest(faces, face_runs["killed"])
  expected, _ = restore_latest(faces, face_runs["full"])
  assert last == 3
  assert_trees_equal(resumed, expected)


def test_checkpoint_of_other_images_is_refused(face_runs):
  config = load_config("winn_celeba.py:tiny")
  config.data.image_size = 32
  config.rounds = 4
  with pytest.raises(ConfigMismatchError,
                     match="data.image_size=16 but the config now says "
                     "data.image_size=32"):
    images.train_winn(config, face_runs["full"])


# SVHN and CIFAR-10 through mock TFDS ------------------------------------------


def test_winn_cascade_on_mock_cifar10(tmp_path):
  config = load_config("winn_cifar10.py:tiny")
  config.cascade.critics, config.rounds = 2, 2
  with tfds.testing.mock_data(num_examples=64):
    state = images.train_winn(config, str(tmp_path))
  assert config.model.name == "resnet_critic" and config.data.flip
  # Two critics (eq. 8), SWD per round, a grid of new 16×16 colour images.
  assert int(state.cascade.count) == 2
  assert state.negatives.shape == (8, 16, 16, 3)
  rounds = read_metrics(str(tmp_path))
  assert [r["round"] for r in rounds] == [1, 2]
  assert all(np.isfinite(r["swd_mean"]) for r in rounds)
  grid = Image.open(tmp_path / "samples" / "final_16x16.png")
  assert grid.size == (34, 34) and grid.mode == "RGB"


def test_igm_on_mock_svhn_stops_at_the_decision_boundary(tmp_path):
  config = load_config("igm_svhn.py:tiny")
  with tfds.testing.mock_data(num_examples=64):
    state = images.train_igm(config, str(tmp_path))
  # IGM: a new critic every round; each sample stops once its logit crosses 0.
  assert int(state.cascade.count) == 2
  rounds = read_metrics(str(tmp_path))
  for r in rounds:
    assert np.isfinite(r["swd_mean"])
    if r["synthesis_stopped_early"] == r["synthesis_samples"]:
      assert r["synthesis_logit_end"] > 0
  # Every sample that stopped is frozen where the last critic scored it
  # across the boundary.
  logits = critics.critic_logits(critics.build_critic(config.model))
  last = cascade_lib.critic(state.cascade, int(state.cascade.count) - 1)
  above = int((np.asarray(logits(last, state.negatives)) > 0).sum())
  assert above >= rounds[-1]["synthesis_stopped_early"] > 0
  assert os.path.exists(tmp_path / "samples" / "final_16x16.png")


def test_every_image_config_variant_loads():
  for name, variants in (("winn_celeba.py", ("", "celeba", "paper", "tiny")),
                         ("winn_svhn.py", ("", "paper", "tiny")),
                         ("winn_cifar10.py", ("", "paper", "tiny")),
                         ("igm_celeba.py", ("", "celeba", "paper", "tiny")),
                         ("igm_svhn.py", ("", "paper", "tiny"))):
    for variant in variants:
      config = load_config(name + (f":{variant}" if variant else ""))
      assert config.trainer in ("igm_images", "winn_images")
    with pytest.raises(ValueError, match="Unknown variant"):
      load_config(name + ":nope")
  assert load_config("winn_svhn.py:paper").model.features == 128
  assert load_config("igm_svhn.py:paper").data.split == "train+extra"
  assert load_config("winn_celeba.py:celeba").data.crop == 64


def test_image_size_app_d_cannot_make_is_refused():
  config = load_config("winn_celeba.py:tiny")
  config.data.image_size = 0   # lfw_subset's own 25×25
  with pytest.raises(ConfigError, match="cannot make 25×25; use a "
                     "data.image_size of 4·2"):
    images.ImageWINN(config, parallel.make_mesh())
