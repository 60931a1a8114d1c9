"""The convolution every critic uses (NHWC input, HWIO kernel).

On GPU and TPU it is plain `lax.conv_general_dilated`. On CPU, XLA has
cliffs (measured with jax 0.10.2, 2 cores, batch 100, 5×5 kernels, stride 2):
the input gradient of an 8×8×256 → 4×4×512 layer takes 3.4 s against 43 ms
for its forward pass, and the forward pass on a 4×4 map takes 286 ms against
4 ms as a matrix product. So on CPU `conv2d` has a custom VJP:

  * input gradient: always as a matrix product (dy · Wᵀ gives each output
    position's patch gradient) scattered back onto the image ("col2im", the
    transpose of patch extraction), one stride phase at a time: a sum of
    shifted slices per phase, then one interleave. Letting JAX transpose
    the patch extraction instead (25 full-size dilated pads) cost 6% of a
    synthesis step. Stride-1 correlations per phase of dy ("polyphase",
    no col2im) were tried and lost: slower in the synthesis loop and 4×
    slower on the 28×28 classifier's small maps.
  * forward: XLA's convolution, except on maps no larger than the kernel
    and on strided convolutions of maps up to 16×16, where the patch matrix
    product is used: inside the synthesis loop XLA took 91 ms for the
    8×8×256 → 4×4×512 layer, and the matrix products cut the whole
    synthesis step by 8% (the classification step by 7%); on unstrided
    3×3 convolutions XLA's is 3–4× faster, so those stay;
  * kernel gradient: patchesᵀ · dy as one matrix product. XLA's own
    kernel-gradient convolution is fine alone but, inside a `while_loop`
    (our training loop), made a critic step 6.5 s instead of 0.17 s.

Every piece is made of JAX operations, so the VJP is itself differentiable
(a gradient penalty needs gradients of gradients).
"""
import math

import jax
from jax import lax
import jax.numpy as jnp

_DIMS = ("NHWC", "HWIO", "NHWC")
# Strided convolutions on maps up to 16×16 run as patch matrix products
# (see the module docstring).
_STRIDED_MATMUL_MAX_POSITIONS = 256


def _xla_conv(x, kernel, stride, padding):
  return lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                  dimension_numbers=_DIMS)


def _axis_padding(size, k, stride, padding):
  """(low, high) padding of one spatial axis, as XLA pads it."""
  if padding == "VALID":
    out = (size - k) // stride + 1
    return 0, (out - 1) * stride + k - size
  out = math.ceil(size / stride)
  total = max((out - 1) * stride + k - size, 0)
  return total // 2, total - total // 2


def _patches(x, k, stride, padding):
  """(B, Ho, Wo, k·k·C): each output position's input patch, taps in
  (row, column, channel) order to match kernel.reshape(k·k·C, O)."""
  (top, bottom) = _axis_padding(x.shape[1], k, stride, padding)
  (left, right) = _axis_padding(x.shape[2], k, stride, padding)
  xp = lax.pad(x, jnp.zeros((), x.dtype),
               ((0, 0, 0), (top, bottom, 0), (left, right, 0), (0, 0, 0)))
  ho = (xp.shape[1] - k) // stride + 1
  wo = (xp.shape[2] - k) // stride + 1
  taps = [xp[:, i:i + stride * (ho - 1) + 1:stride,
             j:j + stride * (wo - 1) + 1:stride, :]
          for i in range(k) for j in range(k)]
  return jnp.concatenate(taps, axis=-1)


def _matmul_conv(x, kernel, stride, padding):
  k, _, cin, cout = kernel.shape
  p = _patches(x, k, stride, padding)
  y = jnp.dot(p.reshape(-1, k * k * cin), kernel.reshape(k * k * cin, cout))
  return y.reshape(p.shape[:3] + (cout,))


def _cpu_forward(x, kernel, stride, padding):
  k = kernel.shape[0]
  positions = x.shape[1] * x.shape[2]
  if positions <= k * k or (stride > 1 and
                            positions <= _STRIDED_MATMUL_MAX_POSITIONS):
    return _matmul_conv(x, kernel, stride, padding)
  return _xla_conv(x, kernel, stride, padding)


