"""STIC: the vrm loss and mixup against NumPy, Gram matrices and the
GRMALA objective against explicit float64 references, the Metropolis test
reaching its target where MALA-approx does not, feature taps through the
model, the tiny digits run end to end (results, grids, shared initial
weights, resume, NaN in training or in the chains), and bad input stopping
with one sentence.

The digits runs share one trainer, so XLA compiles its steps once.
"""
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import PIL.Image
import pytest

from conftest import (REPO, assert_trees_equal, load_config, restore_latest,
                      subprocess_env)
from introjax import parallel
from introjax.errors import ConfigError, DataError, NonFiniteError
from introjax.models import classifiers
from introjax.objectives import vrm
from introjax.sampling import scores
from introjax.sampling import stopping
from introjax.sampling.ascent import AscentSettings, ascend
from introjax.training import harness
from introjax.training import stic


def _log_softmax(z):
  z = z - z.max(axis=-1, keepdims=True)
  return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def test_vrm_loss_matches_numpy_and_erm_uses_the_real_logits_only():
  rng = np.random.default_rng(0)
  k, n = 4, 9
  logits = rng.normal(size=(n, k + 1)) * 2
  targets = rng.dirichlet(np.ones(k + 1), size=n)
  weight = rng.random(n)
  labels = np.array([0, 1, 2, 3, -1, -1, -1, 0, 2])
  loss = vrm.VRMFakeClassLoss(k)
  batch = {"x": jnp.asarray(logits), "targets": jnp.asarray(targets),
           "weight": jnp.asarray(weight), "labels": jnp.asarray(labels)}
  got, aux = loss(lambda x: x, batch, None)
  expected = -(weight * (targets * _log_softmax(logits)).sum(axis=1)).sum()
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  counted = labels >= 0
  acc = (logits[:, :k].argmax(axis=1) == labels)[counted].mean()
  assert aux["accuracy"] == pytest.approx(acc)
  # ERM: targets over the K real classes, a K-way softmax of their logits.
  real = targets[:, :k] / targets[:, :k].sum(axis=1, keepdims=True)
  batch.update(targets=jnp.asarray(real))
  got, aux = loss(lambda x: x, batch, None)
  expected = -(weight * (real * _log_softmax(logits[:, :k])).sum(axis=1)).sum()
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  assert "fake_detected" not in aux


def test_mixup_mixes_images_and_targets_by_one_lambda_per_pair():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(64, 3, 3, 1)), jnp.float32)
  y = jax.nn.one_hot(jnp.asarray(rng.integers(0, 5, 64)), 6)
  mixed, mixed_y, lam = vrm.mixup(jax.random.PRNGKey(0), x, y, 0.4)
  lam = np.asarray(lam)
  assert np.all((lam >= 0) & (lam <= 1)) and lam.std() > 0.2  # Beta(.4, .4)
  # The same λ mixes the image and its target: recover the partner.
  for i in range(64):
    partner = [j for j in range(64) if np.allclose(
        mixed[i], lam[i] * x[i] + (1 - lam[i]) * x[j], atol=1e-5)]
    assert partner, i
    np.testing.assert_allclose(
        mixed_y[i], lam[i] * y[i] + (1 - lam[i]) * y[partner[0]], atol=1e-5)
  weights = vrm.group_weights((3, 2, 5), (True, False, True))
  np.testing.assert_allclose(weights, [1 / 3] * 3 + [0, 0] + [0.2] * 5)


def test_gram_matrix_and_distance_match_explicit_loops():
  rng = np.random.default_rng(2)
  f = rng.normal(size=(2, 3, 4, 5))
  a = rng.normal(size=(2, 5, 5))
  g = np.asarray(scores.gram_matrix(jnp.asarray(f)))
  for b in range(2):
    for i in range(5):
      for j in range(5):
        assert g[b, i, j] == pytest.approx(
            sum(f[b, y, x, i] * f[b, y, x, j]
                for y in range(3) for x in range(4)) / 12, rel=1e-4)
  d = scores.gram_distance([jnp.asarray(f)], [jnp.asarray(a)])
  np.testing.assert_allclose(
      d, ((g - a) ** 2).sum(axis=(1, 2)) / (a ** 2).sum(axis=(1, 2)),
      rtol=1e-4)


