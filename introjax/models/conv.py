"""The convolution every critic uses (NHWC input, HWIO kernel).

On GPU and TPU it is plain `lax.conv_general_dilated`. On CPU, XLA has
cliffs (measured with jax 0.10.2, 2 cores, batch 100, 5×5 kernels, stride 2):
the input gradient of an 8×8×256 → 4×4×512 layer takes 3.4 s against 43 ms
for its forward pass, and the forward pass on a 4×4 map takes 286 ms against
4 ms as a matrix product. So on CPU `conv2d` has a custom VJP:

  * input gradient of an unstrided convolution on a map larger than 8×8:
    XLA's forward convolution of dy with the kernel flipped in space and
    its channels swapped (IntroVAE's 64² iteration: 2.76 → 2.35 s; 3×3
    layers alone 0.95–1.2×, so 8×8 maps and smaller keep the matrix
    product);
  * every other input gradient: a matrix product (dy · Wᵀ gives each output
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

Stride-2 5×5 convolutions with 16+ input channels and enough work per call
(every texture-critic layer but the first on an RGB input; not the small
layers of the 28×28 STIC digits net) go further on CPU:
Winograd F(4×4, 3×3) after a space-to-depth rearrangement, 9 instead of 25
multiplications per output and input channel, with its own VJP (below).
It made the texture critic's synthesis step about 1.5× faster (434 → 267–298
ms at batch 100; BENCHMARKS.md) where the direct matrix products were at
YNNPACK's 180–200 GFLOP/s.

Every piece is made of JAX operations, so the VJP is itself differentiable
(a gradient penalty needs gradients of gradients).
"""
import math

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

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


def _output_size(size, k, stride, padding):
  low, high = _axis_padding(size, k, stride, padding)
  return (size + low + high - k) // stride + 1


def _patches(x, k, stride, padding):
  """(B, Ho, Wo, k·k·C): each output position's input patch, taps in
  (row, column, channel) order to match kernel.reshape(k·k·C, O)."""
  (top, bottom) = _axis_padding(x.shape[1], k, stride, padding)
  (left, right) = _axis_padding(x.shape[2], k, stride, padding)
  xp = lax.pad(x, jnp.zeros((), x.dtype),
               ((0, 0, 0), (top, bottom, 0), (left, right, 0), (0, 0, 0)))
  ho, wo = (_output_size(size, k, stride, padding) for size in x.shape[1:3])
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


# Unstrided convolutions on maps larger than 8×8 take their input gradient
# as XLA's forward convolution (module docstring).
_STRIDE1_CONV_GRAD_MIN_POSITIONS = 65


def _input_grad_as_conv(x, stride):
  """Whether an unstrided convolution's input gradient runs as XLA's
  forward convolution of dy with the flipped, transposed kernel."""
  return (stride == 1 and
          x.shape[1] * x.shape[2] >= _STRIDE1_CONV_GRAD_MIN_POSITIONS)


def _stride1_input_grad(dy, kernel, x_shape, padding):
  """dx of a stride-1 correlation: dy correlated with the kernel flipped in
  space and with its channels swapped, padded by k − 1 − the forward's."""
  k = kernel.shape[0]
  pads = [(k - 1 - low, k - 1 - high) for low, high in (
      _axis_padding(size, k, 1, padding) for size in x_shape[1:3])]
  flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
  return lax.conv_general_dilated(dy, flipped, (1, 1), pads,
                                  dimension_numbers=_DIMS)


def _cpu_conv(x, kernel, stride, padding):

  @jax.custom_vjp
  def conv(x, kernel):
    return _cpu_forward(x, kernel, stride, padding)

  def fwd(x, kernel):
    return conv(x, kernel), (x, kernel)

  def bwd(residual, dy):
    x, kernel = residual
    k, _, cin, cout = kernel.shape
    patches = _patches(x, k, stride, padding).reshape(-1, k * k * cin)
    dkernel = jnp.dot(patches.T, dy.reshape(-1, cout)).reshape(kernel.shape)
    if _input_grad_as_conv(x, stride):
      dx = _stride1_input_grad(dy, kernel, x.shape, padding)
    else:
      dpatches = jnp.dot(dy.reshape(-1, cout), kernel.reshape(-1, cout).T)
      dpatches = dpatches.reshape(dy.shape[:3] + (k * k * cin,))
      dx = _col2im(dpatches, x.shape, k, stride, padding)
    return _sum_over_extra_axes(dx, x), _sum_over_extra_axes(dkernel, kernel)

  conv.defvjp(fwd, bwd)
  return conv(x, kernel)


