"""Sliced Wasserstein distance between image sets (Karras et al., PGGAN).

A port of `metrics/sliced_wasserstein.py` of tkarras/progressive_growing_of_gans
to JAX, with its settings as defaults:

  * a Laplacian pyramid per image (5×5 binomial filter, 'mirror' borders,
    as cv2.pyrDown/pyrUp), levels from full resolution down to 16×16;
  * 128 random 7×7 neighbourhoods ("descriptors") per image and level;
  * each set's descriptors normalised per channel by its own mean and std;
  * SWD = mean over 4 repeats × 128 random unit directions (512 projections
    in all) of the mean |sorted projections of A − sorted projections of B|;
  * reported ×10³ per level, plus their mean.

Differences from the original, none of which changes what is estimated:
inputs are float NHWC in [−1, 1] (per-channel normalisation makes the metric
blind to the pixel range), randomness comes from a JAX key, and both sets use
the same random patch positions (positions do not depend on content, so each
set's descriptor distribution is unchanged; identical sets give exactly 0).
Because each set is normalised by its own statistics, a global change of
brightness or contrast per channel is invisible to SWD, as in PGGAN.
"""
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np

from introjax.errors import ImageError

_BINOMIAL = np.float32([1, 4, 6, 4, 1]) / 16  # outer product: PGGAN's filter


def _filter_axis(x, axis, taps):
  """1-D convolution along `axis` with 'mirror' (reflect) borders."""
  pad = [(0, 0)] * x.ndim
  pad[axis] = (2, 2)
  xp = jnp.pad(x, pad, mode="reflect")
  n = x.shape[axis]
  return sum(t * jax.lax.slice_in_dim(xp, i, i + n, axis=axis)
             for i, t in enumerate(taps))


def _blur(x, gain=1.0):
  # The 5×5 filter is separable: rows then columns.
  taps = [float(t) for t in _BINOMIAL]
  return gain * _filter_axis(_filter_axis(x, 1, taps), 2, taps)


def pyr_down(x):
  """cv2.pyrDown on (N, H, W, C): blur, keep every second pixel."""
  return _blur(x)[:, ::2, ::2, :]


def pyr_up(x):
  """cv2.pyrUp on (N, H, W, C): zero-stuff to 2×, blur with 4× the filter."""
  n, h, w, c = x.shape
  up = jnp.zeros((n, 2 * h, 2 * w, c), x.dtype).at[:, ::2, ::2, :].set(x)
  return _blur(up, gain=4.0)


def laplacian_pyramid(x, num_levels):
  """[x − up(down x), …, lowest Gaussian level], finest first."""
  levels = [x]
  for _ in range(1, num_levels):
    levels.append(pyr_down(levels[-1]))
    levels[-2] = levels[-2] - pyr_up(levels[-1])
  return levels


def _descriptors(level, ys, xs, size):
  """(N·P, size·size·C) patches of `level` at top-left corners ys, xs
  (each (N, P))."""
  def one_image(img, y_row, x_row):
    cut = lambda y, x: jax.lax.dynamic_slice(
        img, (y, x, 0), (size, size, img.shape[-1]))
    return jax.vmap(cut)(y_row, x_row)
  patches = jax.vmap(one_image)(level, ys, xs)
  return patches.reshape(-1, size, size, level.shape[-1])


def _normalise(desc):
  """Per channel, over neighbourhoods and taps (PGGAN's finalize)."""
  desc = desc - desc.mean(axis=(0, 1, 2), keepdims=True)
  desc = desc / desc.std(axis=(0, 1, 2), keepdims=True)
  return desc.reshape(desc.shape[0], -1)


def _swd(a, b, key, dir_repeats, dirs_per_repeat):
  def one_repeat(k):
    dirs = jax.random.normal(k, (a.shape[1], dirs_per_repeat), jnp.float32)
    dirs = dirs / jnp.sqrt(jnp.sum(dirs * dirs, axis=0, keepdims=True))
    proj_a = jnp.sort(a @ dirs, axis=0)
    proj_b = jnp.sort(b @ dirs, axis=0)
    return jnp.mean(jnp.abs(proj_a - proj_b))
  # A Python loop (not vmap): one repeat's projections at a time in memory.
  keys = jax.random.split(key, dir_repeats)
  return jnp.mean(jnp.stack([one_repeat(k) for k in keys]))


