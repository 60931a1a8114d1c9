"""WINN as a classifier (WINN §5.6): the loss against a float64 NumPy
reference (penalty and parameter gradient included), the tiny digits run
through the CLI (results table with the FGSM rows, paired batches, per-class
early stop), resume, and bad settings stopping with one sentence."""
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO, load_config, restore_latest, subprocess_env
from introjax import parallel
from introjax.data import datasets
from introjax.errors import ConfigError
from introjax.objectives import wasserstein
from introjax.training import harness
from introjax.training import icl


@pytest.fixture
def float64():
  jax.config.update("jax_enable_x64", True)
  yield
  jax.config.update("jax_enable_x64", False)


def _numpy_winn_loss(params, pos, labels, neg, u, alpha, gp_weight):
  """§5.6's loss for logits = tanh(x W1 + b1) W2 + b2, with each sample's
  input gradient of its class-y logit written out by hand."""
  w1, b1, w2, b2 = (params[k] for k in ("w1", "b1", "w2", "b2"))
  flat = lambda x: x.reshape(x.shape[0], -1)

  def logits(x):
    return np.tanh(flat(x) @ w1 + b1) @ w2 + b2

  rows = np.arange(len(labels))
  z_pos, z_neg = logits(pos), logits(neg)
  log_softmax = z_pos - np.log(np.exp(z_pos).sum(axis=1, keepdims=True))
  cross_entropy = -log_softmax[rows, labels].mean()
  wasserstein_estimate = (z_pos[rows, labels].mean() -
                          z_neg[rows, labels].mean())
  x_hat = u[:, None] * flat(pos) + (1 - u[:, None]) * flat(neg)
  h = np.tanh(x_hat @ w1 + b1)
  # d logit_y / dx = W1 diag(1 − h²) W2[:, y]
  grads = ((1 - h ** 2) * w2[:, labels].T) @ w1.T
  penalty = np.mean((np.linalg.norm(grads, axis=1) - 1) ** 2)
  return cross_entropy + alpha * (-wasserstein_estimate +
                                  gp_weight * penalty)


def test_winn_classifier_loss_matches_float64_numpy(float64):
  rng = np.random.default_rng(0)
  batch, k, hidden = 6, 3, 5
  params = {"w1": rng.normal(size=(8, hidden)), "b1": rng.normal(size=hidden),
            "w2": rng.normal(size=(hidden, k)), "b2": rng.normal(size=k)}
  pos = rng.normal(size=(batch, 2, 2, 2))
  neg = 0.3 * rng.normal(size=(batch, 2, 2, 2))
  labels = rng.integers(0, k, size=batch)
  key = jax.random.PRNGKey(3)
  # The interpolation weights the loss draws from `key`.
  u = np.asarray(wasserstein.interpolate(
      jnp.ones((batch, 1)), jnp.zeros((batch, 1)), key))[:, 0]
  alpha, gp_weight = 0.5, 10.0   # α large enough to matter in the check

  def jax_loss(p):
    fn = lambda x: (jnp.tanh(x.reshape(x.shape[0], -1) @ p["w1"] + p["b1"])
                    @ p["w2"] + p["b2"])
    return wasserstein.winn_classifier_loss(
        fn, jnp.asarray(pos), jnp.asarray(labels), jnp.asarray(neg), key,
        alpha, gp_weight)

  jparams = jax.tree.map(jnp.asarray, params)
  (loss, aux), grads = jax.value_and_grad(jax_loss, has_aux=True)(jparams)
  expected = _numpy_winn_loss(params, pos, labels, neg, u, alpha, gp_weight)
  np.testing.assert_allclose(loss, expected, rtol=1e-10)
  assert aux["penalty"] > 0.1   # far from a trivial penalty
  # The parameter gradient (through the input gradient of the penalty)
  # against central differences of the NumPy loss.
  step = 1e-6
  for name, value in params.items():
    fd = np.zeros_like(value)
    for i in np.ndindex(value.shape):
      shifted = {n: v.copy() for n, v in params.items()}
      shifted[name][i] += step
      up = _numpy_winn_loss(shifted, pos, labels, neg, u, alpha, gp_weight)
      shifted[name][i] -= 2 * step
      down = _numpy_winn_loss(shifted, pos, labels, neg, u, alpha, gp_weight)
      fd[i] = (up - down) / (2 * step)
    np.testing.assert_allclose(grads[name], fd, rtol=1e-6, atol=1e-8)


