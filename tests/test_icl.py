"""Introspective classifiers: the losses against NumPy, one-vs-all vmapped
against K separate critics, synthesis per class, the tiny digits run end to
end (results table, resume), and bad input stopping with one sentence."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO, load_config, subprocess_env
from introjax import parallel
from introjax.errors import ConfigError
from introjax.models import classifiers
from introjax.models.heads import ClassifierHeads
from introjax.objectives import losses
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
  params = heads.init(jax.random.PRNGKey(0), (8, 8, 1))
  x = jax.random.normal(jax.random.PRNGKey(1), (6, 8, 8, 1))
  f = heads.own_logit(params, x)          # the critic's single logit
  labels = jnp.array([0, 1, 0, 1, 0, 0])  # 0: positive class
  is_negative = jnp.array([False, False, False, False, True, True])
  loss = heads.loss(heads.class_logits(params, x), labels, is_negative)
  target = np.array([1, 0, 1, 0, 0, 0])   # pseudo-negatives are negatives
  expected = np.mean(target * _softplus(-np.asarray(f)) +
                     (1 - target) * _softplus(np.asarray(f)))
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_array_equal(
      heads.class_logits(params, x).argmax(1), np.where(f > 0, 0, 1))


def test_vmapped_one_vs_all_equals_k_separate_critics():
  """Logits, own logits and one SGD gradient of the stacked critics equal
  those of K critics built and differentiated one at a time."""
  config = load_config("icl_digits.py:tiny")
  k = 3
  heads = ClassifierHeads("one_vs_all", config.model, num_classes=k)
  stacked = heads.init(jax.random.PRNGKey(0), (8, 8, 1))
  single = classifiers.build_classifier(config.model, 1)
  apply = classifiers.classifier_logits(single)
  critic = lambda i: jax.tree.map(lambda p: p[i], stacked)
  x = jax.random.normal(jax.random.PRNGKey(1), (6, 8, 8, 1))
  labels = jnp.array([0, 1, 2, 2, 0, 1])
  is_negative = jnp.array([False, False, False, True, True, False])

  logits = heads.class_logits(stacked, x)
  for i in range(k):
    np.testing.assert_allclose(logits[:, i], apply(critic(i), x)[:, 0],
                               rtol=1e-5, atol=1e-6)
  own = heads.own_logit(stacked, x)   # block i (2 samples) through critic i
  for i in range(k):
    np.testing.assert_allclose(own[2 * i:2 * i + 2],
                               apply(critic(i), x[2 * i:2 * i + 2])[:, 0],
                               rtol=1e-5, atol=1e-6)

  grads = jax.grad(lambda p: heads.loss(heads.class_logits(p, x), labels,
                                        is_negative))(stacked)
  for i in range(k):
    def binary_loss(params, i=i):   # critic i alone, eq. (7)
      z = apply(params, x)[:, 0]
      target = (labels == i) & ~is_negative
      seen = ~is_negative | (labels == i)   # others' negatives: not critic i's
      per = jnp.where(target, jax.nn.softplus(-z), jax.nn.softplus(z))
      return jnp.where(seen, per, 0.0).sum() / x.shape[0]
    expected = jax.grad(binary_loss)(critic(i))
    jax.tree.map(lambda g, e, i=i: np.testing.assert_allclose(
        g[i], e, rtol=1e-4, atol=1e-6), grads, expected)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  config = load_config("icl_digits.py:tiny")
  workdir = str(tmp_path_factory.mktemp("icl"))
  state, results = icl.train_and_evaluate(config, workdir)
  return config, workdir, state, results


def test_tiny_digits_run_beats_chance_and_writes_results(tiny_run):
  config, workdir, state, results = tiny_run
  assert set(results["test_error"]) == {"baseline", "icl_noise", "icl"}
  for name, error in results["test_error"].items():
    assert error < 0.5, (name, error)   # chance is 0.9 on ten classes
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


def test_synthesis_raises_each_class_logit(tiny_run):
  config, _, state, _ = tiny_run
  run = icl.IntrospectiveClassifier(config, parallel.make_mesh())
  params = state["icl"].params
  negatives, stats = run._negatives(params, jax.random.PRNGKey(7), True)
  start, _ = run._negatives(params, jax.random.PRNGKey(7), False)
  before = run.heads.own_logit(params, start).reshape(10, -1)
  after = run.heads.own_logit(params, negatives).reshape(10, -1)
  # Every class's block climbed its own class's logit.
  assert np.all(after.mean(axis=1) > before.mean(axis=1))
  # A sample stopped early is classified positive for its class.
  stopped = stats.stopped.reshape(10, -1)
  assert np.all(after[stopped] > 0)


def test_resume_after_round_one_equals_uninterrupted(tmp_path, tiny_run):
  config, _, state, _ = tiny_run
  first = load_config("icl_digits.py:tiny")
  first.rounds = 1
  workdir = str(tmp_path / "resumed")
  icl.train_and_evaluate(first, workdir)
  resumed, _ = icl.train_and_evaluate(config, workdir)
  jax.tree.map(np.testing.assert_array_equal,
               jax.device_get(resumed), jax.device_get(state))


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
  config.icl.pool_rounds = 1
  config.data.max_train, config.data.max_test = 64, 32
  config.train.epochs_per_round = 1
  with tfds.testing.mock_data(num_examples=64):
    _, results = icl.train_and_evaluate(config, str(tmp_path))
  assert 0.0 <= results["test_error"]["icl"] <= 1.0
  assert results["dataset"].endswith("mnist")


def test_eight_devices_match_one_device():
  result = subprocess.run(
      [sys.executable, str(REPO / "tests" / "icl_multidevice_check.py")],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env=subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=8"))
  assert result.returncode == 0, result.stdout + result.stderr[-3000:]
  assert "ICL rounds match" in result.stdout
  assert "evaluation split over the devices matches" in result.stdout


def test_cifar10_resnet32_with_augmentation_through_mock_tfds(tmp_path):
  """The CIFAR-10 config's real path: TFDS + grain, ResNet-32 with
  LayerNorm, on-device pad-crop-flip, synthesis and the FGSM table."""
  import tensorflow_datasets as tfds
  config = load_config("icl_cifar10.py")
  config.rounds, config.icl.pool_rounds = 2, 2
  config.icl.variants = ("baseline", "icl")
  config.icl.negatives_per_class = 2
  config.train.epochs_per_round = 1.0
  config.synthesis.max_steps = 3
  config.data.augment = True
  with tfds.testing.mock_data(num_examples=40):
    _, results = icl.train_and_evaluate(config, str(tmp_path))
  assert results["dataset"] == "tfds:cifar10"
  assert set(results["test_error"]) == {"baseline", "icl"}
  assert (tmp_path / "samples" / "icl_round_002.png").exists()


def test_winn_classifier_on_svhn_through_mock_tfds(tmp_path):
  """configs/winn_svhn_cls.py's real path: SVHN's train split through TFDS
  + grain, ResNet-32, baseline and WINN from the same weights, WINN's
  per-class thresholds and the two-way FGSM table."""
  import tensorflow_datasets as tfds
  config = load_config("winn_svhn_cls.py")
  config.rounds, config.icl.pool_rounds = 2, 2
  config.icl.negatives_per_class = 2
  config.train.epochs_per_round = 1.0
  config.winn.synthesis.max_steps = 3
  config.winn.threshold_positives_per_class = 2
  config.eval.every_rounds = 2
  with tfds.testing.mock_data(num_examples=40):
    _, results = icl.train_and_evaluate(config, str(tmp_path))
  assert results["dataset"] == "tfds:svhn_cropped"
  assert set(results["test_error"]) == {"baseline", "winn"}
  metrics = [json.loads(line) for line in
             (tmp_path / "metrics.jsonl").read_text().splitlines()]
  last = metrics[-1]
  assert last["winn/synthesis_threshold_min"] < (
      last["winn/synthesis_threshold_max"])
  assert last["winn/synthesis_samples"] == 20   # 2 per class
  assert last["winn/pool_size"] == 20 and last["baseline/pool_size"] == 0
  assert set(results["robustness"]["num_fooled_both"]) == {"baseline", "winn"}
  assert results["fgsm_eps"] == 0.01
  assert (tmp_path / "samples" / "winn_round_002.png").exists()