def _small_net(k=3):
  return classifiers.build_classifier(ml_collections.ConfigDict(
      {"name": "icl_conv", "features": (4, 6), "kernel_size": 3}), k + 1)


def _conv_same_numpy(x, kernel, bias, stride):
  """XLA's SAME convolution by explicit loops, float64: x (H, W, C)."""
  h, w, _ = x.shape
  k = kernel.shape[0]
  out_h, out_w = -(-h // stride), -(-w // stride)
  pad_h = max((out_h - 1) * stride + k - h, 0)
  pad_w = max((out_w - 1) * stride + k - w, 0)
  x = np.pad(x, ((pad_h // 2, pad_h - pad_h // 2),
                 (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
  out = np.zeros((out_h, out_w, kernel.shape[-1]))
  for i in range(out_h):
    for j in range(out_w):
      patch = x[i * stride:i * stride + k, j * stride:j * stride + k]
      out[i, j] = np.tensordot(patch, kernel, axes=3) + bias
  return out


def test_grmala_objective_and_gradient_match_a_float64_reference():
  """u(x) = Σ y·log softmax(f(x)) − w·Σ_L ‖G^L(x) − A^L‖²/‖A^L‖² and its
  gradient, against the network and the formula written out in float64
  NumPy (explicit convolution loops), and its central differences."""
  net = _small_net()
  params = classifiers.init_classifier(net, jax.random.PRNGKey(0), (6, 6, 1))
  paths = classifiers.resolve_conv_names(net, (6, 6, 1), ["conv0", "conv1"],
                                         "stic.gram_layers")
  taps = lambda x: classifiers.feature_taps(net, paths)(params, x)
  rng = np.random.default_rng(3)
  x = rng.uniform(-1, 1, (2, 6, 6, 1))
  ref = rng.uniform(-1, 1, (2, 6, 6, 1))
  targets = np.array([[0.3, 0.7, 0, 0], [1.0, 0, 0, 0]])
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)

  def forward(image):   # logits and the two conv outputs, float64
    f0 = _conv_same_numpy(image, p["conv0"]["kernel"], p["conv0"]["bias"], 2)
    a0 = np.where(f0 > 0, f0, 0.2 * f0)
    f1 = _conv_same_numpy(a0, p["conv1"]["kernel"], p["conv1"]["bias"], 2)
    a1 = np.where(f1 > 0, f1, 0.2 * f1)
    logits = a1.reshape(-1) @ p["logits"]["kernel"] + p["logits"]["bias"]
    return logits, [f0, f1]

  def gram(f):
    f = f.reshape(-1, f.shape[-1])
    return f.T @ f / f.shape[0]

  ref_grams = [[gram(f) for f in forward(r)[1]] for r in ref]

  def reference(images):
    out = []
    for b, image in enumerate(images):
      logits, feats = forward(image)
      log_p = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
      distance = sum(((gram(f) - a) ** 2).sum() / (a ** 2).sum()
                     for f, a in zip(feats, ref_grams[b]))
      out.append((targets[b] * log_p).sum() - 0.5 * distance)
    return np.array(out)

  grams = [scores.gram_matrix(f) for f in taps(jnp.asarray(ref, jnp.float32))[1]]
  u, grad = scores.gram_regularised(taps, jnp.asarray(targets, jnp.float32),
                                    grams, 0.5)(jnp.asarray(x, jnp.float32),
                                                None)
  np.testing.assert_allclose(np.asarray(u)[:, 0], reference(x), rtol=1e-5)
  h = 1e-5
  for index in [(0, 1, 2, 0), (1, 4, 3, 0), (0, 5, 0, 0), (1, 0, 5, 0)]:
    e = np.zeros(x.shape)
    e[index] = h
    numeric = (reference(x + e) - reference(x - e))[index[0]] / (2 * h)
    assert float(grad[index]) == pytest.approx(numeric, rel=2e-3, abs=1e-6)


def _gaussian_chain_variance(metropolis):
  """Chains on u(x) = −x²/2 with ε1 = 0.5, ε3 = 1 (β = 2ε1/ε3² = 1):
  Metropolis–Hastings targets exp(β·u), variance 1; the unadjusted
  proposal x(1 − ε1) + ξ settles at 1/(1 − 0.5²) = 4/3."""
  def score_and_grad(x, key):
    del key
    return (-0.5 * jnp.sum(x * x, axis=(1, 2, 3)))[:, None], -x
  settings = AscentSettings(optimizer="grmala", learning_rate=0.5,
                            proposal_noise=1.0, metropolis=metropolis,
                            max_steps=300, clip=None)
  x0 = jnp.zeros((4000, 1, 1, 1))
  x, stats = ascend(score_and_grad, x0, jax.random.PRNGKey(4),
                    stopping.FixedSteps(), settings)
  return float(np.var(np.asarray(x))), np.asarray(stats.step_state)


def test_metropolis_reaches_its_target_where_mala_approx_does_not():
  var_mh, accepted = _gaussian_chain_variance(True)
  var_approx, moves = _gaussian_chain_variance(False)
  assert var_mh == pytest.approx(1.0, abs=0.07)
  assert var_approx == pytest.approx(4 / 3, abs=0.08)
  assert 0.5 < accepted.mean() / 300 < 0.98   # some proposals rejected
  assert np.all(moves == 300)                 # MALA-approx takes them all


def test_feature_taps_are_the_forward_pass_and_bad_names_are_refused():
  net = _small_net()
  params = classifiers.init_classifier(net, jax.random.PRNGKey(0), (8, 8, 1))
  x = jax.random.uniform(jax.random.PRNGKey(1), (3, 8, 8, 1), minval=-1)
  logits, feats = classifiers.feature_taps(net, ["conv1"])(params, x)
  np.testing.assert_allclose(logits, net.apply({"params": params}, x),
                             rtol=1e-6)
  assert feats[0].shape == (3, 2, 2, 6)
  with pytest.raises(ConfigError, match="stic.gram_layers names 'conv7', but "
                     "the network has no convolution of that name; its "
                     "convolutions are conv0, conv1"):
    classifiers.resolve_conv_names(net, (8, 8, 1), ["conv7"],
                                   "stic.gram_layers")
  wrn = classifiers.build_classifier(ml_collections.ConfigDict(
      {"name": "wrn", "depth": 28, "widen": 2}), 11)
  names = classifiers.conv_names(wrn, (32, 32, 3))
  # STIC §5's Gram layers exist by their paper names.
  assert len(names) == 28
  assert classifiers.resolve_conv_names(
      wrn, (32, 32, 3), [f"conv{i}" for i in range(21, 29)], "f")[-1] == (
          "group2_block3/conv28")


# The tiny digits run ------------------------------------------------------


@pytest.fixture(scope="module")
def trainer():
  return stic.SynthesizeItClassifier(load_config("stic_digits.py:tiny"),
                                     parallel.make_mesh())


def _train_and_evaluate(trainer, config, workdir):
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(stic, "SynthesizeItClassifier", lambda config, mesh: trainer)
    return stic.train_and_evaluate(config, workdir)


@pytest.fixture(scope="module")
def tiny_run(trainer, tmp_path_factory):
  config = load_config("stic_digits.py:tiny")
  workdir = str(tmp_path_factory.mktemp("stic"))
  state, results = _train_and_evaluate(trainer, config, workdir)
  return config, workdir, state, results


def test_tiny_run_writes_results_grids_and_moves_the_chains(trainer,
                                                            tiny_run):
  config, workdir, state, results = tiny_run
  assert set(results["test_error"]) == {"erm", "stic_erm", "stic"}
  assert all(e < 0.8 for e in results["test_error"].values())  # chance 0.9
  assert set(results["samples"]) == {"stic_erm", "stic"}
  for m in results["samples"].values():
    assert {"cls_r", "cls_g", "swd_mean"} <= set(m)
  with open(os.path.join(workdir, "results.md")) as f:
    text = f.read()
  assert "| stic |" in text and "FGSM" in text and "cls_r" in text
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rounds = [json.loads(line) for line in f]
  assert [r["round"] for r in rounds] == [1, 2]
  # Every chain ran the sampler each pass and climbed its log p(y|x).
  chains = trainer.num_chains
  assert chains == {"erm": 20, "stic_erm": 20, "stic": 24}
  for v in ("stic_erm", "stic"):
    for r in rounds:
      assert r[f"{v}/synthesis_samples"] == chains[v]
      assert r[f"{v}/synthesis_logit_end"] > r[f"{v}/synthesis_logit_start"]
    assert "erm/synthesis_samples" not in rounds[0]
  # Pass 1's fakes were blank; the classifier caught them.
  assert rounds[0]["stic/train_fake_detected"] > 0.5
  # Later batches: B real, B mixup (stic only) and B fakes drawn from the
  # chains; erm trains on the real images alone.
  b = config.train.batch_size
  data = (trainer.images, trainer.labels)
  for v, groups in (("erm", 1), ("stic_erm", 2), ("stic", 3)):
    batch = trainer._batch_of(v, data, state[v].chains, jax.random.PRNGKey(5))
    assert batch["x"].shape[0] == groups * b
    np.testing.assert_allclose(np.asarray(batch["weight"]).sum(), groups,
                               rtol=1e-6)
  pool = np.asarray(state["stic"].chains.pool.images)
  fakes = np.asarray(batch["x"][-b:])
  assert all(np.any(np.all(pool == f, axis=(1, 2, 3))) for f in fakes)
  np.testing.assert_array_equal(batch["targets"][-b:, -1], 1.0)
  samples = set(os.listdir(os.path.join(workdir, "samples")))
  assert {"stic_classes_pass_001.png", "stic_mixup_pass_002.png",
          "stic_erm_classes_pass_002.png",
          "stic_interpolation_0_to_6.png"} <= samples
  assert not any(s.startswith("erm_") for s in samples)
  # Chains left noise: they are not their uniform starts, nor blank.
  images = np.asarray(state["stic"].chains.pool.images)
  assert np.all(np.asarray(state["stic"].chains.pool.rounds) == 2)
  assert 0.05 < images.std() and images.mean() < 0.9
  # Mixup chains' λ are in (0, 1); class chains' are 1, of their class.
  lam = np.asarray(state["stic"].chains.lam)
  assert np.all(lam[:20] == 1) and np.all((lam[20:] > 0) & (lam[20:] < 1))
  labels = np.asarray(trainer.labels)[np.asarray(state["stic"].chains.first)]
  np.testing.assert_array_equal(labels[:20], np.arange(20) % 10)


def test_variants_share_initial_weights_and_resume_equals_uninterrupted(
    tmp_path, trainer, tiny_run):
  config, _, state, _ = tiny_run
  first = load_config("stic_digits.py:tiny")
  first.rounds = 1
  workdir = str(tmp_path / "resumed")
  harness.run_rounds(trainer, first, workdir)
  resumed = harness.run_rounds(trainer, config, workdir)
  assert_trees_equal(jax.device_get(resumed), jax.device_get(state))
  init = trainer.init_state()
  for v in ("stic_erm", "stic"):
    assert_trees_equal(jax.device_get(init[v].params),
                       jax.device_get(init["erm"].params))


def _one_sentence(message, start, fix):
  assert message.startswith(start), message
  assert fix in message, message
  assert message.endswith("the last checkpoint is intact."), message
  assert message.count(". ") == 0 and "\n" not in message, message


def _pass_3_from_copy(tiny_run, tmp_path):
  workdir = str(tmp_path / "copy")
  shutil.copytree(tiny_run[1], workdir)
  config = load_config("stic_digits.py:tiny")
  config.rounds = 3
  return workdir, config


def test_nan_in_training_stops_and_keeps_checkpoint(tmp_path, trainer,
                                                    tiny_run):
  workdir, config = _pass_3_from_copy(tiny_run, tmp_path)
  config.train.learning_rate = 1e30
  saved, _ = restore_latest(trainer, workdir)
  with pytest.raises(NonFiniteError) as error:
    stic.train_and_evaluate(config, workdir)
  _one_sentence(str(error.value), "NaN or Inf in the erm classifier's loss "
                "or weights in pass 3", "lower train.learning_rate")
  restored, last = restore_latest(trainer, workdir)
  assert last == 2
  assert_trees_equal(restored, saved)


def test_nan_in_the_chains_stops_and_keeps_checkpoint(tmp_path, trainer,
                                                      tiny_run, monkeypatch):
  workdir, config = _pass_3_from_copy(tiny_run, tmp_path)
  saved, _ = restore_latest(trainer, workdir)
  real = scores.gram_regularised

  def nan_score(*args):
    inner = real(*args)
    return lambda x, key: jax.tree.map(lambda a: a * jnp.nan, inner(x, key))

  monkeypatch.setattr(scores, "gram_regularised", nan_score)
  with pytest.raises(NonFiniteError) as error:
    stic.train_and_evaluate(config, workdir)
  _one_sentence(str(error.value), "NaN or Inf in stic_erm's chains",
                "lower synthesis.learning_rate")
  restored, last = restore_latest(trainer, workdir)
  assert last == 2
  assert_trees_equal(restored, saved)


@pytest.mark.parametrize("override,message", [
    ({"stic.mixup_alpha": 0.0}, "stic.mixup_alpha=0.0 must be > 0"),
    ({"stic.restart_probability": 1.5}, "stic.restart_probability=1.5 is "
     "not a probability"),
    ({"stic.gram_layers": ("conv9",)}, "stic.gram_layers names 'conv9'"),
    ({"stic.sampler": "hmc"}, "Unknown stic.sampler='hmc'"),
    ({"stic.variants": ("stic", "gan")}, "stic.variants=.* must name"),
])
def test_bad_settings_stop_with_one_sentence(override, message):
  config = load_config("stic_digits.py:tiny")
  for key, value in override.items():
    section, field = key.split(".")
    config[section][field] = value
  with pytest.raises(ConfigError, match=message):
    stic.SynthesizeItClassifier(config, parallel.make_mesh())


def test_a_label_count_that_does_not_match_the_data_is_refused():
  config = load_config("stic_digits.py:tiny")
  config.data.num_classes = 5
  with pytest.raises(DataError, match="num_classes"):
    stic.SynthesizeItClassifier(config, parallel.make_mesh())


def test_sample_draws_each_class_from_a_saved_workdir_in_a_fresh_process(
    tiny_run):
  _, workdir, _, _ = tiny_run
  out = os.path.join(workdir, "drawn.png")
  result = subprocess.run(
      [sys.executable, "-m", "introjax.sample", f"--workdir={workdir}",
       "--num_images=3", "--steps=5", f"--out={out}"], cwd=REPO,
      env=subprocess_env(), capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  grid = np.asarray(PIL.Image.open(out))
  # Ten rows of three 8×8 samples shown at 32×32 (2-pixel gaps), not
  # blank, not constant.
  assert grid.shape[:2] == (10 * 32 + 9 * 2, 3 * 32 + 2 * 2)
  assert grid.std() > 10
  bad = subprocess.run(
      [sys.executable, "-m", "introjax.sample", f"--workdir={workdir}",
       "--class_label=12"], cwd=REPO, env=subprocess_env(),
      capture_output=True, text=True, timeout=300)
  assert bad.returncode != 0 and "Traceback" not in bad.stderr
  assert "--class_label=12 is not a class of this model (0 … 9)" in (
      bad.stderr.strip().splitlines()[-1])


def test_paper_configs_name_layers_their_networks_have():
  for spec, shape in (("stic_mnist.py", (28, 28, 1)),
                      ("stic_mnist.py:cpu", (28, 28, 1)),
                      ("stic_cifar10.py", (32, 32, 3))):
    config = load_config(spec)
    net = classifiers.build_classifier(config.model, 11)
    classifiers.resolve_conv_names(net, shape, config.stic.gram_layers,
                                   "stic.gram_layers")


def test_mnist_through_mock_tfds_trains_one_pass(tmp_path):
  import tensorflow_datasets as tfds
  config = load_config("stic_mnist.py:cpu")
  config.rounds = 1
  config.model.features = (8, 16)
  config.stic.gram_layers = ("conv0", "conv1")
  config.stic.variants = ("stic",)
  config.stic.steps_per_pass = 5
  config.stic.chains_per_class, config.stic.mixup_chains = 1, 2
  config.stic.references_per_class = 1
  config.synthesis.max_steps = 3
  config.data.max_train, config.data.max_test = 64, 48
  config.train.batch_size = 16
  config.eval.batch_size = 48
  config.eval.final = "test_error"
  with tfds.testing.mock_data(num_examples=64):
    _, results = stic.train_and_evaluate(config, str(tmp_path))
  assert results["dataset"].endswith("mnist")
  assert 0 <= results["test_error"]["stic"] <= 1
  assert (tmp_path / "samples" / "stic_classes_pass_001.png").exists()
