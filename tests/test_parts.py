"""The engine's parts, each against an explicit NumPy or Python loop: the
sampler's step rules, p0, the optimiser builder, the fit loop, generation
through a cascade and the member registry."""
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from conftest import REPO, subprocess_env
from introjax import generation
from introjax import members
from introjax import optim
from introjax.errors import ConfigError
from introjax.sampling import ascent
from introjax.sampling import p0
from introjax.sampling import scores
from introjax.sampling import steps
from introjax.sampling import stopping
from introjax.training import fit

# Sampler steps ---------------------------------------------------------------

# A per-sample concave quadratic: logit_i = -½ Σ_d w_d (x_id - c_d)², so the
# ascent direction is -w (x - c), different at every x.
_W = np.array([1.0, 0.5, 2.0], np.float32)
_C = np.array([0.3, -0.2, 0.1], np.float32)


def _quadratic_logits(x):
  return -0.5 * jnp.sum(_W * (x - _C) ** 2, axis=1)


def _np_logits(x):
  return -0.5 * np.sum(_W * (x - _C) ** 2, axis=1)


def _np_direction(x):
  return -_W * (x - _C)


def _x0(batch=4):
  rng = np.random.default_rng(0)
  return rng.uniform(-0.9, 0.9, (batch, 3)).astype(np.float32)


def _np_adam(s):
  def init(x):
    return (np.zeros_like(x), np.zeros_like(x))

  def update(t, counts, x, g, state, noise):
    del t, noise
    m, v = state
    m = s.b1 * m + (1 - s.b1) * g
    v = s.b2 * v + (1 - s.b2) * g * g
    n = np.maximum(counts, 1)[:, None].astype(np.float64)
    return (s.learning_rate * (m / (1 - s.b1 ** n))
            / (np.sqrt(v / (1 - s.b2 ** n)) + s.eps)), (m, v)
  return init, update


def _np_sgd(s):
  def update(t, counts, x, g, state, noise):
    return s.learning_rate * g, state
  return (lambda x: ()), update


def _np_langevin(s):
  def update(t, counts, x, g, state, noise):
    eps_t = s.learning_rate * s.anneal ** t
    delta = eps_t / 2 * g
    if s.langevin_noise:
      delta = delta + np.sqrt(eps_t) * noise["eta"]
    return delta, state
  return (lambda x: ()), update


def _np_grmala(s):
  """MALA-approx (STIC eq. 3): ε1·direction + ε3·η, η the rule's own draw
  (fold_in(noise key, 1), as Langevin's)."""
  def update(t, counts, x, g, state, noise):
    delta = s.learning_rate * g
    if s.proposal_noise:
      delta = delta + s.proposal_noise * noise["eta"]
    return delta, state
  return (lambda x: ()), update


_NP_STEPS = {"adam": _np_adam, "sgd": _np_sgd, "langevin": _np_langevin,
             "grmala": _np_grmala}


def _np_noise(key, steps_run, shape):
  """The draws `ascent.ascend` makes at each step, in its key order: the
  loop splits its key in three (carry, score, noise); the noise_std draw
  uses the noise key, Langevin's η its fold_in(·, 1)."""
  draws = []
  for _ in range(steps_run):
    key, _, k_noise = jax.random.split(key, 3)
    draws.append({
        "noise": np.asarray(jax.random.normal(k_noise, shape), np.float64),
        "eta": np.asarray(jax.random.normal(jax.random.fold_in(k_noise, 1),
                                            shape), np.float64)})
  return draws


