"""STIC §5's variants: DRAW's filterbank and read and the Attentive-STIC
encoder against explicit float64 loops, its feature-space GRMALA objective
and gradient against a NumPy reference and central differences; Score-STIC's
trace (exact and Hutchinson) against an analytic Jacobian and the network's
own by central differences, its regulariser's parameter gradient by central
differences in float64, the learned-score direction; both variants end to
end on the tiny digits config; bad glimpses and score settings stopping
with one sentence.
"""
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from conftest import load_config
from introjax import parallel
from introjax.errors import ConfigError
from introjax.models import attention
from introjax.models import classifiers
from introjax.objectives import score_matching
from introjax.sampling import scores
from introjax.training import stic
from introjax.training import stic_networks


def _sigmoid(z):
  return 1 / (1 + np.exp(-z))


def _filterbank_loops(raw, n, h, w):
  """DRAW eq. 19–26 written out, one filter and pixel at a time."""
  gx_, gy_, log_var, log_delta, log_gamma = raw
  gx, gy = (w + 1) / 2 * (gx_ + 1), (h + 1) / 2 * (gy_ + 1)
  delta = (max(h, w) - 1) / max(n - 1, 1) * np.exp(log_delta)
  fy, fx = np.zeros((n, h)), np.zeros((n, w))
  for i in range(1, n + 1):
    mu_x = gx + (i - n / 2 - 0.5) * delta
    mu_y = gy + (i - n / 2 - 0.5) * delta
    for a in range(1, w + 1):
      fx[i - 1, a - 1] = np.exp(-(a - mu_x) ** 2 / (2 * np.exp(log_var)))
    for b in range(1, h + 1):
      fy[i - 1, b - 1] = np.exp(-(b - mu_y) ** 2 / (2 * np.exp(log_var)))
  fx /= fx.sum(axis=1, keepdims=True)
  fy /= fy.sum(axis=1, keepdims=True)
  return fy, fx, np.exp(log_gamma)


def _read_loops(x, x_hat, raw, n):
  """γ·[F_Y x F_Xᵀ, F_Y x̂ F_Xᵀ] per channel by loops, rasterised as
  (N, N, 2C)."""
  h, w, c = x.shape
  fy, fx, gamma = _filterbank_loops(raw, n, h, w)
  out = np.zeros((n, n, 2 * c))
  for image_index, image in enumerate((x, x_hat)):
    for ch in range(c):
      for i in range(n):
        for j in range(n):
          out[i, j, image_index * c + ch] = sum(
              fy[i, b] * image[b, a, ch] * fx[j, a]
              for b in range(h) for a in range(w))
  return gamma * out.reshape(-1)


