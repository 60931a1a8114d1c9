"""The sampler: early-stopped ascent, stopping rules, anysize gradients."""
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from introjax.errors import ConfigError
from introjax.models.critics import DCGANCritic, init_critic
from introjax.sampling import anysize
from introjax.sampling import scores
from introjax.sampling.ascent import AscentSettings, ascend
from introjax.sampling.scores import logit_ascent
from introjax.sampling.stopping import (FixedSteps, LogitAbove,
                                        PerSampleThreshold,
                                        WindowedProbability, build_stop_rule)


@pytest.fixture(scope="module")
def critic():
  model = DCGANCritic(features=(4, 8))
  # Compiled: op-by-op dispatch of the critic is many times slower on CPU.
  params = jax.jit(lambda key: init_critic(model, key, (16, 16, 3)))(
      jax.random.PRNGKey(0))
  return jax.jit(functools.partial(
      lambda p, x: model.apply({"params": p}, x), params))


def noise(batch, shape=(16, 16, 3), seed=1):
  return 0.3 * jax.random.normal(jax.random.PRNGKey(seed), (batch, *shape))


def test_ascent_raises_logit_of_every_sample(critic):
  x0 = noise(6)
  settings = AscentSettings(learning_rate=0.02, max_steps=10)
  x, stats = ascend(logit_ascent(critic), x0, jax.random.PRNGKey(2),
                    FixedSteps(), settings)
  before, after = critic(x0), critic(x)
  assert np.all(np.asarray(after) > np.asarray(before) + 0.1)
  np.testing.assert_array_equal(stats.steps, 10)
  assert not stats.stopped.any() and not stats.nonfinite


def test_langevin_noise_moves_samples_differently_per_key(critic):
  settings = AscentSettings(optimizer="sgd", learning_rate=0.0,
                            noise_std=0.1, max_steps=3, clip=None)
  run = lambda seed: ascend(logit_ascent(critic), noise(2),
                            jax.random.PRNGKey(seed), FixedSteps(),
                            settings)[0]
  a, b = run(0), run(1)
  assert not np.allclose(a, b)
  # three steps of N(0, 0.1²) noise: total displacement std ≈ 0.1·√3
  assert abs(float(jnp.std(a - noise(2))) - 0.1 * np.sqrt(3)) < 0.02


def test_stopped_sample_is_frozen(critic):
  x0 = noise(4)
  start = np.asarray(critic(x0))
  # sample 0 is done before its first step; 1 stops once its logit has
  # risen by 0.3; 2 and 3 never stop.
  thresholds = jnp.array([-np.inf, start[1] + 0.3, np.inf, np.inf])
  rule = PerSampleThreshold(thresholds)
  short, s_stats = ascend(logit_ascent(critic), x0, jax.random.PRNGKey(0),
                          rule, AscentSettings(learning_rate=0.02,
                                               max_steps=30))
  long, l_stats = ascend(logit_ascent(critic), x0, jax.random.PRNGKey(0),
                         rule, AscentSettings(learning_rate=0.02,
                                              max_steps=60))
  np.testing.assert_array_equal(short[0], x0[0])
  assert s_stats.steps[0] == 0 and s_stats.stopped[0]
  assert 0 < s_stats.steps[1] < 30 and s_stats.stopped[1]
  np.testing.assert_array_equal(short[1], long[1])  # frozen after stopping
  assert not np.allclose(short[2], long[2])         # still running samples move
  np.testing.assert_array_equal(l_stats.steps[2:], 60)


def test_logit_rule_stops_once_positive(critic):
  x0 = noise(5)
  _, stats = ascend(logit_ascent(critic), x0, jax.random.PRNGKey(0),
                    LogitAbove(0.0), AscentSettings(learning_rate=0.05,
                                                    max_steps=200))
  assert stats.stopped.all()
  assert np.all(np.asarray(stats.last_logit) > 0)