def _np_ascend(x0, s, thresholds, key=None):
  """The documented ascent: evaluate at x, retire samples whose mean logit
  exceeds their threshold, move the running ones by the step rule plus
  noise_std noise, clip; frozen samples keep x and rule state."""
  init, update = _NP_STEPS[s.optimizer](s)
  x = x0.astype(np.float64)
  state = init(x)
  batch = x.shape[0]
  running = np.ones(batch, bool)
  counts = np.zeros(batch, np.int64)
  first = last = None
  draws = _np_noise(key, s.max_steps, x.shape) if key is not None else None
  for t in range(s.max_steps):
    if not running.any():
      break
    logits, g = _np_logits(x), _np_direction(x)
    first = logits if t == 0 else first
    last = np.where(running, logits, last if last is not None else 0.0)
    running = running & ~(logits > thresholds)
    counts = counts + running
    noise = draws[t] if draws is not None else None
    delta, new_state = update(t, counts, x, g, state, noise)
    if s.noise_std:
      delta = delta + s.noise_std * noise["noise"]
    new_x = x + delta
    if s.clip is not None:
      new_x = np.clip(new_x, -s.clip, s.clip)
    keep = running[:, None]
    x = np.where(keep, new_x, x)
    state = tuple(np.where(keep, n, o) for n, o in zip(new_state, state))
  return x, counts, ~running, first, last


def _jax_ascend(x0, s, rule, key=jax.random.PRNGKey(3)):
  return jax.jit(lambda x, k: ascent.ascend(
      scores.logit_ascent(_quadratic_logits), x, k, rule, s))(
          jnp.asarray(x0), key)


def test_step_registry_names_the_four_rules():
  assert set(steps.STEPS) == {"adam", "sgd", "langevin", "grmala"}
  assert set(_NP_STEPS) == set(steps.STEPS)


@pytest.mark.parametrize("settings", [
    ascent.AscentSettings(optimizer="adam", learning_rate=0.05, b1=0.6,
                          b2=0.9, max_steps=12, clip=0.8),
    ascent.AscentSettings(optimizer="sgd", learning_rate=0.3, max_steps=12,
                          clip=0.8),
    ascent.AscentSettings(optimizer="langevin", learning_rate=0.4,
                          anneal=0.8, langevin_noise=False, max_steps=12,
                          clip=None),
], ids=["adam", "sgd", "langevin_without_noise"])
def test_fixed_step_ascent_equals_numpy_loop(settings):
  x0 = _x0()
  x, stats = _jax_ascend(x0, settings, stopping.FixedSteps())
  want, counts, stopped, first, last = _np_ascend(
      x0, settings, np.full(4, np.inf))
  np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(stats.steps, counts)
  np.testing.assert_array_equal(stats.steps, settings.max_steps)
  assert not np.asarray(stats.stopped).any()
  np.testing.assert_allclose(stats.first_logit, first, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(stats.last_logit, last, rtol=1e-5, atol=1e-6)
  # The climb did something: every logit rose.
  assert (_np_logits(want) > first).all()


def test_langevin_with_noise_reproduces_the_loops_key_stream():
  s = ascent.AscentSettings(optimizer="langevin", learning_rate=0.02,
                            anneal=0.7, langevin_noise=True, noise_std=0.05,
                            max_steps=5, clip=1.0)
  x0, key = _x0(), jax.random.PRNGKey(11)
  x, _ = _jax_ascend(x0, s, stopping.FixedSteps(), key)
  want = _np_ascend(x0, s, np.full(4, np.inf), key)[0]
  np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-6)
  # Without the noise the samples would land elsewhere.
  s0 = s.replace(noise_std=0.0, langevin_noise=False)
  assert np.abs(want - _np_ascend(x0, s0, np.full(4, np.inf))[0]).max() > 1e-2


def test_grmala_without_metropolis_is_the_step_plus_its_own_noise():
  s = ascent.AscentSettings(optimizer="grmala", learning_rate=0.2,
                            proposal_noise=0.05, max_steps=6, clip=1.0)
  x0, key = _x0(), jax.random.PRNGKey(12)
  x, stats = _jax_ascend(x0, s, stopping.FixedSteps(), key)
  want = _np_ascend(x0, s, np.full(4, np.inf), key)[0]
  np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(stats.step_state, 6)   # every move taken