def _main(workdir, *overrides, config="configs/winn_mnist_cls.py:tiny"):
  return subprocess.run(
      [sys.executable, "-m", "introjax.main", f"--config={config}",
       f"--workdir={workdir}", *overrides], cwd=REPO, env=subprocess_env(),
      capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("winn_cls"))
  result = _main(workdir)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def test_tiny_run_through_the_cli_writes_winn_results(cli_run):
  with open(os.path.join(cli_run, "results.json")) as f:
    results = json.load(f)
  assert set(results["test_error"]) == {"baseline", "winn"}
  for name, error in results["test_error"].items():
    assert error < 0.5, (name, error)   # chance is 0.9 on ten classes
  table = results["robustness"]
  assert set(table["adversarial_error"]) == {"baseline", "winn"}
  assert table["correction_rate"]["baseline"]["winn"] is not None
  with open(os.path.join(cli_run, "results.md")) as f:
    text = f.read()
  assert "| winn |" in text and "| baseline |" in text
  assert "FGSM" in text and "correction rate by winn" in text
  with open(os.path.join(cli_run, "metrics.jsonl")) as f:
    rounds = [json.loads(line) for line in f]
  first, second = rounds
  # Round 1 has no pseudo-negatives: the α term is masked and both
  # variants take the same steps on the same batches from the same weights.
  assert first["winn/train_loss"] == pytest.approx(
      first["baseline/train_loss"], rel=1e-5)
  assert first["winn/train_steps"] == first["baseline/train_steps"]
  # Round 2: 4 pseudo-negatives per class, scored by the Wasserstein term.
  assert second["winn/synthesis_samples"] == 40
  assert second["winn/pool_size"] == 40
  assert second["winn/train_penalty"] > 0
  assert (second["winn/synthesis_threshold_min"]
          <= second["winn/synthesis_threshold_max"])
  assert second["winn/train_loss"] != second["baseline/train_loss"]
  assert "winn_round_002.png" in os.listdir(os.path.join(cli_run, "samples"))


@pytest.fixture(scope="module")
def trainer():
  """One compiled trainer for the tiny config, shared by the tests below."""
  return icl.IntrospectiveClassifier(load_config("winn_mnist_cls.py:tiny"),
                                     parallel.make_mesh())


def test_resume_after_round_one_equals_uninterrupted(tmp_path, cli_run,
                                                     trainer):
  # The CLI run as it stood after round 1: its round-2 checkpoint removed.
  workdir = str(tmp_path / "resumed")
  shutil.copytree(cli_run, workdir)
  shutil.rmtree(os.path.join(workdir, "checkpoints", "2"))
  items, latest = restore_latest(trainer, workdir)
  assert latest == 1
  # Same weights after round 1: the α term waits for pseudo-negatives.
  variants = items["variants"]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
               variants["baseline"]["params"], variants["winn"]["params"])
  resumed = harness.run_rounds(trainer, load_config("winn_mnist_cls.py:tiny"),
                               workdir)
  uninterrupted, latest = restore_latest(trainer, cli_run)
  assert latest == 2
  jax.tree.map(np.testing.assert_array_equal,
               jax.device_get(trainer.checkpoint_items(resumed)),
               uninterrupted)


def test_synthesis_stops_each_sample_at_its_class_threshold(cli_run,
                                                            trainer):
  run = trainer
  items, _ = restore_latest(run, cli_run)
  params = jax.device_put(run.from_items(items)["winn"].params,
                          run._replicated)
  key = jax.random.PRNGKey(5)
  negatives, stats, thresholds = run._winn_negatives(
      params, key, run.images, run.class_index, run.class_counts)
  start = run._start(jax.random.split(key)[0])   # the same starting noise
  own = lambda x: np.asarray(run.heads.own_logit(params, x)).reshape(10, -1)
  before, after = own(start), own(negatives)
  thresholds = np.asarray(thresholds).reshape(10, -1)
  stopped = np.asarray(stats.stopped).reshape(10, -1)
  assert np.all(after.mean(axis=1) > before.mean(axis=1))
  assert np.all(after[stopped] > thresholds[stopped])
  assert stopped.any()
  # Every threshold lies between the smallest and largest class-k logit of
  # the class's training images (the sample it was drawn from is a subset).
  logits = np.asarray(jax.jit(run.heads.class_logits)(
      params, datasets.to_unit_range(run.images)))
  labels = np.asarray(run.labels)
  for k in range(10):
    own_k = logits[labels == k, k]
    assert own_k.min() <= thresholds[k].min() <= thresholds[k].max() \
        <= own_k.max()


def test_negative_alpha_stops_the_cli_with_one_sentence(tmp_path):
  result = _main(str(tmp_path / "w"), "--config.winn.alpha=-0.01")
  assert result.returncode != 0
  assert "Traceback" not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert "winn.alpha=-0.01 must be ≥ 0" in last


@pytest.mark.parametrize("field, value, message", [
    ("icl.variants", ("baseline", "wgan"), "icl.variants"),
    ("icl.mode", "one_vs_all", "set icl.mode='softmax'"),
    ("train.optimizer", "rmsprop", "Unknown train.optimizer"),
    ("winn.threshold_positives_per_class", 0, "must be ≥ 1"),
])
def test_bad_winn_settings_are_refused(field, value, message):
  config = load_config("winn_mnist_cls.py:tiny")
  section, name = field.split(".")
  config[section][name] = value
  with pytest.raises(ConfigError, match=message):
    icl.IntrospectiveClassifier(config, parallel.make_mesh())
