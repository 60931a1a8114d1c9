"""Introspective classifiers: the losses against NumPy, one-vs-all vmapped
against K separate critics, synthesis per class, the tiny digits run end to
end (results table, test errors against NumPy, shared initial weights,
resume, NaN in training or synthesis), and bad input stopping with one
sentence.

The digits runs share one trainer, so XLA compiles its steps once.
"""
import functools
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import (REPO, assert_trees_equal, load_config, restore_latest,
                      subprocess_env)
from introjax import parallel
from introjax.data import datasets
from introjax.errors import ConfigError, NonFiniteError
from introjax.models import classifiers
from introjax.models.heads import ClassifierHeads
from introjax.objectives import losses
from introjax.training import harness
from introjax.training import icl


def _softplus(z):
  return np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0)


def test_softmax_icl_loss_matches_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(12, 5)) * 3
  labels = rng.integers(0, 5, size=12)
  is_negative = rng.random(12) < 0.4
  expected = 0.0
  for z, y, neg in zip(logits, labels, is_negative):
    if neg:   # eq. (11)'s second term: ln(1 + exp(w_y · φ(x)))
      expected += np.log(1 + np.exp(z[y]))
    else:     # softmax cross-entropy
      expected += -np.log(np.exp(z[y]) / np.exp(z).sum())
  got = losses.softmax_icl_loss(jnp.asarray(logits), jnp.asarray(labels),
                                jnp.asarray(is_negative))
  np.testing.assert_allclose(got, expected / 12, rtol=1e-5)


def test_one_vs_all_icl_loss_matches_numpy():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(10, 4)) * 3
  labels = rng.integers(0, 4, size=10)
  is_negative = rng.random(10) < 0.5
  expected = 0.0
  for z, y, neg in zip(logits, labels, is_negative):
    if neg:   # only critic y sees a pseudo-negative made for class y
      expected += -np.log(1 - 1 / (1 + np.exp(-z[y])))
    else:     # every critic k: class k positive, the rest negative
      p = 1 / (1 + np.exp(-z))
      expected += sum(-np.log(p[k]) if k == y else -np.log(1 - p[k])
                      for k in range(4))
  got = losses.one_vs_all_icl_loss(jnp.asarray(logits), jnp.asarray(labels),
                                   jnp.asarray(is_negative))
  np.testing.assert_allclose(got, expected / 10, rtol=1e-5)


def test_binary_mode_is_eq7_binary_cross_entropy():
  heads = ClassifierHeads("binary", load_config("icl_digits.py:tiny").model,
                          num_classes=10)
  params = jax.jit(heads.init, static_argnums=1)(jax.random.PRNGKey(0),
                                                 (8, 8, 1))
  x = jax.random.normal(jax.random.PRNGKey(1), (6, 8, 8, 1))
  labels = jnp.array([0, 1, 0, 1, 0, 0])  # 0: positive class
  is_negative = jnp.array([False, False, False, False, True, True])

  @jax.jit
  def run(params, x):
    logits = heads.class_logits(params, x)
    # The critic's single logit, and the loss on the class logits.
    return heads.own_logit(params, x), logits, heads.loss(logits, labels,
                                                          is_negative)

  f, logits, loss = map(np.asarray, run(params, x))
  target = np.array([1, 0, 1, 0, 0, 0])   # pseudo-negatives are negatives
  expected = np.mean(target * _softplus(-f) + (1 - target) * _softplus(f))
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_array_equal(logits.argmax(1), np.where(f > 0, 0, 1))