def test_langevin_noise_has_variance_eps_t_plus_noise_std_squared():
  # A flat score: x moves by noise alone. After T steps each coordinate has
  # variance Σ_t ε_t (η ~ N(0, ε_t)) + T·noise_std², the two draws
  # independent.
  s = ascent.AscentSettings(optimizer="langevin", learning_rate=0.01,
                            anneal=0.5, langevin_noise=True, noise_std=0.05,
                            max_steps=3, clip=None)
  flat = lambda x, key: (jnp.zeros((x.shape[0], 1)), jnp.zeros_like(x))
  x0 = jnp.zeros((4096, 8))
  x, stats = jax.jit(lambda x, k: ascent.ascend(
      flat, x, k, stopping.FixedSteps(), s))(x0, jax.random.PRNGKey(5))
  x = np.asarray(x, np.float64)
  expected = sum(0.01 * 0.5 ** t for t in range(3)) + 3 * 0.05 ** 2
  np.testing.assert_allclose(x.var(), expected, rtol=0.05)
  assert abs(x.mean()) < 0.005
  np.testing.assert_array_equal(stats.steps, 3)


def test_frozen_sample_keeps_its_x_while_the_others_climb():
  s = ascent.AscentSettings(optimizer="adam", learning_rate=0.05, b1=0.5,
                            b2=0.9, max_steps=25, clip=1.0)
  x0 = _x0()
  first = _np_logits(x0)
  # Sample 0 stops halfway to its maximum (0); the others never stop
  # (logits stay ≤ 0).
  thresholds = np.array([first[0] / 2, 1.0, 1.0, 1.0], np.float32)
  x, stats = _jax_ascend(x0, s, stopping.PerSampleThreshold(
      jnp.asarray(thresholds)))
  want, counts, stopped, _, last = _np_ascend(x0, s, thresholds)
  assert 0 < counts[0] < s.max_steps  # the rule fired partway
  np.testing.assert_array_equal(counts[1:], s.max_steps)
  np.testing.assert_array_equal(stats.steps, counts)
  np.testing.assert_array_equal(stats.stopped, [True, False, False, False])
  np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-6)
  # Its last logit is the one at its final x, above its threshold.
  np.testing.assert_allclose(stats.last_logit[0], _np_logits(want)[:1],
                             rtol=1e-5)
  assert stats.last_logit[0] > thresholds[0]
  # Run only as far as it got: sample 0 ends where it ended above.
  x_short, _ = _jax_ascend(x0, s.replace(max_steps=int(counts[0])),
                           stopping.FixedSteps())
  np.testing.assert_allclose(x[0], x_short[0], rtol=1e-6)


def test_adam_bias_correction_counts_each_samples_own_updates():
  rule = steps.Adam(learning_rate=0.1, b1=0.5, b2=0.9)
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(3, 2, 2)), jnp.float32)
  g = rng.normal(size=(3, 2, 2)).astype(np.float32)
  m = rng.normal(size=(3, 2, 2)).astype(np.float32)
  v = rng.uniform(0.1, 1.0, (3, 2, 2)).astype(np.float32)
  counts = np.array([1, 4, 9], np.int32)
  ctx = steps.StepContext(step=jnp.int32(20), sample_steps=jnp.asarray(counts),
                          key=jax.random.PRNGKey(0), score_and_grad=None)
  delta, (m1, v1) = rule.update(ctx, x, jnp.asarray(g), (m, v))
  for i, n in enumerate(counts):
    mi = 0.5 * m[i] + 0.5 * g[i].astype(np.float64)
    vi = 0.9 * v[i] + 0.1 * g[i].astype(np.float64) ** 2
    want = 0.1 * (mi / (1 - 0.5 ** n)) / (np.sqrt(vi / (1 - 0.9 ** n)) + 1e-8)
    np.testing.assert_allclose(delta[i], want, rtol=1e-5)
    np.testing.assert_allclose(m1[i], mi, rtol=1e-6)
    np.testing.assert_allclose(v1[i], vi, rtol=1e-6)