def windowed_reference(probs, window, threshold):
  """Plain Python: first step at which the mean of the last (up to) `window`
  probabilities exceeds `threshold`, per sample; None if never."""
  stops = []
  for trace in probs.T:
    stop = None
    for step in range(len(trace)):
      recent = trace[max(0, step - window + 1):step + 1]
      if sum(recent) / len(recent) > threshold:
        stop = step
        break
    stops.append(stop)
  return stops


def test_windowed_rule_matches_python_reference():
  rng = np.random.default_rng(0)
  steps, batch, patches, window = 60, 12, 3, 5
  # logits drifting upward from different starts, with noise
  drift = np.linspace(-3, 2, steps)[:, None, None]
  logits = (drift + rng.normal(0, 1.0, (steps, batch, patches)) +
            rng.normal(0, 1.5, (1, batch, 1))).astype(np.float32)
  probs = (1 / (1 + np.exp(-logits.astype(np.float64)))).mean(axis=2)
  expected = windowed_reference(probs, window, 0.5)
  assert len({s for s in expected}) > 3  # the trace exercises varied stops

  # Replay the trace through the sampler: x counts each sample's own steps
  # (SGD with unit gradient), and the score is the trace at that count.
  trace = jnp.asarray(logits)

  def score_and_grad(x, key):
    step = jnp.minimum(x[:, 0].astype(jnp.int32), steps - 1)
    return trace[step, jnp.arange(batch)], jnp.ones_like(x)

  rule = WindowedProbability(window=window, threshold=0.5)
  settings = AscentSettings(optimizer="sgd", learning_rate=1.0,
                            max_steps=steps, clip=None)
  _, stats = ascend(score_and_grad, jnp.zeros((batch, 1)),
                    jax.random.PRNGKey(0), rule, settings)
  for i, stop in enumerate(expected):
    if stop is None:
      assert not stats.stopped[i] and stats.steps[i] == steps
    else:
      assert stats.stopped[i] and stats.steps[i] == stop, (i, stop)


def test_nonfinite_gradients_are_flagged():
  def score_and_grad(x, key):
    return jnp.zeros((x.shape[0], 1)), jnp.full_like(x, jnp.nan)
  _, stats = ascend(score_and_grad, jnp.zeros((2, 3)), jax.random.PRNGKey(0),
                    FixedSteps(), AscentSettings(max_steps=2))
  assert stats.nonfinite


def per_patch_reference(critic, canvases, origins, patch):
  """Plain loop: each patch's logit, and per pixel the sum of the gradients
  of the patches covering it over how many cover it (float64)."""
  canvases = np.asarray(canvases)
  pieces = np.stack([canvases[b, r:r + patch, c:c + patch]
                     for b in range(len(canvases)) for r, c in origins[b]])
  # Each patch on its own: its logit and the gradient of that logit alone.
  one = lambda p: critic(p[None])[0]
  logits, grads = jax.jit(jax.vmap(jax.value_and_grad(one)))(pieces)
  logits = np.asarray(logits, np.float64).reshape(origins.shape[:2])
  grads = np.asarray(grads, np.float64).reshape(origins.shape[:2] +
                                                pieces.shape[1:])
  summed = np.zeros(canvases.shape)
  count = np.zeros(canvases.shape[:3] + (1,))
  for b in range(canvases.shape[0]):
    for k, (r, c) in enumerate(origins[b]):
      summed[b, r:r + patch, c:c + patch] += grads[b, k]
      count[b, r:r + patch, c:c + patch] += 1
  return logits, summed / np.maximum(count, 1), count


# Hand-picked corners on a 21×19 canvas with 16×16 patches (rows 0…5,
# columns 0…3): both far corners, a patch drawn twice, gaps and overlaps.
_PINNED_ORIGINS = np.array([[[0, 0], [5, 3], [2, 1], [2, 1], [5, 0]],
                            [[3, 2], [0, 3], [1, 0], [4, 1], [5, 3]]])