def pyramid_resolutions(size, min_resolution=16):
  """Level resolutions PGGAN reports: size, size/2, … ≥ min_resolution."""
  out = []
  while size >= min_resolution:
    out.append(size)
    size //= 2
  return out


def _swd_levels(images_a, images_b, key, nhood_size, nhoods_per_image,
                dir_repeats, dirs_per_repeat, min_resolution):
  n = images_a.shape[0]
  resolutions = pyramid_resolutions(images_a.shape[1], min_resolution)
  pyr_a = laplacian_pyramid(images_a, len(resolutions))
  pyr_b = laplacian_pyramid(images_b, len(resolutions))
  out = []
  for level, (la, lb) in enumerate(zip(pyr_a, pyr_b)):
    k_pos, k_dirs = jax.random.split(jax.random.fold_in(key, level))
    k_y, k_x = jax.random.split(k_pos)
    h, w = la.shape[1:3]
    ys = jax.random.randint(k_y, (n, nhoods_per_image), 0, h - nhood_size + 1)
    xs = jax.random.randint(k_x, (n, nhoods_per_image), 0, w - nhood_size + 1)
    da = _normalise(_descriptors(la, ys, xs, nhood_size))
    db = _normalise(_descriptors(lb, ys, xs, nhood_size))
    out.append(1e3 * _swd(da, db, k_dirs, dir_repeats, dirs_per_repeat))
  return jnp.stack(out)


_swd_levels_jit = jax.jit(_swd_levels, static_argnums=(3, 4, 5, 6, 7))


def sliced_wasserstein(images_a, images_b, key_or_seed: Union[int, jax.Array],
                       nhood_size=7, nhoods_per_image=128, dir_repeats=4,
                       dirs_per_repeat=128, min_resolution=16):
  """PGGAN's SWD (×10³) between two equally large sets of images.

  Args:
    images_a: (N, H, W, C) float images in [−1, 1], e.g. the data.
    images_b: (N, H, W, C) images to compare, e.g. samples.
    key_or_seed: a JAX PRNG key or an int seed; the result is deterministic
      given it.
    nhood_size: descriptor size (PGGAN: 7).
    nhoods_per_image: descriptors per image and level (PGGAN: 128).
    dir_repeats: repeats of the random projections (PGGAN: 4).
    dirs_per_repeat: random directions per repeat (PGGAN: 128; 512 in all).
    min_resolution: the coarsest level reported (PGGAN: 16).

  Returns:
    {resolution: SWD×10³ at that pyramid level, …, "mean": their mean} as
    Python floats, e.g. {64: …, 32: …, 16: …, "mean": …} for 64×64 images.
  """
  a = jnp.asarray(images_a, jnp.float32)
  b = jnp.asarray(images_b, jnp.float32)
  if a.ndim != 4 or a.shape != b.shape:
    raise ImageError(f"sliced_wasserstein compares two (N, H, W, C) sets of "
                     f"the same shape, but got {a.shape} and {b.shape}; pass "
                     "equally many images of one size.")
  if a.shape[0] == 0:
    raise ImageError("sliced_wasserstein got no images; pass at least one "
                     "image per set.")
  if a.shape[1] != a.shape[2] or a.shape[1] < min_resolution:
    raise ImageError(f"sliced_wasserstein needs square images of at least "
                     f"{min_resolution}×{min_resolution}, but got "
                     f"{a.shape[1]}×{a.shape[2]}; resize the images.")
  levels = len(pyramid_resolutions(a.shape[1], min_resolution))
  if a.shape[1] % 2 ** (levels - 1):
    raise ImageError(f"sliced_wasserstein halves {a.shape[1]}×{a.shape[1]} "
                     f"images {levels - 1} times for its pyramid, which needs "
                     f"a size divisible by {2 ** (levels - 1)}; resize the "
                     "images (e.g. to 32×32 or 64×64).")
  if isinstance(key_or_seed, (int, np.integer)):
    key = jax.random.PRNGKey(int(key_or_seed))
  else:
    key = key_or_seed
  swd = np.asarray(_swd_levels_jit(a, b, key, nhood_size, nhoods_per_image,
                                   dir_repeats, dirs_per_repeat,
                                   min_resolution))
  result = {res: float(d) for res, d in
            zip(pyramid_resolutions(a.shape[1], min_resolution), swd)}
  result["mean"] = float(swd.mean())
  return result