def test_unknown_synthesis_optimizer_names_the_known_ones():
  synthesis = ml_collections.ConfigDict(dict(
      optimizer="rmsprop", learning_rate=0.1, b1=0.5, b2=0.999,
      noise_std=0.0, max_steps=5, clip=1.0))
  with pytest.raises(ConfigError, match="rmsprop") as e:
    ascent.AscentSettings.from_config(synthesis)
  for name in ("adam", "sgd", "langevin"):
    assert repr(name) in str(e.value)
  synthesis.optimizer = "langevin"
  assert ascent.AscentSettings.from_config(synthesis).optimizer == "langevin"


def test_summarize_reports_the_stats_as_host_numbers():
  stats = ascent.AscentStats(
      steps=jnp.array([3, 7, 2, 7]), stopped=jnp.array([1, 0, 1, 0], bool),
      first_logit=jnp.array([-2.0, -1.0, -3.0, -0.5]),
      last_logit=jnp.array([0.5, -0.2, 0.1, 0.3]), nonfinite=jnp.bool_(False))
  metrics = ascent.summarize(stats, jnp.array([0.4, -0.1, 0.9, 0.2]))
  assert metrics == pytest.approx(dict(
      synthesis_steps_mean=4.75, synthesis_steps_max=7,
      synthesis_stopped_early=2, synthesis_samples=4,
      synthesis_logit_start=-1.625, synthesis_logit_end=0.175,
      synthesis_nonfinite=False, synthesis_threshold_min=-0.1,
      synthesis_threshold_max=0.9))
  assert "synthesis_threshold_min" not in ascent.summarize(stats)


# p0 ------------------------------------------------------------------------

_P0_SETTINGS = {"gaussian": dict(std=0.3), "uniform": {}, "blank": {},
                "upsampling": dict(network_key=jax.random.PRNGKey(7),
                                   patch=8)}


def test_p0_registry_names():
  assert set(p0.P0) == set(_P0_SETTINGS)


@pytest.mark.parametrize("name", sorted(_P0_SETTINGS))
def test_p0_shape_dtype_and_range(name):
  x = p0.build(name, **_P0_SETTINGS[name])(jax.random.PRNGKey(0), 2,
                                           (16, 16, 3))
  assert x.shape == (2, 16, 16, 3)
  assert x.dtype == jnp.float32
  assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0


def test_gaussian_p0_is_a_clipped_normal_of_its_std():
  std = 0.6   # clipping at ±1 = ±1.67σ cuts about a tenth of the draws
  x = np.asarray(p0.build("gaussian", std=std)(jax.random.PRNGKey(1), 4000,
                                                (16,)), np.float64)
  # E[clip(σZ, -1, 1)²] by quadrature in float64.
  z = np.linspace(-10, 10, 200001)
  density = np.exp(-z * z / 2) / np.sqrt(2 * np.pi)
  second = np.trapezoid(np.clip(std * z, -1, 1) ** 2 * density, z)
  np.testing.assert_allclose(x.std(), np.sqrt(second), rtol=0.02)
  assert np.sqrt(second) < 0.95 * std   # the clipped std differs from σ
  assert x.min() == -1.0 and x.max() == 1.0
  assert abs(x.mean()) < 0.01


def test_blank_p0_is_all_ones():
  x = p0.build("blank")(jax.random.PRNGKey(2), 2, (4, 4, 1))
  np.testing.assert_array_equal(x, np.ones((2, 4, 4, 1), np.float32))


def test_uniform_p0_covers_the_range():
  x = np.asarray(p0.build("uniform")(jax.random.PRNGKey(3), 4000, (16,)),
                 np.float64)
  assert x.min() < -0.99 and x.max() > 0.99
  assert abs(x.mean()) < 0.01
  np.testing.assert_allclose(x.var(), 1 / 3, rtol=0.03)