def test_anysize_gradient_equals_per_patch_loop(critic, monkeypatch):
  canvases = noise(2, (21, 19, 3), seed=3)
  patch, per_canvas = 16, 5
  key = jax.random.PRNGKey(7)
  ascent = lambda: jax.jit(scores.patch_average(critic, patch,
                                                         per_canvas))

  # The averaging, on origins fixed here rather than drawn.
  calls = []

  def pinned(key, num_canvases, patches_per_canvas, canvas_hw, patch_size):
    calls.append((num_canvases, patches_per_canvas, tuple(canvas_hw),
                  patch_size))
    return jnp.asarray(_PINNED_ORIGINS)

  with monkeypatch.context() as m:
    m.setattr(anysize, "random_origins", pinned)
    pinned_out = ascent()(canvases, key)
  assert calls == [(2, per_canvas, (21, 19), patch)]
  # The sampler's own draw: spread-out origins that differ between canvases
  # (test_random_origins_* checks their distribution).
  drawn_out = ascent()(canvases, key)
  drawn = np.asarray(anysize.random_origins(key, 2, per_canvas, (21, 19),
                                            patch))
  assert all(len({tuple(o) for o in canvas}) >= 3 for canvas in drawn)
  assert not np.array_equal(drawn[0], drawn[1])

  # One reference pass over both sets of origins.
  expected_logits, expected, count = per_patch_reference(
      critic, np.concatenate([canvases, canvases]),
      np.concatenate([_PINNED_ORIGINS, drawn]), patch)
  assert (count[:2] == 0).any() and (count[:2] > 1).any()  # gaps, overlaps
  for i, (logits, grad) in enumerate((pinned_out, drawn_out)):
    part = slice(2 * i, 2 * i + 2)
    np.testing.assert_allclose(logits, expected_logits[part], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(grad, expected[part], rtol=1e-4, atol=1e-7)


def test_random_origins_are_uniform_over_every_in_bounds_position():
  hw, patch = (21, 19), 16  # 6 row positions × 4 column positions
  origins = np.asarray(anysize.random_origins(jax.random.PRNGKey(0), 4, 6000,
                                              hw, patch))
  assert origins.shape == (4, 6000, 2)
  rows, cols = origins[..., 0], origins[..., 1]
  assert rows.min() >= 0 and cols.min() >= 0
  assert rows.max() <= hw[0] - patch and cols.max() <= hw[1] - patch
  counts = np.zeros((hw[0] - patch + 1, hw[1] - patch + 1))
  np.add.at(counts, (rows.ravel(), cols.ravel()), 1)
  # Every (row, column) pair drawn about equally often: within 5 binomial
  # standard deviations of 24,000 / 24 = 1,000 each.
  expected = rows.size / counts.size
  assert np.abs(counts - expected).max() < 5 * np.sqrt(expected), counts
  # Canvases and keys draw independently.
  assert not np.array_equal(origins[0], origins[1])
  other = anysize.random_origins(jax.random.PRNGKey(1), 4, 6000, hw, patch)
  assert not np.array_equal(origins, np.asarray(other))


def test_build_stop_rule_is_the_rule_the_config_names():
  synthesis = ml_collections.ConfigDict(dict(stop="windowed", window=7,
                                             stop_probability=0.6))
  assert build_stop_rule(synthesis) == WindowedProbability(window=7,
                                                           threshold=0.6)
  synthesis.stop = "logit"
  rule = build_stop_rule(synthesis)
  assert isinstance(rule, LogitAbove)
  # P(positive) > 0.6 is logit > ln(0.6 / 0.4).
  np.testing.assert_allclose(rule.threshold, np.log(1.5), rtol=1e-12)
  synthesis.stop = "fixed"
  assert build_stop_rule(synthesis) == FixedSteps()
  synthesis.stop = "window"
  with pytest.raises(ConfigError, match="Unknown synthesis.stop='window'"):
    build_stop_rule(synthesis)


def test_patch_count_keeps_training_density():
  assert anysize.patches_for_canvas(10, (320, 320), (320, 320)) == 10
  assert anysize.patches_for_canvas(10, (320, 320), (576, 576)) == 32
