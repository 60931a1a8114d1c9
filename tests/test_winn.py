"""The WINN texture trainer end to end on the tiny config: learning,
outputs, resume, a cascade of two critics, and a NaN gradient penalty
stopping with one sentence while the checkpoint survives.

Most tests share one trainer, so XLA compiles its steps once.
"""
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
from introjax.errors import NonFiniteError
from introjax.models import cascade as cascade_lib
from introjax.models import winn as winn_models
from introjax.objectives import wasserstein
from introjax.sampling import anysize
from introjax.sampling import p0
from introjax.training import igm
from introjax.training.winn import TextureWINN, train_and_evaluate


def train(model, workdir, config=None):
  """`winn.train_and_evaluate` with an already compiled trainer."""
  return igm.train_texture(lambda config, mesh: model, config or model.config,
                           workdir)


@pytest.fixture(scope="module")
def model():
  return TextureWINN(load_config("winn_texture.py:tiny"), parallel.make_mesh())


@pytest.fixture(scope="module")
def runs(model, tmp_path_factory):
  """A finished tiny WINN-single run, and one killed in round 2 whose
  round-1 checkpoint is returned as the kill left it."""
  full = str(tmp_path_factory.mktemp("full"))
  state = train(model, full)
  killed = str(tmp_path_factory.mktemp("killed"))
  real_round = model.run_round

  def killed_in_round_2(state, t):
    if t == 2:
      raise KeyboardInterrupt("killed")
    return real_round(state, t)

  model.run_round = killed_in_round_2
  try:
    with pytest.raises(KeyboardInterrupt):
      train(model, killed)
  finally:
    del model.run_round
  round_1, last = restore_latest(model, killed)
  assert last == 1
  return dict(full=full, state=state, killed=killed, round_1=round_1)


def test_tiny_run_learns_and_writes_its_outputs(model, runs):
  with open(os.path.join(runs["full"], "metrics.jsonl")) as f:
    rounds = [json.loads(line) for line in f]
  assert [r["round"] for r in rounds] == [1, 2, 3]
  for r in rounds:
    # SWD to real patches is logged every round; each round's synthesis
    # climbed the critic's logit.
    assert np.isfinite(r["swd_mean"]) and "swd_16" in r
    assert r["synthesis_logit_end"] > r["synthesis_logit_start"]
    assert r["synthesis_threshold_min"] <= r["synthesis_threshold_max"]
  # At 16×16 with 8 negatives SWD cannot show learning: two draws of real
  # patches already differ by 40–140 and p0 is only ~190–220 away, while
  # a few tiny rounds move it by less than its round-to-round noise. So learning
  # is judged on the critic: the final critic's Wasserstein estimate
  # E f(x⁺) − E f(x⁻) is smaller for the final negatives than for round
  # 1's, i.e. the final negatives are closer to the data in its eyes.
  final = cascade_lib.critic(runs["state"].cascade, 0)
  f = lambda x: float(jnp.mean(model.logits(final, x)))
  first = runs["round_1"]["state"]["negatives"]
  assert f(runs["state"].negatives) > f(first) + 0.1
  positives = anysize.crop(
      model.positive, jnp.zeros(64, jnp.int32),
      anysize.random_origins(jax.random.PRNGKey(0), 1, 64,
                             model.canvas_shape[:2], model.patch)[0],
      model.patch)
  assert f(positives) > f(first)
  # WINN-single keeps one critic; PNGs of every round and the final texture.
  assert int(runs["state"].cascade.count) == 1
  samples = os.listdir(os.path.join(runs["full"], "samples"))
  assert {"round_001.png", "round_003.png", "final_32x32.png"} <= set(samples)
  final_png = Image.open(os.path.join(runs["full"], "samples",
                                      "final_32x32.png"))
  assert final_png.size == (32, 32)


def test_round_thresholds_lie_between_positive_logits(model, runs):
  """Round 3's synthesis replayed with its key and critic: every negative
  had its own threshold, drawn between the lowest and highest mean patch
  logit of the positives the rule scored, and stopped once above it."""
  state, t = runs["state"], 3
  _, k_syn, k_init = jax.random.split(jax.random.fold_in(model.base_key, t),
                                      3)
  start = model.initial_negatives(k_init, model.config.negatives.per_round)
  negatives, stats, thresholds = model._synthesize(model.positive,
                                                   state.critic, start, k_syn)
  np.testing.assert_array_equal(negatives, state.negatives)
  thresholds = np.asarray(thresholds)
  with open(os.path.join(runs["full"], "metrics.jsonl")) as f:
    logged = [json.loads(line) for line in f][t - 1]
  assert logged["synthesis_threshold_min"] == pytest.approx(thresholds.min())
  assert logged["synthesis_threshold_max"] == pytest.approx(thresholds.max())
  # The positives the rule scored, each patch through the critic alone.
  n = model.config.synthesis.threshold_positives
  patches = model._patches_for(model.negative_shape[:2])
  k_pos, _ = jax.random.split(jax.random.fold_in(k_syn, 1))
  crops = np.asarray(model.positive_patches(k_pos, n * patches, model.patch))
  scores = np.array([float(model.logits(state.critic, crop[None])[0])
                     for crop in crops]).reshape(n, patches).mean(axis=1)
  assert scores.min() <= thresholds.min() and thresholds.max() <= scores.max()
  assert len(np.unique(thresholds)) == len(thresholds) == len(negatives)
  # A sample stops once above its own threshold; one that never got there
  # ran to the cap, its last score still at or below it.
  stopped, last = np.asarray(stats.stopped), np.asarray(stats.last_logit)
  assert np.all(last[stopped] > thresholds[stopped])
  assert np.all(last[~stopped] <= thresholds[~stopped])
  assert np.all(np.asarray(stats.steps)[~stopped]
                == model.settings.max_steps)