def test_upsampling_p0_keys():
  shape = (16, 16, 3)
  net = jax.random.PRNGKey(7)
  # A canvas twice the patch: App. D's network on a 4×4 grid of z.
  sample = p0.build("upsampling", network_key=net, patch=8)
  a = np.asarray(sample(jax.random.PRNGKey(0), 2, shape))
  np.testing.assert_array_equal(a, sample(jax.random.PRNGKey(0), 2, shape))
  # The same network in another call (a new build, as each round makes).
  again = p0.build("upsampling", network_key=net, patch=8)
  np.testing.assert_array_equal(a, again(jax.random.PRNGKey(0), 2, shape))
  # Fresh z: other images from the same network.
  b = np.asarray(sample(jax.random.PRNGKey(1), 2, shape))
  assert np.abs(a - b).mean() > 0.05
  assert np.abs(a[0] - a[1]).mean() > 0.05
  # Another network on the same z: other images.
  other = p0.build("upsampling", network_key=jax.random.PRNGKey(8), patch=8)
  assert np.abs(a - np.asarray(other(jax.random.PRNGKey(0), 2,
                                     shape))).mean() > 0.05
  # The canvas is the network's whole output, min-max scaled per image.
  np.testing.assert_allclose(a.min(axis=(1, 2, 3)), -1.0, atol=1e-6)
  np.testing.assert_allclose(a.max(axis=(1, 2, 3)), 1.0, atol=1e-6)


def test_unknown_p0_names_the_known_ones():
  with pytest.raises(ConfigError, match="p0.name='perlin'") as e:
    p0.build("perlin", field="p0.name")
  for name in _P0_SETTINGS:
    assert repr(name) in str(e.value)


# Optimiser builder -----------------------------------------------------------

_GRAD = np.array([1.0, -2.0, 0.5], np.float32)


def _train(**fields):
  return ml_collections.ConfigDict(dict(learning_rate=0.1, **fields))


def _applied_rates(tx, num_steps):
  """The learning rate each update applies, read off SGD on the linear loss
  g·p (gradient g everywhere): update = -rate · g."""
  params = jnp.zeros(3)
  state = tx.init(params)
  grad_fn = jax.grad(lambda p: jnp.dot(jnp.asarray(_GRAD), p))
  rates = []
  for _ in range(num_steps):
    updates, state = tx.update(grad_fn(params), state, params)
    params = optax.apply_updates(params, updates)
    per_coordinate = -np.asarray(updates, np.float64) / _GRAD
    np.testing.assert_allclose(per_coordinate, per_coordinate[0], rtol=1e-6)
    rates.append(per_coordinate[0])
  return np.array(rates)


def test_constant_sgd_equals_optax_sgd():
  tx = optim.make_optimizer(_train(optimizer="sgd"))
  ref = optax.sgd(0.1)
  params = jnp.array([0.5, -1.0, 2.0])
  state, ref_state, ref_params = tx.init(params), ref.init(params), params
  rng = np.random.default_rng(0)
  for _ in range(4):
    g = jnp.asarray(rng.normal(size=3), jnp.float32)
    u, state = tx.update(g, state, params)
    r, ref_state = ref.update(g, ref_state, ref_params)
    params, ref_params = (optax.apply_updates(params, u),
                          optax.apply_updates(ref_params, r))
  np.testing.assert_array_equal(params, ref_params)
  np.testing.assert_allclose(_applied_rates(tx, 5), 0.1, rtol=1e-6)