def test_vmapped_one_vs_all_equals_k_separate_critics():
  """Logits, own logits and one SGD gradient of the stacked critics equal
  those of K critics built and differentiated one at a time."""
  config = load_config("icl_digits.py:tiny")
  k = 3
  heads = ClassifierHeads("one_vs_all", config.model, num_classes=k)
  stacked = jax.jit(heads.init, static_argnums=1)(jax.random.PRNGKey(0),
                                                  (8, 8, 1))
  single = classifiers.build_classifier(config.model, 1)
  apply = classifiers.classifier_logits(single)
  x = jax.random.normal(jax.random.PRNGKey(1), (6, 8, 8, 1))
  labels = jnp.array([0, 1, 2, 2, 0, 1])
  is_negative = jnp.array([False, False, False, True, True, False])

  @jax.jit
  def together(stacked):
    grads = jax.grad(lambda p: heads.loss(heads.class_logits(p, x), labels,
                                          is_negative))(stacked)
    return heads.class_logits(stacked, x), heads.own_logit(stacked, x), grads

  @jax.jit
  def alone(params, i):
    """Critic i on its own: its logits, its block of 2 samples, and the
    gradient of its binary loss, eq. (7)."""
    def binary_loss(params):
      z = apply(params, x)[:, 0]
      target = (labels == i) & ~is_negative
      seen = ~is_negative | (labels == i)   # others' negatives: not critic i's
      per = jnp.where(target, jax.nn.softplus(-z), jax.nn.softplus(z))
      return jnp.where(seen, per, 0.0).sum() / x.shape[0]
    block = jax.lax.dynamic_slice_in_dim(x, 2 * i, 2)
    return (apply(params, x)[:, 0], apply(params, block)[:, 0],
            jax.grad(binary_loss)(params))

  logits, own, grads = together(stacked)   # own: block i through critic i
  for i in range(k):
    z, z_block, expected = alone(jax.tree.map(lambda p: p[i], stacked), i)
    np.testing.assert_allclose(logits[:, i], z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(own[2 * i:2 * i + 2], z_block, rtol=1e-5,
                               atol=1e-6)
    jax.tree.map(lambda g, e, i=i: np.testing.assert_allclose(
        g[i], e, rtol=1e-4, atol=1e-6), grads, expected)


def _numpy_test_error(heads, params, images, labels):
  """Test error by hand: uint8 images scaled to [-1, 1], argmax, compare."""
  x = np.asarray(images, np.float32) / 127.5 - 1.0
  logits = np.asarray(jax.jit(heads.class_logits)(jax.device_get(params), x))
  return float(np.mean(logits.argmax(axis=1) != np.asarray(labels)))


@pytest.fixture(scope="module")
def trainer():
  """One compiled trainer for the tiny digits config, shared by the runs."""
  return icl.IntrospectiveClassifier(load_config("icl_digits.py:tiny"),
                                     parallel.make_mesh())


def _train_and_evaluate(trainer, config, workdir):
  """`icl.train_and_evaluate` with an already compiled trainer."""
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(icl, "IntrospectiveClassifier",
                  lambda config, mesh: trainer)
    return icl.train_and_evaluate(config, workdir)


@pytest.fixture(scope="module")
def tiny_run(trainer, tmp_path_factory):
  config = load_config("icl_digits.py:tiny")
  workdir = str(tmp_path_factory.mktemp("icl"))
  state, results = _train_and_evaluate(trainer, config, workdir)
  return config, workdir, state, results


def test_tiny_digits_run_beats_chance_and_writes_results(trainer, tiny_run):
  config, workdir, state, results = tiny_run
  assert set(results["test_error"]) == {"baseline", "icl_noise", "icl"}
  _, test = datasets.load_classification(config.data)
  for name, error in results["test_error"].items():
    assert error < 0.5, (name, error)   # chance is 0.9 on ten classes
    assert error == pytest.approx(_numpy_test_error(
        trainer.heads, state[name].params, test.images, test.labels),
                                  abs=1e-9), name
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["test_error"] == results["test_error"]
  with open(os.path.join(workdir, "results.md")) as f:
    text = f.read()
  assert "| icl |" in text and "FGSM" in text
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rounds = [json.loads(line) for line in f]
  assert [r["round"] for r in rounds] == [1, 2]
  # Round 2 synthesised 4 pseudo-negatives per class; the noise variant not.
  assert rounds[1]["icl/synthesis_samples"] == 40
  assert "icl_noise/synthesis_samples" not in rounds[1]
  assert rounds[1]["icl/pool_size"] == 40 and rounds[1]["baseline/pool_size"] == 0
  samples = set(os.listdir(os.path.join(workdir, "samples")))
  assert {"icl_round_002.png", "icl_noise_round_002.png"} <= samples


def test_synthesis_raises_each_class_logit(trainer, tiny_run):
  _, _, state, _ = tiny_run
  run = trainer
  params = state["icl"].params
  negatives, stats = run._negatives(params, jax.random.PRNGKey(7), True)
  start, _ = run._negatives(params, jax.random.PRNGKey(7), False)
  before = run.heads.own_logit(params, start).reshape(10, -1)
  after = run.heads.own_logit(params, negatives).reshape(10, -1)
  # Every class's block climbed its own class's logit.
  assert np.all(after.mean(axis=1) > before.mean(axis=1))
  # Some samples stopped early, each once classified as its own class (the
  # rule: p(k|x) > 1/2); the others ran to the step cap.
  stopped = np.asarray(stats.stopped).reshape(10, -1)
  steps = np.asarray(stats.steps).reshape(10, -1)
  assert stopped.any()
  assert np.all(steps[~stopped] == run.settings.max_steps)
  assert np.all(steps[stopped] < run.settings.max_steps)
  logits = np.asarray(run.heads.class_logits(params, negatives))
  classes = np.repeat(np.arange(10), stopped.shape[1]).reshape(10, -1)
  assert np.all(logits.argmax(axis=1).reshape(10, -1)[stopped]
                == classes[stopped])
  p_own = np.take_along_axis(jax.nn.softmax(logits), classes.reshape(-1, 1),
                             axis=1).reshape(10, -1)
  assert np.all(p_own[stopped] > 0.5)


def test_resume_after_round_one_equals_uninterrupted(tmp_path, trainer,
                                                     tiny_run):
  config, _, state, _ = tiny_run
  first = load_config("icl_digits.py:tiny")
  first.rounds = 1
  workdir = str(tmp_path / "resumed")
  harness.run_rounds(trainer, first, workdir)
  # Every variant started from the same initial weights: round 1 has no
  # pseudo-negatives, so all three took the same steps on the same batches.
  items, latest = restore_latest(trainer, workdir)
  assert latest == 1
  variants = items["variants"]
  for name in ("icl_noise", "icl"):
    assert_trees_equal(variants[name]["params"], variants["baseline"]["params"])
  resumed = harness.run_rounds(trainer, config, workdir)
  jax.tree.map(np.testing.assert_array_equal,
               jax.device_get(resumed), jax.device_get(state))


def _one_sentence(message, start, fix):
  assert message.startswith(start), message
  assert fix in message, message
  assert message.endswith("the last checkpoint is intact."), message
  assert message.count(". ") == 0 and "\n" not in message, message


def _round_3_from_copy(tiny_run, tmp_path, **train):
  """A copy of the finished tiny run's workdir, and the config that trains
  it for a third round (with `train` overrides)."""
  workdir = str(tmp_path / "copy")
  shutil.copytree(tiny_run[1], workdir)
  config = load_config("icl_digits.py:tiny")
  config.rounds = 3
  config.train.update(train)
  return workdir, config


def test_nan_in_training_stops_and_keeps_checkpoint(tmp_path, trainer,
                                                    tiny_run):
  workdir, config = _round_3_from_copy(tiny_run, tmp_path,
                                       learning_rate=1e30)
  saved, _ = restore_latest(trainer, workdir)
  # A fresh trainer: the learning rate is part of its compiled steps.
  with pytest.raises(NonFiniteError) as error:
    icl.train_and_evaluate(config, workdir)
  _one_sentence(str(error.value), "NaN or Inf in the baseline classifier's "
                "loss or weights in round 3", "lower train.learning_rate")
  restored, last = restore_latest(trainer, workdir)
  assert last == 2
  assert_trees_equal(restored, saved)
  assert not os.path.exists(os.path.join(workdir, "checkpoints", "3"))


def test_nan_in_synthesis_stops_and_keeps_checkpoint(tmp_path, trainer,
                                                     tiny_run, monkeypatch):
  workdir, config = _round_3_from_copy(tiny_run, tmp_path)
  saved, _ = restore_latest(trainer, workdir)
  real = ClassifierHeads.synthesis_scores

  def nan_scores(self, params, x):
    own, decision = real(self, params, x)
    return own * jnp.nan, decision

  # A fresh trainer: its synthesis sees NaN logits and input gradients.
  monkeypatch.setattr(ClassifierHeads, "synthesis_scores", nan_scores)
  with pytest.raises(NonFiniteError) as error:
    icl.train_and_evaluate(config, workdir)
  _one_sentence(str(error.value), "NaN or Inf in the logits or input "
                "gradients while synthesising icl's pseudo-negatives in "
                "round 3", "lower synthesis.learning_rate")
  restored, last = restore_latest(trainer, workdir)
  assert last == 2
  assert_trees_equal(restored, saved)


def test_one_vs_all_with_one_class_is_refused():
  config = load_config("icl_digits.py:tiny").model
  with pytest.raises(ConfigError, match="one_vs_all.*at least 2 classes"):
    ClassifierHeads("one_vs_all", config, num_classes=1)


def _main(tmp_path, *overrides):
  return subprocess.run(
      [sys.executable, "-m", "introjax.main",
       "--config=configs/icl_digits.py:tiny", f"--workdir={tmp_path}/w",
       *overrides], cwd=REPO, env=subprocess_env(), capture_output=True,
      text=True, timeout=300)


@pytest.mark.parametrize("override, message", [
    ("--config.eval.fgsm_eps=3.0", "outside the data range"),
    ("--config.data.num_classes=7", "num_classes"),
    ("--config.icl.mode=multiclass", "icl.mode"),
])
def test_bad_classifier_config_stops_with_one_sentence(tmp_path, override,
                                                       message):
  result = _main(tmp_path, override)
  assert result.returncode != 0
  assert "Traceback" not in result.stderr
  assert message in result.stderr.strip().splitlines()[-1]


def test_mnist_through_mock_tfds_trains_one_round(tmp_path):
  import tensorflow_datasets as tfds
  config = load_config("icl_mnist.py:cpu")
  config.rounds = 1
  config.model.features = (8, 16)
  config.icl.variants = ("icl",)
  config.pool.rounds = 1
  config.data.max_train, config.data.max_test = 64, 48
  config.train.epochs_per_round = 1
  config.eval.batch_size = 48
  with tfds.testing.mock_data(num_examples=64):
    state, results = icl.train_and_evaluate(config, str(tmp_path))
    _, test = datasets.load_classification(config.data)
  assert results["dataset"].endswith("mnist")
  assert test.images.shape == (48, 28, 28, 1)
  # The reported error is that of the trained network on the TFDS test
  # split, counted by hand from its predictions.
  heads = ClassifierHeads(config.icl.mode, config.model, 10)
  expected = _numpy_test_error(heads, state["icl"].params, test.images,
                               test.labels)
  assert results["test_error"]["icl"] == pytest.approx(expected, abs=1e-9)
  (metrics,) = [json.loads(line) for line in
                (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert metrics["icl/test_error"] == pytest.approx(expected, abs=1e-9)


@pytest.fixture
def small_resnet(monkeypatch):
  """`model.name="resnet32"` builds ResNet32 with one block per stage and
  narrow widths: every kind of layer and shortcut of ResNet-32, at a
  fraction of its compile and step time."""
  monkeypatch.setattr(classifiers, "ResNet32", functools.partial(
      classifiers.ResNet32, widths=(4, 8, 16), blocks_per_stage=1))


def _assert_small_resnet(params):
  assert set(params) == {"conv0", "norm0", "stage0_block0", "stage1_block0",
                         "stage2_block0", "logits"}
  # The stride-2 blocks have the 1×1 projection shortcut.
  assert "shortcut" in params["stage1_block0"]
  assert params["stage2_block0"]["shortcut"]["kernel"].shape[-2:] == (8, 16)


def test_cifar10_resnet32_with_augmentation_through_mock_tfds(tmp_path,
                                                              small_resnet):
  """The CIFAR-10 config's real path: TFDS + grain, ResNet-32 with
  LayerNorm, on-device pad-crop-flip, synthesis and the FGSM table."""
  import tensorflow_datasets as tfds
  config = load_config("icl_cifar10.py")
  config.rounds, config.pool.rounds = 2, 2
  config.icl.variants = ("baseline", "icl")
  config.negatives.per_class = 2
  config.train.epochs_per_round = 1.0
  config.synthesis.max_steps = 3
  config.data.augment = True
  # Batches of the mock split's size: padding them to 128 or 500 would only
  # multiply the work.
  config.train.batch_size = config.eval.batch_size = 40
  with tfds.testing.mock_data(num_examples=40):
    state, results = icl.train_and_evaluate(config, str(tmp_path))
  _assert_small_resnet(state["icl"].params)
  assert results["dataset"] == "tfds:cifar10"
  assert set(results["test_error"]) == {"baseline", "icl"}
  assert set(results["robustness"]["num_fooled_both"]) == {"baseline", "icl"}
  metrics = [json.loads(line) for line in
             (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert metrics[-1]["icl/synthesis_samples"] == 20   # 2 per class
  assert (tmp_path / "samples" / "icl_round_002.png").exists()


def test_winn_classifier_on_svhn_through_mock_tfds(tmp_path, small_resnet):
  """configs/winn_svhn_cls.py's real path: SVHN's train split through TFDS
  + grain, ResNet-32, baseline and WINN from the same weights, WINN's
  per-class thresholds and the two-way FGSM table."""
  import tensorflow_datasets as tfds
  config = load_config("winn_svhn_cls.py")
  config.rounds, config.pool.rounds = 2, 2
  config.negatives.per_class = 2
  config.train.epochs_per_round = 1.0
  config.winn.synthesis.max_steps = 3
  config.winn.threshold_positives_per_class = 2
  config.eval.every_rounds = 2
  config.train.batch_size = config.eval.batch_size = 40
  with tfds.testing.mock_data(num_examples=40):
    state, results = icl.train_and_evaluate(config, str(tmp_path))
  _assert_small_resnet(state["winn"].params)
  assert results["dataset"] == "tfds:svhn_cropped"
  assert set(results["test_error"]) == {"baseline", "winn"}
  metrics = [json.loads(line) for line in
             (tmp_path / "metrics.jsonl").read_text().splitlines()]
  last = metrics[-1]
  assert last["winn/synthesis_threshold_min"] < (
      last["winn/synthesis_threshold_max"])
  assert last["winn/synthesis_samples"] == 20   # 2 per class
  assert last["winn/pool_size"] == 20 and last["baseline/pool_size"] == 0
  assert last["winn/train_penalty"] > 0
  assert set(results["robustness"]["num_fooled_both"]) == {"baseline", "winn"}
  assert results["fgsm_eps"] == 0.01
  assert (tmp_path / "samples" / "winn_round_002.png").exists()
