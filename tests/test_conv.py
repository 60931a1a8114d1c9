"""conv2d (with its CPU-specific VJP) against XLA's convolution in float64:
values, both gradients, and a gradient of a gradient. The shapes cover both
forward paths (patch matrix product on small or strided maps, XLA's
convolution on 17×18) and the phase-wise col2im's edge cases: strides 1–3,
even and 1×1 kernels, VALID padding that leaves input rows unused, and a
1-pixel-high map; unstrided ones whose input gradient is XLA's convolution
(odd and even kernels, SAME and VALID). Stride-2 5×5/6×6 convolutions with 16+ channels take the
Winograd path, checked alike (and its float32 error against float64)."""
import functools

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from introjax.models import conv
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
    (17, 5, 2, "SAME"), (9, 3, 1, "SAME"), (9, 4, 1, "SAME"),
    (8, 2, 1, "VALID")])
def test_conv2d_matches_xla(size, k, stride, padding):
  check_against_xla((2, size, size + 1, 3), (k, k, 3, 4), stride, padding)


@pytest.mark.parametrize("height, width, k, padding", [
    (8, 8, 5, "SAME"),      # one 4×4 output tile
    (12, 13, 5, "SAME"),    # 6×7 output: partial tiles, odd width
    (11, 11, 5, "VALID"),   # every input row used
    (12, 12, 5, "VALID"),   # the last row and column unused
    (16, 16, 6, "VALID")])  # even kernel
def test_winograd_conv2d_matches_xla(height, width, k, padding, monkeypatch):
  monkeypatch.setattr(conv, "_WINOGRAD_MIN_TILES", 1)  # a batch of 2 will do
  monkeypatch.setattr(conv, "_WINOGRAD_MIN_MULTIPLY_ADDS", 1)
  x_shape, w_shape = (2, height, width, 16), (k, k, 16, 3)
  assert conv._uses_winograd(jnp.zeros(x_shape), jnp.zeros(w_shape), 2,
                             padding)
  check_against_xla(x_shape, w_shape, 2, padding)


def check_against_xla(x_shape, w_shape, stride, padding):
  """Values, both gradients and a gradient penalty's second derivative."""
  size, k = x_shape[1], w_shape[0]
  kx, kw, kd = jax.random.split(jax.random.PRNGKey(size * 31 + k), 3)
  x = jax.random.normal(kx, x_shape, jnp.float64)
  w = jax.random.normal(kw, w_shape, jnp.float64)
  dy = jax.random.normal(kd, reference(x, w, stride, padding).shape,
                         jnp.float64)

  # One program per convolution: eager dispatch of every op is slow.
  @functools.partial(jax.jit, static_argnums=2)
  def results(x, w, use_conv2d):
    f = lambda x, w: (conv2d if use_conv2d else reference)(x, w, stride,
                                                           padding)
    loss = lambda x, w: jnp.sum(f(x, w) * dy)
    # A gradient penalty's shape: d/dw ||d/dx sum(f(x, w)²)||².
    gx = lambda w: jax.grad(lambda x: jnp.sum(f(x, w) ** 2))(x)
    penalty = jax.grad(lambda w: jnp.sum(gx(w) ** 2))(w)
    return f(x, w), jax.grad(loss, (0, 1))(x, w), penalty

  (y, grads, penalty), (want_y, want_grads, want_penalty) = (
      results(x, w, True), results(x, w, False))
  np.testing.assert_allclose(y, want_y, rtol=1e-12, atol=1e-12)
  for got, want in zip(grads + (penalty,), want_grads + (want_penalty,)):
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_winograd_gradient_of_a_jitted_convolution(monkeypatch):
  """A jitted convolution differentiated inside another jit (as a jitted
  model's apply under `jax.grad`): the VJP runs outside the trace that
  built the forward pass and must not reach into it."""
  monkeypatch.setattr(conv, "_WINOGRAD_MIN_MULTIPLY_ADDS", 1)
  x = jax.random.normal(jax.random.PRNGKey(0), (16, 16, 16, 16))
  w = jax.random.normal(jax.random.PRNGKey(1), (5, 5, 16, 8))
  assert conv._uses_winograd(x, w, 2, "SAME")
  loss = lambda f: lambda x, w: jnp.sum(jnp.tanh(jax.jit(f)(x, w)))
  grad = lambda f: jax.jit(jax.grad(loss(f), argnums=(0, 1)))(x, w)
  for got, want in zip(grad(lambda x, w: conv2d(x, w, 2)),
                       grad(lambda x, w: reference(x, w, 2, "SAME"))):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batch, size, cin, cout, winograd", [
    (100, 32, 64, 128, True),    # texture critic, conv1
    (100, 8, 256, 512, True),    # texture critic, conv3
    (100, 14, 64, 128, True),    # ICL MNIST net, conv1
    (100, 14, 32, 64, False),    # STIC digits net, conv1: too little work
    (100, 7, 64, 128, False),    # STIC digits net, conv2
    (10, 16, 128, 256, False),   # one-vs-all: 10 samples per critic
    (100, 64, 3, 64, False)])    # RGB input
def test_winograd_only_where_it_pays(batch, size, cin, cout, winograd):
  """The dispatch measured in conv.py's comments: Winograd's transforms
  lose on small per-call work (0.7× on the STIC digits net's layers)."""
  x, w = (jax.ShapeDtypeStruct(s, jnp.float32) for s in (
      (batch, size, size, cin), (5, 5, cin, cout)))
  assert conv._uses_winograd(x, w, 2, "SAME") == winograd


def test_winograd_float32_error():
  """The critic's 16×16×128 → 8×8×256 layer in float32 against float64:
  Winograd's transforms cost about two digits over the direct product."""
  kx, kw = jax.random.split(jax.random.PRNGKey(0))
  x = jax.random.normal(kx, (16, 16, 16, 128), jnp.float64)
  w = jax.random.normal(kw, (5, 5, 128, 256), jnp.float64) / np.sqrt(3200)
  assert conv._uses_winograd(x, w, 2, "SAME")
  want = reference(x, w, 2, "SAME")
  got = conv2d(x.astype(jnp.float32), w.astype(jnp.float32), 2)
  error = np.max(np.abs(np.asarray(got, np.float64) - want)) / np.max(
      np.abs(want))
  assert error < 1e-4, error


# conv2d's gradients inside `shard_map`, where the kernel's cotangent is
# summed over the devices, are checked on 8 devices by
# tests/multidevice_check.py (test_multidevice.py's conv_* checks): on this
# process's one device that sum would add nothing.
