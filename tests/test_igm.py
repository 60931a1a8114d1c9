"""The IGM trainer end to end on the tiny config: learning, outputs, resume,
and every bad input stopping with one sentence while checkpoints survive."""
import copy
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from conftest import (REPO, assert_trees_equal, load_config, restore_latest,
                      subprocess_env)
from introjax import parallel
from introjax.data.images import texture_canvas
from introjax.models import cascade as cascade_lib
from introjax.errors import (ConfigMismatchError, ImageError, NonFiniteError,
                             WorkdirError)
from introjax.sampling import anysize
from introjax.training.igm import TextureIGM, train_and_evaluate


def restore_all(workdir, config):
  """Every array of the latest checkpoint, as numpy, and its round."""
  return restore_latest(TextureIGM(config, parallel.make_mesh()), workdir)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A finished 2-round tiny IGM run."""
  config = load_config("igm_texture.py:tiny")
  workdir = str(tmp_path_factory.mktemp("igm"))
  state = train_and_evaluate(config, workdir)
  return config, workdir, state


def test_tiny_run_learns_and_writes_its_outputs(trained):
  config, workdir, state = trained
  model = TextureIGM(config, parallel.make_mesh())
  # Round 1's critic, trained on the texture against p0's noise, separates
  # positive patches from fresh noise.
  first = cascade_lib.critic(state.cascade, 0)
  critic = lambda x: model.logits(first, x)
  positives = anysize.extract_patches(
      model.positive, anysize.random_origins(
          jax.random.PRNGKey(0), 1, 64, model.canvas_shape[:2], model.patch),
      model.patch)
  noise = 0.3 * jax.random.normal(jax.random.PRNGKey(1), positives.shape)
  accuracy = (jnp.mean(critic(positives) > 0) + jnp.mean(critic(noise) < 0)) / 2
  assert accuracy > 0.9
  # Every round's synthesis raised the mean logit of its negatives.
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rounds = [json.loads(line) for line in f]
  assert [r["round"] for r in rounds] == [1, 2]
  for r in rounds:
    assert r["synthesis_logit_end"] > r["synthesis_logit_start"]
  # The cascade holds one critic per round.
  assert int(state.cascade.count) == state.cascade.capacity == config.rounds
  samples = os.listdir(os.path.join(workdir, "samples"))
  assert {"round_001.png", "round_002.png", "final_32x32.png"} <= set(samples)
  final = Image.open(os.path.join(workdir, "samples", "final_32x32.png"))
  assert final.size == (32, 32)
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))


def test_igm_single_keeps_one_critic(tmp_path, tiny_config):
  tiny_config.igm.single = True
  tiny_config.generate.num_images = 0
  state = train_and_evaluate(tiny_config, str(tmp_path))
  assert int(state.cascade.count) == state.cascade.capacity == 1


def test_resumed_run_equals_uninterrupted_run(trained, tmp_path, monkeypatch):
  config, uninterrupted, _ = trained
  config = load_config("igm_texture.py:tiny")
  workdir = str(tmp_path)
  real_round = TextureIGM.run_round

  def killed_in_round_2(self, state, t):
    if t == 2:
      raise KeyboardInterrupt("killed")
    return real_round(self, state, t)

  monkeypatch.setattr(TextureIGM, "run_round", killed_in_round_2)
  with pytest.raises(KeyboardInterrupt):
    train_and_evaluate(config, workdir)
  monkeypatch.setattr(TextureIGM, "run_round", real_round)
  assert restore_all(workdir, config)[1] == 1
  train_and_evaluate(config, workdir)
  resumed, last = restore_all(workdir, config)
  expected, _ = restore_all(uninterrupted, config)
  assert last == 2
  assert_trees_equal(resumed, expected)


def test_sample_and_style_transfer_from_saved_model(trained):
  config, workdir, state = trained
  model = TextureIGM(config, parallel.make_mesh())
  textures, stats = model.generate(state.cascade, 2, 40, jax.random.PRNGKey(3))
  assert textures.shape == (2, 40, 40, 1)
  assert np.isfinite(textures).all() and np.abs(textures).max() <= 1.0
  assert stats.steps.shape == (config.rounds, 2)

  content = jnp.linspace(-0.5, 0.5, 30 * 30).reshape(30, 30, 1)
  kept, _ = model.stylize(state.cascade, content, 1.0, 5,
                          jax.random.PRNGKey(0))
  np.testing.assert_allclose(kept, content, atol=1e-6)  # α=1: fidelity only
  styled, stats = model.stylize(state.cascade, content, 0.3, 5,
                                jax.random.PRNGKey(0))
  assert styled.shape == content.shape
  assert not np.allclose(styled, content, atol=1e-3)
  assert np.all(stats.last_logit > stats.first_logit)


def test_generation_ignores_the_unused_part_of_the_cascade(trained):
  config, _, state = trained
  model = TextureIGM(config, parallel.make_mesh())
  first = cascade_lib.critic(state.cascade, 0)
  alone = cascade_lib.put(cascade_lib.empty_cascade(first, 1), first, 0)
  roomy = cascade_lib.put(cascade_lib.empty_cascade(first, 3), first, 0)
  key = jax.random.PRNGKey(5)
  x_alone, stats_alone = model.generate(alone, 2, 24, key)
  x_roomy, stats_roomy = model.generate(roomy, 2, 24, key)
  np.testing.assert_array_equal(x_alone, x_roomy)
  np.testing.assert_array_equal(stats_alone.steps[0], stats_roomy.steps[0])
  assert not stats_roomy.steps[1:].any()


def test_resuming_with_more_rounds_grows_the_cascade(trained, tmp_path):
  config, workdir, state = trained
  shutil.copytree(workdir, tmp_path / "more")
  config = copy.deepcopy(config)
  config.rounds += 1
  config.generate.num_images = 0
  longer = train_and_evaluate(config, str(tmp_path / "more"))
  assert int(longer.cascade.count) == longer.cascade.capacity == config.rounds
  for i in range(config.rounds - 1):
    assert_trees_equal(cascade_lib.critic(longer.cascade, i),
                       cascade_lib.critic(state.cascade, i))


def run_cli(module, *args):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO,
                        env=subprocess_env(), capture_output=True, text=True,
                        timeout=300)


def test_sample_command_writes_png(trained, tmp_path):
  _, workdir, _ = trained
  out = str(tmp_path / "s.png")
  result = run_cli("introjax.sample", f"--workdir={workdir}", "--size=40",
                   "--num_images=1", f"--out={out}")
  assert result.returncode == 0, result.stderr
  assert Image.open(out).size == (40, 40)
  # Only the first critic of the two; a third is refused in one sentence.
  result = run_cli("introjax.sample", f"--workdir={workdir}", "--size=24",
                   "--critics=1", f"--out={out}")
  assert result.returncode == 0, result.stderr
  assert "with round 2's 1 critic(s)" in result.stderr
  result = run_cli("introjax.sample", f"--workdir={workdir}", "--critics=3")
  assert result.returncode != 0
  assert "has 2 trained critic(s); ask for between 1 and 2, not 3" in (
      result.stderr)
  assert "Traceback" not in result.stderr


def test_unknown_config_key_names_valid_keys(tmp_path):
  result = run_cli("introjax.main", "--config=configs/igm_texture.py:tiny",
                   f"--workdir={tmp_path}", "--config.igm.patchsize=8")
  assert result.returncode != 0
  assert "Unknown config key igm.patchsize" in result.stderr
  assert "igm.patch_size" in result.stderr
  assert "Traceback" not in result.stderr


@pytest.mark.parametrize("make_source, message", [
    (lambda d: str(d / "missing.png"), "does not exist"),
    (lambda d: _write(d / "junk.png", b"not a png"), "Could not read"),
    (lambda d: _small_png(d / "small.png", 12), "smaller than the 16×16"),
])
def test_bad_image_is_one_clear_sentence(tmp_path, tiny_config, make_source,
                                         message):
  tiny_config.data.image_path = make_source(tmp_path)
  tiny_config.data.image_size = 0  # keep the file's own size
  with pytest.raises(ImageError, match=message):
    train_and_evaluate(tiny_config, str(tmp_path / "run"))


def _write(path, data):
  path.write_bytes(data)
  return str(path)


def _small_png(path, side):
  Image.fromarray(np.zeros((side, side), np.uint8)).save(path)
  return str(path)


def test_image_resized_below_patch_is_refused(tmp_path, tiny_config):
  tiny_config.data.image_size = 8
  with pytest.raises(ImageError, match="resized to 8 pixels"):
    train_and_evaluate(tiny_config, str(tmp_path))


def test_unwritable_workdir(tmp_path, tiny_config):
  blocker = tmp_path / "file"
  blocker.write_text("x")
  with pytest.raises(WorkdirError, match="Cannot write to --workdir"):
    train_and_evaluate(tiny_config, str(blocker / "run"))


@pytest.fixture
def one_round(tmp_path):
  """A workdir with round 1 complete, and its checkpoint's arrays."""
  config = load_config("igm_texture.py:tiny")
  config.rounds, config.generate.num_images = 1, 0
  workdir = str(tmp_path)
  train_and_evaluate(config, workdir)
  return workdir, restore_all(workdir, config)[0]