def _col2im(dpatches, x_shape, k, stride, padding):
  """The transpose of `_patches`: each patch gradient added back where its
  taps came from. Tap (i, j) lands on the padded input's rows ≡ i and
  columns ≡ j (mod s), so each of the s² phases is a sum of shifted
  (not dilated) slices of dpatches, and one interleave builds the image:
  far less memory traffic than 25 full-size dilated pads."""
  s, cin = stride, x_shape[3]
  _, ho, wo, _ = dpatches.shape
  (top, bottom) = _axis_padding(x_shape[1], k, s, padding)
  (left, right) = _axis_padding(x_shape[2], k, s, padding)
  rows = -(-(x_shape[1] + top + bottom) // s)
  cols = -(-(x_shape[2] + left + right) // s)
  zero = jnp.zeros((), dpatches.dtype)
  taps = dpatches.reshape(dpatches.shape[:3] + (k, k, cin))
  phases = []
  for a in range(s):
    for b in range(s):
      total = jnp.zeros((dpatches.shape[0], rows, cols, cin), dpatches.dtype)
      for i in range(a, k, s):
        for j in range(b, k, s):
          total = total + lax.pad(
              taps[:, :, :, i, j], zero,
              ((0, 0, 0), (i // s, rows - ho - i // s, 0),
               (j // s, cols - wo - j // s, 0), (0, 0, 0)))
      phases.append(total)
  grid = jnp.stack(phases, axis=3).reshape(
      (dpatches.shape[0], rows, cols, s, s, cin))
  grid = grid.transpose(0, 1, 3, 2, 4, 5).reshape(
      (dpatches.shape[0], rows * s, cols * s, cin))
  return lax.pad(grid, zero, (
      (0, 0, 0), (-top, x_shape[1] + top - rows * s, 0),
      (-left, x_shape[2] + left - cols * s, 0), (0, 0, 0)))


def _varying_axes(x):
  """The `shard_map` mesh axes along which x differs between shards
  (JAX ≥ 0.10 keeps them in `manual_axis_type`, earlier versions in `vma`)."""
  aval = jax.typeof(x)
  mat = getattr(aval, "manual_axis_type", None)
  return mat.varying if mat is not None else getattr(aval, "vma", frozenset())


def _sum_over_extra_axes(cotangent, primal):
  """Inside `shard_map`, a kernel replicated over a mesh axis but applied
  to a sharded batch gets a per-shard cotangent; its gradient is the sum
  over that axis (what JAX does itself when it transposes the implicit
  broadcast of a replicated operand, and what a custom VJP must do by
  hand)."""
  extra = _varying_axes(cotangent) - _varying_axes(primal)
  return lax.psum(cotangent, tuple(sorted(extra))) if extra else cotangent


def _cpu_conv(x, kernel, stride, padding):

  @jax.custom_vjp
  def conv(x, kernel):
    return _cpu_forward(x, kernel, stride, padding)

  def fwd(x, kernel):
    return conv(x, kernel), (x, kernel)

  def bwd(residual, dy):
    x, kernel = residual
    k, _, cin, cout = kernel.shape
    dpatches = jnp.dot(dy.reshape(-1, cout), kernel.reshape(-1, cout).T)
    dpatches = dpatches.reshape(dy.shape[:3] + (k * k * cin,))
    patches = _patches(x, k, stride, padding).reshape(-1, k * k * cin)
    dkernel = jnp.dot(patches.T, dy.reshape(-1, cout)).reshape(kernel.shape)
    dx = _col2im(dpatches, x.shape, k, stride, padding)
    return _sum_over_extra_axes(dx, x), _sum_over_extra_axes(dkernel, kernel)

  conv.defvjp(fwd, bwd)
  return conv(x, kernel)


def conv2d(x, kernel, stride=1, padding="SAME"):
  """2-D cross-correlation; NHWC input, HWIO kernel, square stride."""
  if jax.default_backend() == "cpu":
    return _cpu_conv(x, kernel, stride, padding)
  return _xla_conv(x, kernel, stride, padding)
