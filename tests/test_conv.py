"""conv2d (with its CPU-specific VJP) against XLA's convolution in float64:
values, both gradients, and a gradient of a gradient. The shapes cover both
forward paths (patch matrix product on small or strided maps, XLA's
convolution on 17×18) and the phase-wise col2im's edge cases: strides 1–3,
even and 1×1 kernels, VALID padding that leaves input rows unused, and a
1-pixel-high map."""
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from introjax.models.conv import conv2d


def reference(x, w, stride, padding):
  return lax.conv_general_dilated(x, w, (stride, stride), padding,
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.fixture(autouse=True)
def float64():
  jax.config.update("jax_enable_x64", True)
  yield
  jax.config.update("jax_enable_x64", False)


@pytest.mark.parametrize("size, k, stride, padding", [
    (8, 5, 2, "SAME"), (7, 5, 2, "SAME"), (4, 5, 2, "SAME"), (9, 3, 2, "SAME"),
    (6, 3, 1, "SAME"), (8, 5, 2, "VALID"), (9, 3, 2, "VALID"),
    (5, 3, 1, "VALID"), (2, 5, 2, "SAME"), (10, 3, 2, "VALID"),
    (11, 4, 3, "SAME"), (7, 1, 2, "SAME"), (1, 3, 1, "SAME"),
    (17, 5, 2, "SAME")])
def test_conv2d_matches_xla(size, k, stride, padding):
  kx, kw, kd = jax.random.split(jax.random.PRNGKey(size * 31 + k), 3)
  x = jax.random.normal(kx, (2, size, size + 1, 3), jnp.float64)
  w = jax.random.normal(kw, (k, k, 3, 4), jnp.float64)
  ours = lambda x, w: conv2d(x, w, stride, padding)
  ref = lambda x, w: reference(x, w, stride, padding)
  np.testing.assert_allclose(ours(x, w), ref(x, w), rtol=1e-12, atol=1e-12)

  dy = jax.random.normal(kd, ref(x, w).shape, jnp.float64)
  loss = lambda f: lambda x, w: jnp.sum(f(x, w) * dy)
  for argnum in (0, 1):
    np.testing.assert_allclose(jax.grad(loss(ours), argnum)(x, w),
                               jax.grad(loss(ref), argnum)(x, w),
                               rtol=1e-10, atol=1e-10)

  # A gradient penalty's shape: d/dw ||d/dx sum(f(x, w)²)||².
  def penalty(f):
    gx = lambda w: jax.grad(lambda x: jnp.sum(f(x, w) ** 2))(x)
    return jax.grad(lambda w: jnp.sum(gx(w) ** 2))(w)
  np.testing.assert_allclose(penalty(ours), penalty(ref), rtol=1e-10,
                             atol=1e-10)


def test_conv2d_gradients_inside_shard_map():
  """A replicated kernel applied to a sharded batch inside `shard_map`: the
  kernel's gradient is summed over the batch axis as XLA's is (the axis
  check holds even on a 1-device mesh)."""
  mesh = jax.make_mesh((len(jax.devices()),), ("data",))
  spec = jax.sharding.PartitionSpec
  x = jax.random.normal(jax.random.PRNGKey(0), (len(jax.devices()) * 2, 8, 8, 3))
  w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 3, 5))

  def grads(conv):
    def loss(w, x):
      return lax.psum(jnp.sum(jnp.tanh(conv(x, w, 2, "SAME"))), "data")
    return jax.jit(jax.shard_map(
        jax.grad(loss, argnums=(0, 1)), mesh=mesh,
        in_specs=(spec(), spec("data")), out_specs=(spec(), spec("data"))))(
            jax.device_put(w, jax.NamedSharding(mesh, spec())),
            jax.device_put(x, jax.NamedSharding(mesh, spec("data"))))

  for got, want in zip(grads(conv2d), grads(reference)):
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