def test_incompatible_checkpoint_is_refused_and_kept(one_round, tiny_config):
  workdir, saved = one_round
  tiny_config.model.features = (8, 32)
  with pytest.raises(ConfigMismatchError, match="model.features"):
    train_and_evaluate(tiny_config, workdir)
  config = load_config("igm_texture.py:tiny")
  restored, last = restore_all(workdir, config)
  assert last == 1
  assert_trees_equal(restored, saved)


@pytest.mark.parametrize("overrides, message", [
    ({"train.learning_rate": 1e30}, "lower train.learning_rate"),
    ({"synthesis.learning_rate": 1e38, "synthesis.clip": 0.0},
     "lower synthesis.learning_rate"),
])
def test_nonfinite_values_stop_the_run_and_keep_checkpoint(
    one_round, tiny_config, overrides, message):
  workdir, saved = one_round
  for key, value in overrides.items():
    section, field = key.split(".")
    tiny_config[section][field] = value
  with pytest.raises(NonFiniteError, match=message):
    train_and_evaluate(tiny_config, workdir)
  config = load_config("igm_texture.py:tiny")
  restored, last = restore_all(workdir, config)
  assert last == 1
  assert_trees_equal(restored, saved)


def test_positive_canvas_is_reflect_padded():
  image = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
  canvas = texture_canvas(image, 2)
  assert canvas.shape == (8, 8, 1)
  np.testing.assert_array_equal(canvas[2:6, 2:6], image)
  np.testing.assert_array_equal(canvas[1, 2:6], image[1])