def test_draw_filterbank_and_read_match_explicit_loops():
  rng = np.random.default_rng(0)
  raw = rng.normal(size=(3, 5)) * 0.5
  for n, (h, w) in ((3, (7, 9)), (1, (4, 4))):
    fy, fx, gamma = attention.filterbank(jnp.asarray(raw), n, h, w)
    for b in range(3):
      ry, rx, rg = _filterbank_loops(raw[b], n, h, w)
      np.testing.assert_allclose(fy[b], ry, rtol=1e-4, atol=1e-6)
      np.testing.assert_allclose(fx[b], rx, rtol=1e-4, atol=1e-6)
      assert gamma[b] == pytest.approx(rg, rel=1e-5)
  x = rng.uniform(-1, 1, (3, 7, 9, 2))
  x_hat = rng.uniform(-1, 1, (3, 7, 9, 2))
  v = attention.read(jnp.asarray(x), jnp.asarray(x_hat), jnp.asarray(raw), 3)
  for b in range(3):
    np.testing.assert_allclose(v[b], _read_loops(x[b], x_hat[b], raw[b], 3),
                               rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def attentive():
  """The tiny config's Attentive-STIC network (glimpse 3, 2 glimpses, 16
  features) on the 8×8 digits, and its initial weights."""
  config = load_config("stic_digits.py:tiny")
  config.stic.attentive.gram_weight = 0.7
  network = stic_networks.build("attentive", config, 10, (8, 8, 1))
  return network, network.init(jax.random.PRNGKey(2))


def test_attentive_encoder_matches_a_numpy_draw_reader_and_lstm(attentive):
  network, params = attentive
  net, hidden = network.module, network.module.hidden
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  rng = np.random.default_rng(1)
  x = rng.uniform(-1, 1, (2, 8, 8, 1))

  def encode(image):     # the module docstring, step by step
    h = c = np.zeros(hidden)
    v = np.zeros(2 * 9)
    x_hat = np.zeros_like(image)
    lstm = p["encoder"]
    gate = lambda g, v: (v @ lstm["i" + g]["kernel"] + h @ lstm["h" + g][
        "kernel"] + lstm["h" + g]["bias"])
    for _ in range(net.glimpses):
      x_hat = image - _sigmoid(x_hat)
      raw = (np.concatenate([v, h]) @ p["attention"]["kernel"] +
             p["attention"]["bias"])
      v = _read_loops(image, x_hat, raw, 3)
      i, f = _sigmoid(gate("i", v)), _sigmoid(gate("f", v))
      g, o = np.tanh(gate("g", v)), _sigmoid(gate("o", v))
      c = f * c + i * g
      h = o * np.tanh(c)
    return h

  f = net.apply({"params": params}, jnp.asarray(x, jnp.float32),
                method=attention.AttentiveClassifier.encode)
  for b in range(2):
    np.testing.assert_allclose(f[b], encode(x[b]), rtol=1e-4, atol=1e-6)
  # The decoder draws images of the input's size inside (−1, 1).
  drawn = net.apply({"params": params}, f,
                    method=attention.AttentiveClassifier.decode)
  assert drawn.shape == x.shape and float(jnp.abs(drawn).max()) < 1


def test_attentive_feature_space_objective_and_gradient_match_float64(
    attentive):
  """GRMALA on f: u(f) = Σ y·log softmax(head(f)) − w·‖ffᵀ − aaᵀ‖²/‖aaᵀ‖²,
  a the reference's features, against NumPy and central differences."""
  network, params = attentive
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  rng = np.random.default_rng(3)
  hidden = network.module.hidden
  f = rng.uniform(-0.9, 0.9, (2, hidden))
  references = rng.uniform(-1, 1, (2, 8, 8, 1))
  a = np.asarray(network.encode(params, jnp.asarray(references, jnp.float32)),
                 np.float64)
  targets = np.zeros((2, 11))
  targets[0, 3], targets[1, 1], targets[1, 7] = 1, 0.4, 0.6

  def reference(f):
    out = []
    for b in range(2):
      z = f[b] @ p["head_hidden"]["kernel"] + p["head_hidden"]["bias"]
      z = np.where(z > 0, z, 0.2 * z)
      logits = z @ p["logits"]["kernel"] + p["logits"]["bias"]
      log_p = logits - logits.max() - np.log(
          np.exp(logits - logits.max()).sum())
      g, r = np.outer(f[b], f[b]), np.outer(a[b], a[b])
      out.append((targets[b] * log_p).sum() -
                 0.7 * ((g - r) ** 2).sum() / (r ** 2).sum())
    return np.array(out)

  score = network.score_function(params, jnp.asarray(targets, jnp.float32),
                                 jnp.asarray(references, jnp.float32))
  u, grad = score(jnp.asarray(f, jnp.float32), None)
  np.testing.assert_allclose(np.asarray(u)[:, 0], reference(f), rtol=1e-4)
  h = 1e-6
  for index in [(0, 0), (0, 7), (1, 3), (1, hidden - 1)]:
    e = np.zeros(f.shape)
    e[index] = h
    numeric = (reference(f + e) - reference(f - e))[index[0]] / (2 * h)
    assert float(grad[index]) == pytest.approx(numeric, rel=2e-3, abs=1e-5)


def _tanh_score(w):
  """s(x) = tanh(W·vec(x)) shaped like x: an analytic Jacobian
  diag(1 − s²)·W, trace Σ_i (1 − s_i²)·W_ii."""
  def fn(x):
    s = jnp.tanh(x.reshape(x.shape[0], -1) @ w.T).reshape(x.shape)
    return s, jnp.zeros((x.shape[0], 2))
  return fn


def test_score_trace_exact_and_hutchinson_match_the_analytic_jacobian():
  rng = np.random.default_rng(4)
  w = jnp.asarray(rng.normal(size=(12, 12)) * 0.5, jnp.float32)
  x = jnp.asarray(rng.normal(size=(3, 2, 2, 3)), jnp.float32)
  s = np.tanh(np.asarray(x).reshape(3, -1) @ np.asarray(w).T)
  expected = ((1 - s ** 2) * np.diag(np.asarray(w))).sum(axis=1)
  _, exact, _ = score_matching.score_trace(_tanh_score(w), x, None, "exact")
  np.testing.assert_allclose(exact, expected, rtol=1e-5, atol=1e-6)
  _, estimate, _ = score_matching.score_trace(
      _tanh_score(w), x, jax.random.PRNGKey(0), "hutchinson", 4000)
  np.testing.assert_allclose(estimate, expected, atol=0.05)
  # One Rademacher probe is exact where the Jacobian is diagonal.
  diagonal = jnp.diag(jnp.diag(w))
  s = np.tanh(np.asarray(x).reshape(3, -1) * np.diag(np.asarray(w)))
  _, one, _ = score_matching.score_trace(
      _tanh_score(diagonal), x, jax.random.PRNGKey(1), "hutchinson", 1)
  np.testing.assert_allclose(
      one, ((1 - s ** 2) * np.diag(np.asarray(w))).sum(axis=1), rtol=1e-5)


@pytest.mark.parametrize("head", classifiers.SCORE_HEADS)
def test_score_stic_terms_on_the_network_match_central_differences(head):
  """½‖s‖², tr ∇ₓs (the network's own Jacobian by central differences: the
  trunk is piecewise linear) and ½‖y − p(y|x)‖² on a ScoreClassifier."""
  trunk = classifiers.build_classifier(ml_collections.ConfigDict(
      {"name": "icl_conv", "features": (4, 6), "kernel_size": 3}),
      16 + (4 if head == "shared" else 0))
  net = classifiers.ScoreClassifier(trunk=trunk, num_outputs=4, head=head)
  params = net.init(jax.random.PRNGKey(5), jnp.zeros((1, 4, 4, 1)))["params"]
  fn = jax.jit(lambda x: net.apply(
      {"params": params}, x,
      method=classifiers.ScoreClassifier.score_and_logits))
  rng = np.random.default_rng(6)
  x = rng.uniform(-1, 1, (2, 4, 4, 1))
  targets = np.eye(4)[[1, 3]]
  terms = score_matching.score_stic_terms(
      fn, jnp.asarray(x, jnp.float32), jnp.asarray(targets, jnp.float32),
      None, "exact")
  s, logits = (np.asarray(a, np.float64) for a in fn(jnp.asarray(
      x, jnp.float32)))
  p = np.exp(logits - logits.max(axis=1, keepdims=True))
  p /= p.sum(axis=1, keepdims=True)
  np.testing.assert_allclose(terms["score_norm"],
                             0.5 * (s ** 2).sum(axis=(1, 2, 3)), rtol=1e-5)
  np.testing.assert_allclose(terms["label_distance"],
                             0.5 * ((targets - p) ** 2).sum(axis=1), rtol=1e-5)
  h = 1e-2
  trace = np.zeros(2)
  for i in range(16):
    e = np.zeros(x.shape)
    e[:, i // 4, i % 4, 0] = h
    up = np.asarray(fn(jnp.asarray(x + e, jnp.float32))[0])
    down = np.asarray(fn(jnp.asarray(x - e, jnp.float32))[0])
    trace += (up - down)[:, i // 4, i % 4, 0] / (2 * h)
  np.testing.assert_allclose(terms["score_trace"], trace, rtol=2e-3,
                             atol=1e-3)


def test_score_stic_regulariser_parameter_gradient_by_central_differences():
  """The regulariser's gradient in the score network's weights (what
  training follows: a second derivative), float64."""
  rng = np.random.default_rng(7)
  with jax.enable_x64(True):
    x = jnp.asarray(rng.normal(size=(3, 2, 2, 1)))
    w0 = jnp.asarray(rng.normal(size=(4, 4)) * 0.6)
    head = jnp.asarray(rng.normal(size=(4, 3)))
    targets = jnp.asarray(np.eye(3)[[0, 2, 1]])

    def regulariser(w):
      def fn(x):
        s = jnp.tanh(x.reshape(3, -1) @ w.T)
        return s.reshape(x.shape), s @ head
      return score_matching.score_stic_regulariser(fn, x, targets, None,
                                                   "exact")[0]

    grad = np.asarray(jax.grad(regulariser)(w0))
    h = 1e-6
    for index in [(0, 0), (1, 2), (3, 1), (2, 2)]:
      e = np.zeros((4, 4))
      e[index] = h
      numeric = (float(regulariser(w0 + e)) -
                 float(regulariser(w0 - e))) / (2 * h)
      assert grad[index] == pytest.approx(numeric, rel=1e-6, abs=1e-9)


def test_plus_learned_score_adds_the_score_to_the_direction_only():
  rng = np.random.default_rng(8)
  x = jnp.asarray(rng.normal(size=(2, 3, 3, 1)), jnp.float32)
  inner = lambda x, key: (jnp.sum(x, axis=(1, 2, 3))[:, None], 2 * x)
  s = lambda x: jnp.sin(x)
  u, direction = scores.plus_learned_score(inner, s, 0.5)(x, None)
  np.testing.assert_allclose(u[:, 0], np.asarray(x).sum(axis=(1, 2, 3)),
                             rtol=1e-6)
  np.testing.assert_allclose(direction, 2 * np.asarray(x) +
                             0.5 * np.sin(np.asarray(x)), rtol=1e-6)


# The tiny digits run -------------------------------------------------------


@pytest.fixture(scope="module")
def variants_run(tmp_path_factory):
  config = load_config("stic_digits.py:tiny")
  config.stic.variants = ("score_stic", "attentive_stic")
  config.stic.steps_per_pass = 10
  config.eval.final = "test_error"
  trainer = stic.SynthesizeItClassifier(config, parallel.make_mesh())
  workdir = str(tmp_path_factory.mktemp("stic_variants"))
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(stic, "SynthesizeItClassifier",
                  lambda config, mesh: trainer)
    state, results = stic.train_and_evaluate(config, workdir)
  return trainer, workdir, state, results


def test_score_and_attentive_stic_train_and_synthesise_end_to_end(
    variants_run):
  trainer, workdir, state, results = variants_run
  config = trainer.config
  assert set(results["test_error"]) == {"score_stic", "attentive_stic"}
  assert all(e < 0.85 for e in results["test_error"].values())  # chance 0.9
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rounds = [json.loads(line) for line in f]
  assert [r["round"] for r in rounds] == [1, 2]
  chains = 10 * config.stic.chains_per_class + config.stic.mixup_chains
  for v in ("score_stic", "attentive_stic"):
    for r in rounds:
      assert r[f"{v}/synthesis_samples"] == chains
      assert np.isfinite(r[f"{v}/train_loss"])
  # Each trained its own regulariser: the score terms, the reconstruction.
  for term in ("score_norm", "score_trace", "label_distance"):
    assert f"score_stic/train_{term}" in rounds[0]
  first, last = (r["attentive_stic/train_reconstruction_mse"] for r in
                 (rounds[0], rounds[-1]))
  assert last < first
  # Attentive chains are the decoder's images, written back in place.
  images = np.asarray(state["attentive_stic"].chains.pool.images)
  assert images.shape == (chains, 8, 8, 1)
  assert np.abs(images).max() < 1 and images.std() > 0.01
  samples = set(os.listdir(os.path.join(workdir, "samples")))
  for v in ("score_stic", "attentive_stic"):
    assert {f"{v}_classes_pass_002.png", f"{v}_mixup_pass_001.png",
            f"{v}_interpolation_0_to_6.png"} <= samples


def test_score_stic_chains_follow_the_learned_score(variants_run):
  """The sampler's direction is ∇u + guidance · s(x), u the classifier's
  gram_regularised log p(y|x)."""
  trainer, _, state, _ = variants_run
  params = state["score_stic"].params
  net = trainer.networks["score_stic"]
  x0 = jax.random.uniform(jax.random.PRNGKey(9), (4, 8, 8, 1), minval=-1)
  targets = jax.nn.one_hot(jnp.arange(4), 11)
  refs = trainer.references[jnp.arange(4), 0]
  plain = stic_networks.ImageClassifier.score_function
  with_score, without, learned = jax.jit(lambda params, x0: (
      net.score_function(params, targets, refs)(x0, None)[1],
      plain(net, params, targets, refs)(x0, None)[1],
      net.learned_score(params, x0)))(params, x0)
  guidance = trainer.config.stic.score.guidance
  np.testing.assert_allclose(with_score - without, guidance * learned,
                             rtol=1e-3, atol=1e-6)
  assert float(jnp.abs(learned).mean()) > 1e-4


@pytest.mark.parametrize("override,message", [
    ({"stic.attentive.glimpse": 9}, r"stic.attentive.glimpse=9 must be a "
     r"whole number of pixels from 1 to the image's shorter side 8"),
    ({"stic.attentive.glimpse": 0}, r"stic.attentive.glimpse=0 must be"),
    ({"stic.attentive.glimpse": -2}, r"stic.attentive.glimpse=-2 must be"),
    ({"stic.attentive.glimpses": 0}, r"stic.attentive.glimpses=0 must be"),
    ({"stic.attentive.hidden": 0}, r"stic.attentive.hidden=0 .* must be ≥ 1"),
    ({"stic.score.trace": "sliced"}, r"Unknown stic.score.trace='sliced'"),
    ({"stic.score.head": "dense"}, r"Unknown stic.score.head='dense'; use "
     r"'shared' or 'on_score'"),
    ({"stic.score.projections": 0}, r"stic.score.projections=0 must be ≥ 1"),
    ({"synthesis.metropolis": True}, r"score_stic cannot take "
     r"synthesis.metropolis=True"),
    ({"stic.variants": ("stic", "score")}, r"stic.variants=.* must name"),
])
def test_bad_variant_settings_stop_with_one_sentence(override, message):
  config = load_config("stic_digits.py:tiny")
  config.stic.variants = ("score_stic", "attentive_stic")
  for key, value in override.items():
    *sections, field = key.split(".")
    node = config
    for section in sections:
      node = node[section]
    node[field] = value
  with pytest.raises(ConfigError, match=message) as error:
    stic.SynthesizeItClassifier(config, parallel.make_mesh())
  text = str(error.value)
  assert text.count(". ") == 0 and "\n" not in text and text.endswith(".")
