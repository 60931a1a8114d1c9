"""WINN's sampler parts: per-sample thresholds and Langevin steps (§4.1)."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from introjax.errors import ConfigError, UserError
from introjax.sampling.ascent import AscentSettings, ascend
from introjax.sampling.scores import logit_ascent
from introjax.sampling.stopping import (FixedSteps, PerSampleThreshold,
                                        winn_thresholds)

CENTRE = 0.5


def quadratic(x):
  """A tiny "critic": f(x) = −‖x − 0.5‖² per sample, ∇f = −2(x − 0.5)."""
  return -jnp.sum((x - CENTRE) ** 2, axis=tuple(range(1, x.ndim)))


def reference_ascent(x0, thresholds, lr, max_steps, optimizer, b1=0.9,
                     b2=0.99, eps=1e-8, clip=1.0):
  """Plain-Python, one sample at a time: evaluate, stop if above the
  threshold, else take one step."""
  xs, steps, stopped = [], [], []
  for x, thr in zip(np.asarray(x0, np.float64), thresholds):
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    n = 0
    done = False
    for _ in range(max_steps):
      if -np.sum((x - CENTRE) ** 2) > thr:
        done = True
        break
      g = -2 * (x - CENTRE)
      n += 1
      if optimizer == "adam":
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        x = x + lr * (m / (1 - b1 ** n)) / (np.sqrt(v / (1 - b2 ** n)) + eps)
      else:
        x = x + lr * g
      x = np.clip(x, -clip, clip)
    xs.append(x)
    steps.append(n)
    stopped.append(done)
  return np.stack(xs), np.array(steps), np.array(stopped)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_per_sample_threshold_matches_python_loop(optimizer):
  x0 = jax.random.uniform(jax.random.PRNGKey(0), (6, 3, 3, 2), minval=-1,
                          maxval=1)
  positives = -jnp.linspace(0.2, 3.0, 5)   # f of some "positive" samples
  thresholds = winn_thresholds(jax.random.PRNGKey(1), positives, 6)
  # The last sample can never stop: it runs into the step cap.
  thresholds = thresholds.at[-1].set(1.0)
  lr = 0.02 if optimizer == "adam" else 0.01
  settings = AscentSettings(optimizer=optimizer, learning_rate=lr, b1=0.9,
                            b2=0.99, max_steps=80, clip=1.0)
  x, stats = jax.jit(lambda x0, rule: ascend(
      logit_ascent(quadratic), x0, jax.random.PRNGKey(2), rule, settings))(
          x0, PerSampleThreshold(thresholds))
  ref_x, ref_steps, ref_stopped = reference_ascent(
      x0, np.asarray(thresholds), lr, 80, optimizer)
  np.testing.assert_array_equal(stats.steps, ref_steps)
  np.testing.assert_array_equal(stats.stopped, ref_stopped)
  np.testing.assert_allclose(x, ref_x, atol=1e-5)
  # Samples stopped at different steps, and one ran to the cap.
  assert len(set(ref_steps[:-1].tolist())) > 2 and ref_steps[-1] == 80


def test_thresholds_are_uniform_between_min_and_max_positive():
  positives = jnp.array([-2.0, 0.5, 1.0, 3.0])
  t = np.asarray(winn_thresholds(jax.random.PRNGKey(0), positives, 20000))
  assert t.shape == (20000,) and t.dtype == np.float32
  assert t.min() >= -2.0 and t.max() <= 3.0
  # U[−2, 3]: mean 0.5, variance 25/12.
  assert abs(t.mean() - 0.5) < 0.05 and abs(t.var() - 25 / 12) < 0.1
  # Patch logits (N, P): a positive's score is its mean patch logit.
  patches = jnp.array([[1.0, 3.0], [4.0, 6.0]])
  tp = np.asarray(winn_thresholds(jax.random.PRNGKey(1), patches, 500))
  assert tp.min() >= 2.0 and tp.max() <= 5.0


def test_empty_positives_raise_one_sentence():
  with pytest.raises(ConfigError, match="no positives") as err:
    winn_thresholds(jax.random.PRNGKey(0), jnp.zeros((0,)), 8)
  assert isinstance(err.value, UserError)


def _zero_gradient(x, key):
  del key
  return jnp.zeros((x.shape[0], 1)), jnp.zeros_like(x)


def _langevin(eps, anneal=1.0, noise=True, max_steps=1):
  return AscentSettings(optimizer="langevin", learning_rate=eps,
                        anneal=anneal, langevin_noise=noise,
                        max_steps=max_steps, clip=None)


def test_langevin_increments_have_variance_eps():
  # η ~ N(0, ε): variance ε, not ε². 128k draws: the sample variance is
  # within ~1% (4 standard errors) of ε.
  eps = 0.04
  x0 = jnp.zeros((64, 2048))
  run = jax.jit(lambda s, n: ascend(_zero_gradient, x0, jax.random.PRNGKey(s),
                                    FixedSteps(), _langevin(eps, 0.5, True,
                                                            n))[0],
                static_argnums=1)
  one = np.asarray(run(0, 1))
  assert abs(one.mean()) < 4 * np.sqrt(eps / one.size)
  np.testing.assert_allclose(one.var(), eps, rtol=0.016)
  # Annealed: the second step has variance ε·0.5, independent of the first,
  # and the same key replays the first step.
  two = np.asarray(run(0, 2))
  np.testing.assert_allclose((two - one).var(), eps * 0.5, rtol=0.016)
  assert abs(np.corrcoef(one.ravel(), (two - one).ravel())[0, 1]) < 0.02
  # A different key draws different noise.
  assert not np.allclose(run(1, 1), one)


def test_langevin_without_noise_takes_half_eps_gradient_steps():
  x0 = jax.random.uniform(jax.random.PRNGKey(0), (3, 4, 4, 1), minval=-1,
                          maxval=1)
  eps, anneal, steps = 0.1, 0.9, 7
  x, stats = ascend(logit_ascent(quadratic), x0, jax.random.PRNGKey(1),
                    FixedSteps(), _langevin(eps, anneal, False, steps))
  ref = np.asarray(x0)
  for t in range(steps):
    ref = ref + eps * anneal ** t / 2 * (-2 * (ref - CENTRE))
  np.testing.assert_allclose(x, ref, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(stats.steps, steps)


def test_from_config_reads_langevin_fields_with_defaults():
  synthesis = ml_collections.ConfigDict(dict(
      optimizer="adam", learning_rate=0.01, b1=0.9, b2=0.99, noise_std=0.0,
      max_steps=10, clip=1.0))
  # A config written before Langevin existed still loads.
  s = AscentSettings.from_config(synthesis)
  assert s.anneal == 1.0 and s.langevin_noise
  synthesis.optimizer = "langevin"
  synthesis.anneal = 0.99
  synthesis.langevin_noise = False
  s = AscentSettings.from_config(synthesis)
  assert s.optimizer == "langevin" and s.anneal == 0.99
  assert not s.langevin_noise
  synthesis.optimizer = "adam"
  with pytest.raises(ConfigError, match="anneal"):
    AscentSettings.from_config(synthesis)
