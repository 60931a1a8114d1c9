"""The sampler: early-stopped ascent, stopping rules, anysize gradients."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from introjax.models.critics import DCGANCritic, init_critic
from introjax.sampling import anysize
from introjax.sampling.ascent import AscentSettings, ascend, logit_ascent
from introjax.sampling.stopping import (FixedSteps, LogitAbove,
                                        PerSampleThreshold,
                                        WindowedProbability)


@pytest.fixture(scope="module")
def critic():
  model = DCGANCritic(features=(4, 8))
  params = init_critic(model, jax.random.PRNGKey(0), (16, 16, 3))
  return functools.partial(lambda p, x: model.apply({"params": p}, x), params)


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


def test_anysize_gradient_equals_per_patch_loop(critic):
  canvases = noise(2, (21, 19, 3), seed=3)
  patch, per_canvas = 16, 5
  key = jax.random.PRNGKey(7)
  logits, grad = anysize.patch_averaged_ascent(critic, patch, per_canvas)(
      canvases, key)

  origins = np.asarray(anysize.random_origins(key, 2, per_canvas, (21, 19),
                                              patch))
  one_grad = jax.grad(lambda p: critic(p[None])[0])
  summed = np.zeros(canvases.shape)
  count = np.zeros(canvases.shape[:3] + (1,))
  expected_logits = np.zeros((2, per_canvas))
  for b in range(2):
    for k, (r, c) in enumerate(origins[b]):
      piece = canvases[b, r:r + patch, c:c + patch]
      expected_logits[b, k] = critic(piece[None])[0]
      summed[b, r:r + patch, c:c + patch] += one_grad(piece)
      count[b, r:r + patch, c:c + patch] += 1
  expected = summed / np.maximum(count, 1)
  assert (count == 0).any() and (count > 1).any()  # gaps and overlaps tested
  np.testing.assert_allclose(logits, expected_logits, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-7)


def test_patch_count_keeps_training_density():
  assert anysize.patches_for_canvas(10, (320, 320), (320, 320)) == 10
  assert anysize.patches_for_canvas(10, (320, 320), (576, 576)) == 32