# Winograd F(4×4, 3×3) for stride-2 5×5 (and 6×6) convolutions on CPU.
#
# A stride-2 k×k convolution is a stride-1 ⌈k/2⌉×⌈k/2⌉ one on the input's
# 2×2 space-to-depth rearrangement (4·C channels; the kernel padded to even
# size and rearranged alike). For k = 5 that is 3×3, where Winograd's
# minimal filtering (Lavin & Gray 2016, the matrices below) makes each 4×4
# output tile from 36 products per (4·C) channel: 9 multiplications per
# output and input channel against the direct convolution's 25. The tile
# transforms are small constant matrix products; the 36 per-position
# channel products are one batched matrix product. Relative error in
# float32 is about 1e-5 (the direct path's 1e-7).
_WINOGRAD_BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0],
                         [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
                         [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]])
_WINOGRAD_G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6],
                        [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
                        [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
_WINOGRAD_AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0],
                         [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]])
_TILE, _TAPS = 4, 6  # output tile side, input tile side (4 + 3 - 1)
# Below this many input channels (RGB), this many output tiles per call
# (rows of the 36 matrix products; e.g. one-vs-all's 10 samples per vmapped
# critic), or this many multiply-adds of the direct convolution per call,
# the transforms and small products cost more than they save. The last one
# (2 cores, fwd + input gradient): the STIC digits net's 14×14×32 → 64
# layer at batch 100 (0.25e9) took 10.3 ms by Winograd against 7.5 ms
# direct and 7×7×64 → 128 (0.33e9) 10.0 against 7.2, while 14×14×64 → 128
# (1.0e9) took 24 against 40 and 7×7×128 → 256 (1.3e9) 22 against 24.
_WINOGRAD_MIN_CHANNELS = 16
_WINOGRAD_MIN_TILES = 64
_WINOGRAD_MIN_MULTIPLY_ADDS = 8e8


