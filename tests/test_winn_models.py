"""WINN's App. C critic and App. D up-sampling initialiser."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from introjax.errors import ConfigError
from introjax.models.winn import (UpsamplingInitializer, WINNCritic,
                                  build_winn_critic, initial_negatives,
                                  random_initializer_params)

TABLE5_WIDTHS = (32, 64, 64, 128, 128, 256, 256, 512)


def _shapes(tree):
  return jax.tree_util.tree_map(lambda a: a.shape, tree)


def test_critic_follows_table5_at_64x64():
  x = jnp.zeros((2, 64, 64, 3))
  params = jax.eval_shape(
      lambda: WINNCritic().init(jax.random.PRNGKey(0), x))["params"]
  shapes = _shapes(params)
  widths = (3,) + TABLE5_WIDTHS
  for i in range(8):
    assert shapes[f"conv{i}"]["kernel"] == (3, 3, widths[i], widths[i + 1])
    # LayerNorm after every conv but the first, one scale per channel.
    assert (f"norm{i}" in shapes) == (i > 0)
  # Four 2×2 average pools: 64×64 → 4×4×512 into FC-1.
  assert shapes["logit"]["kernel"] == (4 * 4 * 512, 1)
  out = jax.eval_shape(lambda p: WINNCritic().apply({"params": p}, x),
                       params)
  assert out.shape == (2,) and out.dtype == jnp.float32


def test_critic_is_per_sample_with_configurable_widths():
  model = WINNCritic(features=(4, 8, 8, 16))
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 16, 16, 3))
  params = jax.jit(model.init)(jax.random.PRNGKey(1), x)["params"]
  apply = jax.jit(lambda x: model.apply({"params": params}, x))
  logits = apply(x)
  assert logits.shape == (3,) and logits.dtype == jnp.float32
  alone = apply(x[1:2])
  np.testing.assert_allclose(alone[0], logits[1], rtol=1e-5, atol=1e-6)


def test_build_winn_critic():
  model = ml_collections.ConfigDict(
      {"name": "winn", "features": (8, 16, 16, 32)})
  critic = build_winn_critic(model, "bfloat16")
  assert critic.features == (8, 16, 16, 32) and critic.convs_per_stage == 2
  assert critic.norm == "layer" and critic.dtype == jnp.bfloat16
  with pytest.raises(ConfigError, match="model.name"):
    build_winn_critic(ml_collections.ConfigDict(
        {"name": "dcgan", "features": (8,)}))
  with pytest.raises(ConfigError, match="convs_per_stage"):
    build_winn_critic(ml_collections.ConfigDict(
        {"name": "winn", "features": (8, 16, 32)}))


@pytest.mark.parametrize("shape", [(32, 32, 3), (64, 64, 3), (32, 32, 1)])
def test_initial_negatives_shapes_and_range(shape):
  images = initial_negatives(jax.random.PRNGKey(0), 3, shape)
  assert images.shape == (3, *shape) and images.dtype == jnp.float32
  # Min-max rescaled per image onto [−1, 1], as the released code does.
  np.testing.assert_allclose(images.min(axis=(1, 2, 3)), -1, atol=1e-6)
  np.testing.assert_allclose(images.max(axis=(1, 2, 3)), 1, atol=1e-6)
  assert float(jnp.abs(images[0] - images[1]).mean()) > 0.05
  again = initial_negatives(jax.random.PRNGKey(0), 3, shape)
  np.testing.assert_array_equal(images, again)


def test_initializer_follows_table5_and_app_d_weights():
  module = UpsamplingInitializer(size=64)
  params = random_initializer_params(module, jax.random.PRNGKey(0),
                                     (1, 4, 4, 512))
  shapes = _shapes(params)
  widths = (512, 256, 128, 64, 3)
  for i in range(4):
    assert shapes[f"conv{i}"]["kernel"] == (5, 5, widths[i], widths[i + 1])
    np.testing.assert_array_equal(params[f"conv{i}"]["bias"], 0)
    # LayerNorm after every conv but the last.
    assert (f"norm{i}" in shapes) == (i < 3)
  kernel = np.asarray(params["conv0"]["kernel"])
  assert abs(kernel.std() - 0.1) < 0.002 and abs(kernel.mean()) < 0.002
  out = jax.eval_shape(lambda: module.apply({"params": params},
                                            jnp.zeros((2, 4, 4, 512))))
  assert out.shape == (2, 64, 64, 3)


def test_initializer_has_no_pointwise_nonlinearity():
  """App. D: "We do not apply any nonlinearities in the network."

  Without its LayerNorms the network (5×5 convs with zero bias, nearest
  up-sampling) is linear in z: f(a·z1 + b·z2) = a·f(z1) + b·f(z2).
  LayerNorm itself is not linear, but with the norms on every linear piece
  is followed by a per-sample normalisation, so the whole map is scale
  invariant, f(c·z) = f(z) for c > 0 (up to LayerNorm's ε), and odd,
  f(−z) = −f(z). A pointwise nonlinearity anywhere would break one of
  these: tanh or sigmoid break scale invariance, ReLU or Swish oddness.
  """
  key = jax.random.PRNGKey(0)
  k_net, k1, k2 = jax.random.split(key, 3)
  z1 = jax.random.uniform(k1, (2, 4, 4, 512), minval=-1, maxval=1)
  z2 = jax.random.uniform(k2, (2, 4, 4, 512), minval=-1, maxval=1)

  linear = UpsamplingInitializer(size=32, use_norm=False)
  p_lin = random_initializer_params(linear, k_net, (1, 4, 4, 512))
  f = jax.jit(lambda z: linear.apply({"params": p_lin}, z))
  a, b = 0.7, -1.9
  lhs, rhs = f(a * z1 + b * z2), a * f(z1) + b * f(z2)
  assert lhs.shape == (2, 32, 32, 3)
  np.testing.assert_allclose(lhs, rhs, atol=1e-4 * float(jnp.abs(rhs).max()))

  normed = UpsamplingInitializer(size=32)
  p_norm = random_initializer_params(normed, k_net, (1, 4, 4, 512))
  g = jax.jit(lambda z: normed.apply({"params": p_norm}, z))
  base = g(z1)
  scale = float(jnp.abs(base).max())
  for c in (0.5, 3.0):
    np.testing.assert_allclose(g(c * z1), base, atol=1e-4 * scale)
  np.testing.assert_allclose(g(-z1), -base, atol=1e-5 * scale)


def test_initializer_refuses_sizes_it_cannot_make():
  with pytest.raises(ConfigError, match="4·2"):
    initial_negatives(jax.random.PRNGKey(0), 1, (48, 48, 3))
  with pytest.raises(ConfigError, match="square"):
    initial_negatives(jax.random.PRNGKey(0), 1, (32, 64, 3))
  with pytest.raises(ConfigError, match="widths"):
    initial_negatives(jax.random.PRNGKey(0), 1, (128, 128, 3))