def test_step_schedule_multiplies_every_decay_every_steps():
  tx = optim.make_optimizer(_train(schedule="step", decay_every=3,
                                   decay_factor=0.5))
  want = [0.1 * 0.5 ** (t // 3) for t in range(10)]
  np.testing.assert_allclose(_applied_rates(tx, 10), want, rtol=1e-6)


def test_round_schedule_switches_at_decay_step():
  train = _train(schedule="round", decay_round=3, decay_factor=0.1)
  tx = optim.make_optimizer(train, decay_step=4)
  want = [0.1 if t < 4 else 0.01 for t in range(7)]
  np.testing.assert_allclose(_applied_rates(tx, 7), want, rtol=1e-6)
  assert optim.round_learning_rate(train, 2) == 0.1
  np.testing.assert_allclose(optim.round_learning_rate(train, 3), 0.01)
  # A config naming decay_round > 0 without a schedule means "round".
  assert optim.schedule_name(_train(decay_round=2)) == "round"
  assert optim.schedule_name(_train()) == "constant"


def test_round_schedule_with_a_traced_decay_step():
  train = _train(schedule="round", decay_round=3, decay_factor=0.1)

  @jax.jit
  def rates(decay_step):
    tx = optim.make_optimizer(train, decay_step)
    params = jnp.zeros(3)
    state = tx.init(params)
    out = []
    for _ in range(6):
      updates, state = tx.update(jnp.asarray(_GRAD), state, params)
      out.append(-updates[0] / _GRAD[0])
    return jnp.stack(out)

  for switch in (2, 5):
    want = [0.1 if t < switch else 0.01 for t in range(6)]
    np.testing.assert_allclose(rates(jnp.int32(switch)), want, rtol=1e-6)


def test_weight_decay_adds_wd_times_params():
  tx = optim.make_optimizer(_train(weight_decay=0.05))
  params = np.array([0.5, -1.0, 2.0])
  p, state = jnp.asarray(params, jnp.float32), None
  state = tx.init(p)
  for _ in range(3):
    updates, state = tx.update(jnp.asarray(_GRAD), state, p)
    p = optax.apply_updates(p, updates)
    params = params - 0.1 * (_GRAD + 0.05 * params)
  np.testing.assert_allclose(p, params, rtol=1e-6)


def test_momentum_is_heavy_ball():
  tx = optim.make_optimizer(_train(momentum=0.9))
  p = jnp.zeros(3)
  state = tx.init(p)
  trace, want = np.zeros(3), np.zeros(3)
  rng = np.random.default_rng(2)
  for _ in range(4):
    g = rng.normal(size=3).astype(np.float32)
    updates, state = tx.update(jnp.asarray(g), state, p)
    p = optax.apply_updates(p, updates)
    trace = g + 0.9 * trace
    want = want - 0.1 * trace
  np.testing.assert_allclose(p, want, rtol=1e-5, atol=1e-7)


def test_adam_honours_b1_b2():
  tx = optim.make_optimizer(_train(optimizer="adam", b1=0.7, b2=0.8))
  p = jnp.zeros(3)
  state = tx.init(p)
  m = v = want = np.zeros(3)
  rng = np.random.default_rng(3)
  for t in range(1, 6):
    g = rng.normal(size=3).astype(np.float32)
    updates, state = tx.update(jnp.asarray(g), state, p)
    p = optax.apply_updates(p, updates)
    m = 0.7 * m + 0.3 * g
    v = 0.8 * v + 0.2 * g * g
    want = want - 0.1 * (m / (1 - 0.7 ** t)) / (
        np.sqrt(v / (1 - 0.8 ** t)) + 1e-8)
  np.testing.assert_allclose(p, want, rtol=1e-5)


@pytest.mark.parametrize("train, names", [
    (dict(optimizer="lion"), ("sgd", "adam")),
    (dict(schedule="cosine"), ("constant", "step", "round")),
    (dict(schedule="step", decay_every=0, decay_factor=0.5),
     ("decay_every",)),
    (dict(schedule="round", decay_round=2, decay_factor=0.1), ("'step'",)),
], ids=["optimizer", "schedule", "decay_every", "round_without_rounds"])
def test_bad_optimizer_settings_raise_config_error(train, names):
  with pytest.raises(ConfigError) as e:
    optim.make_optimizer(_train(**train))
  for name in names:
    assert (repr(name) if name.isalpha() else name) in str(e.value)


# Fit loop ------------------------------------------------------------------

_TARGET = np.array([1.0, -0.5, 0.25], np.float32)


def _quadratic_step_loss(params, key):
  """A batch drawn from `key`: the target moves a little with each draw."""
  target = jnp.asarray(_TARGET) + 0.1 * jax.random.normal(key, (3,))
  loss = 0.5 * jnp.sum((params["w"] - target) ** 2)
  return loss, {"norm": jnp.sum(jnp.abs(params["w"]))}


def _python_fit(step_loss, tx, params, key, num_steps):
  """The fit loop written out: per-step losses and aux, params after each."""
  state = tx.init(params)
  losses, auxes, history = [], [], []
  for t in range(num_steps):
    (loss, aux), grads = jax.value_and_grad(step_loss, has_aux=True)(
        params, jax.random.fold_in(key, t))
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    losses.append(float(loss))
    auxes.append(float(aux["norm"]))
    history.append(params)
  return np.array(losses), np.array(auxes), history


def _ema(values):
  out = []
  for i, v in enumerate(values):
    out.append(v if i == 0 else 0.9 * out[-1] + 0.1 * v)
  return np.array(out)


_fit = jax.jit(fit.fit, static_argnums=(0, 1, 6))
_PARAMS = {"w": jnp.zeros(3)}


def test_fit_equals_python_loop():
  tx, key, n = optax.sgd(0.2), jax.random.PRNGKey(4), 12
  params, _, run = _fit(_quadratic_step_loss, tx, _PARAMS, tx.init(_PARAMS),
                        key, jnp.int32(n), None)
  losses, auxes, history = _python_fit(_quadratic_step_loss, tx, _PARAMS, key,
                                       n)
  np.testing.assert_allclose(params["w"], history[-1]["w"], rtol=1e-5)
  assert int(run["steps"]) == n
  np.testing.assert_allclose(run["mean"]["loss"], losses.mean(), rtol=1e-5)
  np.testing.assert_allclose(run["mean"]["norm"], auxes.mean(), rtol=1e-5)
  np.testing.assert_allclose(run["smoothed"]["loss"], _ema(losses)[-1],
                             rtol=1e-5)
  np.testing.assert_allclose(run["smoothed"]["norm"], _ema(auxes)[-1],
                             rtol=1e-5)
  assert bool(run["finite"])


def test_fit_stops_at_the_loss_target():
  tx, key, n = optax.sgd(0.2), jax.random.PRNGKey(4), 30
  losses, _, history = _python_fit(_quadratic_step_loss, tx, _PARAMS, key, n)
  smoothed = _ema(losses)
  target = float(smoothed[9] + smoothed[10]) / 2   # crossed at step 11
  expected = int(np.argmax(smoothed <= target)) + 1
  assert 1 < expected < n and (smoothed[:expected - 1] > target).all()
  params, _, run = _fit(_quadratic_step_loss, tx, _PARAMS, tx.init(_PARAMS),
                        key, n, target)
  assert int(run["steps"]) == expected
  np.testing.assert_allclose(params["w"], history[expected - 1]["w"],
                             rtol=1e-5)
  np.testing.assert_allclose(run["smoothed"]["loss"], smoothed[expected - 1],
                             rtol=1e-5)
  assert float(run["smoothed"]["loss"]) <= target


def test_fit_stops_after_the_first_nonfinite_loss():
  # Plain SGD at rate 1 on Σ w: w[0] falls by 1 per step; the loss turns NaN
  # once w[0] < 1, at step k = 4 (w[0]: 4.5, 3.5, 2.5, 1.5, 0.5).
  def step_loss(params, key):
    del key
    w = params["w"]
    return jnp.sum(w) + jnp.where(w[0] < 1.0, jnp.nan, 0.0), {}

  tx, start = optax.sgd(1.0), {"w": jnp.array([4.5, 0.0])}
  params, _, run = _fit(step_loss, tx, start, tx.init(start),
                        jax.random.PRNGKey(0), 20, None)
  assert int(run["steps"]) == 5
  assert not bool(run["finite"])
  np.testing.assert_allclose(params["w"], [-0.5, -5.0])


def test_fit_with_no_steps_is_finite_and_leaves_params():
  tx = optax.sgd(0.2)
  params, _, run = _fit(_quadratic_step_loss, tx, _PARAMS, tx.init(_PARAMS),
                        jax.random.PRNGKey(0), 0, None)
  assert int(run["steps"]) == 0
  np.testing.assert_array_equal(params["w"], _PARAMS["w"])
  assert bool(run["finite"])


# Generation through a cascade ------------------------------------------------

def _climb(x, params, key):
  """One stage: x moves towards the critic's w, plus noise from the stage's
  key (so the result depends on which key the stage gets)."""
  x = x + 0.5 * (params["w"] - x) + 0.1 * jax.random.normal(key, x.shape)
  return x, {"moved": jnp.ones(x.shape[0], jnp.int32),
             "mean": x.mean(axis=1)}


def _critics(capacity):
  w = np.stack([np.full(4, 0.5), np.linspace(-1, 1, 4), np.full(4, -0.3)])
  return {"w": jnp.asarray(w[:capacity], jnp.float32)}


_cascade = jax.jit(lambda critics, count, x0, key: generation.through_cascade(
    critics, count, x0, key, _climb))


def test_through_cascade_runs_only_the_trained_stages():
  x0 = jnp.asarray(np.random.default_rng(5).uniform(-0.5, 0.5, (3, 4)),
                   jnp.float32)
  key = jax.random.PRNGKey(9)
  critics = _critics(3)
  # Stage by stage, as a Python loop with stage s's key fold_in(key, s).
  expected, x = [], x0
  for s in range(3):
    x, stats = _climb(x, {"w": critics["w"][s]}, jax.random.fold_in(key, s))
    expected.append((x, stats))

  x1, stats1 = _cascade(critics, jnp.int32(1), x0, key)
  np.testing.assert_allclose(x1, expected[0][0], rtol=1e-6, atol=1e-7)
  # The key matters: stage 0 climbing with `key` itself lands elsewhere.
  unfolded = _climb(x0, {"w": critics["w"][0]}, key)[0]
  assert np.abs(np.asarray(x1) - np.asarray(unfolded)).max() > 1e-2
  np.testing.assert_array_equal(stats1["moved"], [[1] * 3, [0] * 3, [0] * 3])
  np.testing.assert_allclose(stats1["mean"][0], expected[0][1]["mean"],
                             rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(stats1["mean"][1:], 0)

  x2, stats2 = _cascade(critics, jnp.int32(2), x0, key)
  np.testing.assert_allclose(x2, expected[1][0], rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(stats2["moved"], [[1] * 3, [1] * 3, [0] * 3])
  np.testing.assert_allclose(stats2["mean"][1], expected[1][1]["mean"],
                             rtol=1e-6, atol=1e-7)

  x3, _ = _cascade(critics, jnp.int32(3), x0, key)
  np.testing.assert_allclose(x3, expected[2][0], rtol=1e-6, atol=1e-7)

  # The stage keys do not depend on the stack's capacity.
  x_alone, _ = _cascade(_critics(1), jnp.int32(1), x0, key)
  np.testing.assert_array_equal(x_alone, x1)


# Members -------------------------------------------------------------------


def test_member_registry():
  assert set(members.MEMBERS) == {"igm", "winn", "igm_images", "winn_images",
                                  "icl", "stic", "introvae"}
  sampling = members.sampling_members()
  assert set(sampling) == set(members.MEMBERS) - {"icl", "stic", "introvae"}
  for name, model in sampling.items():
    assert model is members.MEMBERS[name].model


def test_unknown_trainer_is_one_sentence(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "introjax.main",
       "--config=configs/igm_texture.py:tiny", f"--workdir={tmp_path}",
       "--config.trainer=nope"],
      cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
      timeout=300)
  assert result.returncode != 0
  assert "Traceback" not in result.stderr
  lines = [l for l in result.stderr.splitlines() if "nope" in l]
  assert len(lines) == 1, result.stderr
  assert "Unknown trainer 'nope'" in lines[0]
  for name in members.MEMBERS:
    assert name in lines[0]
  assert not (tmp_path / "checkpoints").exists()