def _uses_winograd(x, kernel, stride, padding):
  """Stride-2 5×5/6×6 float convolutions with enough channels, tiles and
  work, whose output tiles are at least half used (a 2×2 output computes a
  4×4 tile)."""
  k, _, cin, cout = kernel.shape
  if (stride != 2 or k not in (5, 6) or cin < _WINOGRAD_MIN_CHANNELS or
      x.dtype not in (jnp.float32, jnp.float64)):
    return False
  ho, wo = (_output_size(size, k, 2, padding) for size in x.shape[1:3])
  tiles = -(-ho // _TILE) * -(-wo // _TILE)
  multiply_adds = x.shape[0] * ho * wo * k * k * cin * cout
  return (x.shape[0] * tiles >= _WINOGRAD_MIN_TILES and
          multiply_adds >= _WINOGRAD_MIN_MULTIPLY_ADDS and
          2 * ho * wo >= tiles * _TILE * _TILE)


def _space_to_depth(x, kernel, padding):
  """The stride-2 convolution of (x, kernel) as a stride-1 VALID 3×3 one of
  (z, kz), plus its output size. z's rows are padded so that its 3×3
  windows make whole 4×4 output tiles."""
  b, h, w, cin = x.shape
  k, _, _, cout = kernel.shape
  (top, bottom) = _axis_padding(h, k, 2, padding)
  (left, right) = _axis_padding(w, k, 2, padding)
  ho, wo = (_output_size(size, k, 2, padding) for size in (h, w))
  rows = 2 * (-(-ho // _TILE) * _TILE + 2)
  cols = 2 * (-(-wo // _TILE) * _TILE + 2)
  xp = jnp.pad(x, ((0, 0), (top, rows - h - top), (left, cols - w - left),
                   (0, 0)))
  z = xp.reshape(b, rows // 2, 2, cols // 2, 2, cin).transpose(
      0, 1, 3, 2, 4, 5).reshape(b, rows // 2, cols // 2, 4 * cin)
  kp = jnp.pad(kernel, ((0, 6 - k), (0, 6 - k), (0, 0), (0, 0)))
  kz = kp.reshape(3, 2, 3, 2, cin, cout).transpose(0, 2, 1, 3, 4, 5).reshape(
      3, 3, 4 * cin, cout)
  return z, kz, ho, wo


def _winograd_matrices(dtype):
  """(36×36, 36×9, 16×36): the 2-D input, kernel and output transforms.
  NumPy arrays: a JAX array made while tracing is a tracer of that trace,
  and the VJP below runs in another one."""
  return tuple(np.kron(m, m).astype(dtype)
               for m in (_WINOGRAD_BT, _WINOGRAD_G, _WINOGRAD_AT))


def _winograd_conv3(z, kz):
  """Stride-1 VALID 3×3 convolution by F(4×4, 3×3); z's output size must
  be whole tiles. Custom VJP: the input and kernel gradients are the
  transposed transforms around two more batched products (what autodiff
  would build, minus its scatter-like transposes of 36 strided slices)."""
  b, rows, cols, cin = z.shape
  cout = kz.shape[3]
  t1, t2 = (rows - 2) // _TILE, (cols - 2) // _TILE
  n = b * t1 * t2  # tiles
  bt, g, at = _winograd_matrices(z.dtype)

  def transforms(z, kz):
    taps = jnp.stack([z[:, i:i + _TILE * (t1 - 1) + 1:_TILE,
                        j:j + _TILE * (t2 - 1) + 1:_TILE]
                      for i in range(_TAPS) for j in range(_TAPS)])
    v = jnp.dot(bt, taps.reshape(_TAPS * _TAPS, -1))
    u = jnp.dot(g, kz.reshape(9, -1))
    return (v.reshape(_TAPS * _TAPS, n, cin),
            u.reshape(_TAPS * _TAPS, cin, cout))

  def output(m):
    y = jnp.dot(at, m.reshape(_TAPS * _TAPS, -1))
    y = y.reshape(_TILE, _TILE, b, t1, t2, cout).transpose(2, 3, 0, 4, 1, 5)
    return y.reshape(b, t1 * _TILE, t2 * _TILE, cout)

  def fwd(z, kz):
    v, u = transforms(z, kz)
    return output(jnp.einsum("tnc,tco->tno", v, u)), (v, u, z, kz)

  @jax.custom_vjp
  def conv(z, kz):
    return fwd(z, kz)[0]

  def bwd(residual, dy):
    v, u, z, kz = residual
    dy = dy.reshape(b, t1, _TILE, t2, _TILE, cout).transpose(2, 4, 0, 1, 3, 5)
    dm = jnp.dot(at.T, dy.reshape(_TILE * _TILE, -1)).reshape(
        _TAPS * _TAPS, n, cout)
    dv = jnp.einsum("tno,tco->tnc", dm, u)
    dtaps = jnp.dot(bt.T, dv.reshape(_TAPS * _TAPS, -1)).reshape(
        _TAPS, _TAPS, b, t1, t2, cin).transpose(2, 3, 4, 0, 1, 5)
    dz = _col2im(dtaps.reshape(b, t1, t2, -1), z.shape, _TAPS, _TILE, "VALID")
    du = jnp.einsum("tnc,tno->tco", v, dm)
    dkz = jnp.dot(g.T, du.reshape(_TAPS * _TAPS, -1)).reshape(kz.shape)
    return _sum_over_extra_axes(dz, z), _sum_over_extra_axes(dkz, kz)

  conv.defvjp(fwd, bwd)
  return conv(z, kz)


def _winograd_conv(x, kernel, padding):
  z, kz, ho, wo = _space_to_depth(x, kernel, padding)
  return _winograd_conv3(z, kz)[:, :ho, :wo]


def conv2d(x, kernel, stride=1, padding="SAME"):
  """2-D cross-correlation; NHWC input, HWIO kernel, square stride."""
  if jax.default_backend() == "cpu":
    if _uses_winograd(x, kernel, stride, padding):
      return _winograd_conv(x, kernel, padding)
    return _cpu_conv(x, kernel, stride, padding)
  return _xla_conv(x, kernel, stride, padding)