def test_resumed_run_equals_uninterrupted_run(model, runs):
  train(model, runs["killed"])
  resumed, last = restore_latest(model, runs["killed"])
  expected, _ = restore_latest(model, runs["full"])
  assert last == 3
  assert_trees_equal(resumed, expected)


def test_p0_canvases_extend_the_app_d_initialiser(model):
  # At the patch size the canvas initialiser is App. D's network itself.
  key = jax.random.PRNGKey(4)
  shape = (16, 16, 1)
  net_key, z_key = jax.random.split(key)
  ours = p0.upsampling(z_key, 8, shape, network_key=net_key, patch=16)
  np.testing.assert_allclose(
      ours, winn_models.initial_negatives(key, 8, shape), atol=1e-5)
  # A larger canvas is one sample per image, in [−1, 1], of the same net.
  big = model.initial_negatives(key, 2, (40, 40, 1))
  assert big.shape == (2, 40, 40, 1)
  # Each image min-max rescaled onto [−1, 1] (to within float rounding).
  assert -1.0 <= float(big.min()) and float(big.max()) <= 1.0
  np.testing.assert_allclose(big.min(axis=(1, 2, 3)), -1.0, atol=1e-6)
  np.testing.assert_allclose(big.max(axis=(1, 2, 3)), 1.0, atol=1e-6)
  assert not np.allclose(big[:, :16, :16], big[:, 16:32, 16:32], atol=0.1)


def test_cascade_of_two_critics(tmp_path):
  config = load_config("winn_texture.py:tiny")
  config.cascade.critics, config.rounds = 2, 4
  config.generate.num_images = 0
  model = TextureWINN(config, parallel.make_mesh())
  full, killed = str(tmp_path / "full"), str(tmp_path / "killed")
  state = train(model, full)
  assert int(state.cascade.count) == state.cascade.capacity == 2
  # The two critics differ: the second went on training after the first
  # was frozen at the end of round 2.
  first, second = [cascade_lib.critic(state.cascade, i) for i in range(2)]
  assert not np.allclose(jax.tree.leaves(first)[0],
                         jax.tree.leaves(second)[0])
  # Cascade 2 started from the last negatives of cascade 1 (eq. 8, §5.1):
  # the seeds are round 2's negatives, which the pool holds.
  pool = jax.device_get(state.pool)
  np.testing.assert_array_equal(state.seeds, pool.images[pool.rounds == 2])
  # Stopped inside cascade 2 (the run as it stood after round 3: its
  # round-4 checkpoint removed), the run resumes with its seeds from the
  # checkpoint and ends as the uninterrupted one.
  shutil.copytree(full, killed)
  shutil.rmtree(os.path.join(killed, "checkpoints", "4"))
  assert restore_latest(model, killed)[1] == 3
  train(model, killed)
  assert_trees_equal(restore_latest(model, killed), restore_latest(model, full))
  # Generation climbs p0 through both critics in order: the second stage
  # takes steps from where the first ended, which the first critic alone
  # (the same stack, count 1) stops at.
  key = jax.random.PRNGKey(1)
  textures, stats = model.generate(state.cascade, 2, 24, key)
  assert textures.shape == (2, 24, 24, 1)
  assert np.isfinite(textures).all() and np.abs(textures).max() <= 1.0
  steps = np.asarray(stats.steps)
  assert steps.shape == (2, 2) and steps[0].sum() > 0 and steps[1].sum() > 0
  one, one_stats = model.generate(cascade_lib.first(state.cascade, 1), 2, 24,
                                  key)
  np.testing.assert_array_equal(one_stats.steps[0], steps[0])
  np.testing.assert_array_equal(one_stats.steps[1], 0)
  assert np.abs(np.asarray(textures) - np.asarray(one)).max() > 1e-3


def test_nan_gradient_penalty_stops_and_keeps_checkpoint(
    model, runs, tmp_path, monkeypatch):
  # A fourth round of a copy of the finished run, with a NaN penalty.
  workdir = str(tmp_path / "copy")
  shutil.copytree(runs["full"], workdir)
  config = load_config("winn_texture.py:tiny")
  config.generate.num_images = 0
  config.rounds = 4
  saved, _ = restore_latest(model, workdir)
  monkeypatch.setattr(wasserstein, "gradient_penalty",
                      lambda *args: jnp.float32(jnp.nan))
  with pytest.raises(NonFiniteError) as error:
    train_and_evaluate(config, workdir)
  message = str(error.value)
  assert message.startswith("NaN or Inf in the gradient penalty in round 4")
  assert message.endswith("the last checkpoint is intact.")
  assert message.count(". ") == 0 and "\n" not in message
  restored, last = restore_latest(model, workdir)
  assert last == 3
  assert_trees_equal(restored, saved)


def test_sample_command_draws_from_a_winn_workdir(runs, tmp_path):
  out = str(tmp_path / "winn.png")
  result = subprocess.run(
      [sys.executable, "-m", "introjax.sample", f"--workdir={runs['full']}",
       "--size=40", "--num_images=1", f"--out={out}"],
      cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
      timeout=300)
  assert result.returncode == 0, result.stderr
  assert Image.open(out).size == (40, 40)
