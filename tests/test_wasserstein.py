"""WINN's Wasserstein critic loss with gradient penalty (WINN §4.1)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from introjax.models.layers import Conv
from introjax.models.winn import WINNCritic
from introjax.objectives.wasserstein import (gradient_penalty, interpolate,
                                             wgan_gp_loss)


class TinyCritic(nn.Module):
  """Conv → LayerNorm → Swish → linear: per-sample, smooth, nonlinear."""
  dtype: jnp.dtype = jnp.float64

  @nn.compact
  def __call__(self, x):
    x = Conv(3, 3, dtype=self.dtype)(x)
    x = nn.LayerNorm(reduction_axes=(-3, -2, -1), dtype=self.dtype)(x)
    x = nn.swish(x)
    x = x.reshape(x.shape[0], -1)
    return nn.Dense(1, dtype=self.dtype,
                    kernel_init=nn.initializers.normal(0.3))(x)[:, 0]


def _tiny(key, shape):
  """Critic params (float64, with non-trivial LayerNorm affine) and data."""
  model = TinyCritic()
  k_init, k_pos, k_neg, k_ln = jax.random.split(key, 4)
  pos = jax.random.normal(k_pos, shape, jnp.float64)
  neg = 0.5 * jax.random.normal(k_neg, shape, jnp.float64)
  params = model.init(k_init, pos)["params"]
  params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), params)
  # Kernels of std 0.02 make a nearly flat critic; scale them up so the
  # gradient norm is O(1) and the penalty is far from trivial.
  params = jax.tree_util.tree_map(lambda p: 20 * p, params)
  params["LayerNorm_0"]["bias"] = 0.1 * jax.random.normal(
      k_ln, params["LayerNorm_0"]["bias"].shape, jnp.float64)
  return model, params, pos, neg


def _fd_input_grads(critic, x, h=1e-5):
  """Central-difference input gradient of each sample's logit (float64):
  all ±h·e_i perturbations of a sample go through the critic as one batch."""
  dim = int(np.prod(x.shape[1:]))
  steps = h * np.eye(dim).reshape((dim,) + x.shape[1:])
  grads = []
  for xi in np.asarray(x):
    f = np.asarray(critic(jnp.asarray(np.concatenate([xi + steps,
                                                      xi - steps]))))
    grads.append(((f[:dim] - f[dim:]) / (2 * h)).reshape(x.shape[1:]))
  return np.stack(grads)


def test_interpolation_is_per_sample_on_the_segment():
  pos = jnp.ones((5, 3, 3, 2))
  neg = -jnp.ones((5, 3, 3, 2))
  x_hat = np.asarray(interpolate(pos, neg, jax.random.PRNGKey(0)))
  # x̂ = 2u − 1 everywhere in a sample: one u per sample, u in [0, 1].
  u = (x_hat + 1) / 2
  np.testing.assert_allclose(u, u[:, :1, :1, :1] * np.ones_like(u), atol=1e-6)
  assert np.all((u >= 0) & (u <= 1)) and np.unique(u[:, 0, 0, 0]).size == 5


def test_penalty_of_a_linear_critic_is_exact():
  # f(x) = <w, x>: ∇f = w at every x̂, so GP = (‖w‖ − 1)² whatever u is.
  w = jax.random.normal(jax.random.PRNGKey(1), (4, 4, 1))
  critic = lambda x: jnp.sum(x * w, axis=(1, 2, 3))
  pos = jax.random.normal(jax.random.PRNGKey(2), (6, 4, 4, 1))
  neg = jnp.zeros_like(pos)
  gp = gradient_penalty(critic, pos, neg, jax.random.PRNGKey(3))
  np.testing.assert_allclose(gp, (jnp.linalg.norm(w) - 1) ** 2, rtol=1e-5)
  loss, aux = wgan_gp_loss(critic, pos, neg, jax.random.PRNGKey(3),
                           gp_weight=10.0)
  wass = critic(pos).mean() - critic(neg).mean()
  np.testing.assert_allclose(aux["wasserstein"], wass, rtol=1e-5)
  np.testing.assert_allclose(aux["penalty"], gp, rtol=1e-5)
  np.testing.assert_allclose(loss, -wass + 10.0 * gp, rtol=1e-5)


def test_gradient_penalty_matches_finite_differences():
  with jax.enable_x64(True):
    model, params, pos, neg = _tiny(jax.random.PRNGKey(0), (3, 4, 4, 2))
    critic = jax.jit(lambda x: model.apply({"params": params}, x))
    key = jax.random.PRNGKey(7)
    gp = float(gradient_penalty(critic, pos, neg, key))
    fd = _fd_input_grads(critic, interpolate(pos, neg, key))
    norms = np.sqrt((fd ** 2).sum(axis=(1, 2, 3)))
    expected = np.mean((norms - 1) ** 2)
    assert expected > 1e-2  # not a degenerate case
    np.testing.assert_allclose(gp, expected, rtol=1e-6)


def test_loss_gradient_wrt_params_matches_finite_differences():
  """The penalty's parameter gradient is a gradient of an input gradient:
  this checks the double backward through `Conv` (custom VJP) along a
  random direction in parameter space."""
  with jax.enable_x64(True):
    model, params, pos, neg = _tiny(jax.random.PRNGKey(1), (2, 4, 4, 2))
    key = jax.random.PRNGKey(3)

    @jax.jit
    def loss(p):
      return wgan_gp_loss(lambda x: model.apply({"params": p}, x), pos, neg,
                          key)[0]

    grads = jax.jit(jax.grad(loss))(params)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    dirs = [jax.random.normal(k, l.shape, l.dtype) for k, l in
            zip(jax.random.split(jax.random.PRNGKey(4), len(leaves)), leaves)]
    direction = jax.tree_util.tree_unflatten(treedef, dirs)
    h = 1e-5
    shifted = lambda s: jax.tree_util.tree_map(lambda p, d: p + s * h * d,
                                               params, direction)
    fd = (float(loss(shifted(1))) - float(loss(shifted(-1)))) / (2 * h)
    analytic = sum(float(jnp.vdot(g, d)) for g, d in zip(
        jax.tree_util.tree_leaves(grads), dirs))
    np.testing.assert_allclose(analytic, fd, rtol=1e-5)
  # The context restored the default precision.
  assert jnp.zeros(()).dtype == jnp.float32


def test_winn_critic_loss_has_finite_nonzero_param_grads():
  model = WINNCritic(features=(4, 8), convs_per_stage=1)
  pos = jax.random.uniform(jax.random.PRNGKey(0), (2, 8, 8, 3), minval=-1)
  neg = 0.3 * jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 3))
  params = model.init(jax.random.PRNGKey(2), pos)["params"]

  @jax.jit
  def step(p):
    return jax.value_and_grad(
        lambda q: wgan_gp_loss(lambda x: model.apply({"params": q}, x), pos,
                               neg, jax.random.PRNGKey(3)), has_aux=True)(p)

  (loss, aux), grads = step(params)
  assert np.isfinite(loss) and np.isfinite(aux["penalty"])
  for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
    assert np.all(np.isfinite(g)), path
    if path[0].key == "logit" and path[1].key == "bias":
      # The logit's bias cancels in E f(neg) − E f(pos) and in ∇_x f.
      np.testing.assert_array_equal(g, 0)
    else:
      assert np.any(np.asarray(g) != 0), path


def test_mismatched_batches_are_refused():
  critic = lambda x: x.sum(axis=(1, 2, 3))
  with pytest.raises(ValueError, match="one to one"):
    wgan_gp_loss(critic, jnp.zeros((3, 2, 2, 1)), jnp.zeros((2, 2, 2, 1)),
                 jax.random.PRNGKey(0))
