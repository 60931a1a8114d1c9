"""Sliced Wasserstein distance on Laplacian-pyramid patches (PGGAN)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from introjax.errors import ImageError
from introjax.eval import swd
from introjax.eval.swd import sliced_wasserstein

N = 24


def rectangles(seed, n, size, channels=3):
  """Piecewise-constant images in [−1, 1]: random rectangles on a random
  background, so every pyramid level has structure."""
  rng = np.random.default_rng(seed)
  img = np.ones((n, size, size, channels), np.float32)
  img *= rng.uniform(-1, 1, (n, 1, 1, channels)).astype(np.float32)
  for _ in range(6):
    y0, x0 = rng.integers(0, size, (2, n))
    h, w = rng.integers(size // 8, size // 2, (2, n))
    colour = rng.uniform(-1, 1, (n, channels))
    for i in range(n):
      img[i, y0[i]:y0[i] + h[i], x0[i]:x0[i] + w[i]] = colour[i]
  return img


# PGGAN's pyramid (metrics/sliced_wasserstein.py), on NCHW arrays.
_FILTER = np.float32([[1, 4, 6, 4, 1], [4, 16, 24, 16, 4], [6, 24, 36, 24, 6],
                      [4, 16, 24, 16, 4], [1, 4, 6, 4, 1]]) / 256.0


def _ref_down(x):
  return scipy.ndimage.convolve(x, _FILTER[None, None], mode="mirror")[
      :, :, ::2, ::2]


def _ref_up(x):
  s = x.shape
  res = np.zeros((s[0], s[1], 2 * s[2], 2 * s[3]), x.dtype)
  res[:, :, ::2, ::2] = x
  return scipy.ndimage.convolve(res, _FILTER[None, None] * 4.0, mode="mirror")


def test_pyramid_matches_pggan_scipy_reference():
  x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 32, 32)).astype(
      np.float32)
  ref = [x]
  for _ in range(2):
    ref.append(_ref_down(ref[-1]))
    ref[-2] = ref[-2] - _ref_up(ref[-1])
  ours = swd.laplacian_pyramid(jnp.asarray(x.transpose(0, 2, 3, 1)), 3)
  assert [l.shape[1] for l in ours] == [32, 16, 8]
  for a, b in zip(ours, ref):
    np.testing.assert_allclose(np.asarray(a).transpose(0, 3, 1, 2), b,
                               atol=1e-5)


def reference_swd(images_a, images_b, seed, nhood_size, nhoods_per_image,
                  dir_repeats, dirs_per_repeat, min_resolution=16):
  """PGGAN's SWD (×10³ per level) in NumPy float64: the scipy pyramid above,
  descriptors cut by loops, normalised per channel, projected and sorted.

  Only the random draws (descriptor corners, projection directions) are
  taken from the jax.random streams `swd` documents using (per level
  `fold_in(key, level)`, split into corners and directions), so the two
  compute the same estimate and can be compared exactly.
  """
  key = jax.random.PRNGKey(seed)
  to_nchw = lambda x: np.asarray(x, np.float64).transpose(0, 3, 1, 2)
  n = images_a.shape[0]
  resolutions = swd.pyramid_resolutions(images_a.shape[1], min_resolution)
  pyramids = []
  for images in (images_a, images_b):
    levels = [to_nchw(images)]
    for _ in range(len(resolutions) - 1):
      levels.append(_ref_down(levels[-1]))
      levels[-2] = levels[-2] - _ref_up(levels[-1])
    pyramids.append(levels)
  out = []
  for level, (la, lb) in enumerate(zip(*pyramids)):
    k_pos, k_dirs = jax.random.split(jax.random.fold_in(key, level))
    k_y, k_x = jax.random.split(k_pos)
    side = la.shape[2]
    corners = [np.asarray(jax.random.randint(
        k, (n, nhoods_per_image), 0, side - nhood_size + 1))
               for k in (k_y, k_x)]

    def descriptors(pyramid_level):
      cut = []
      for i in range(n):
        for y, x in zip(corners[0][i], corners[1][i]):
          patch = pyramid_level[i, :, y:y + nhood_size, x:x + nhood_size]
          cut.append(patch.transpose(1, 2, 0))  # (row, column, channel)
      cut = np.stack(cut)
      cut = cut - cut.mean(axis=(0, 1, 2))
      cut = cut / cut.std(axis=(0, 1, 2))
      return cut.reshape(len(cut), -1)

    da, db = descriptors(la), descriptors(lb)
    repeats = []
    for k in jax.random.split(k_dirs, dir_repeats):
      dirs = np.asarray(jax.random.normal(k, (da.shape[1], dirs_per_repeat),
                                          jnp.float32), np.float64)
      dirs = dirs / np.linalg.norm(dirs, axis=0)
      repeats.append(np.mean(np.abs(np.sort(da @ dirs, axis=0) -
                                    np.sort(db @ dirs, axis=0))))
    out.append(1e3 * np.mean(repeats))
  return dict(zip(resolutions, out))


def test_matches_a_float64_reference():
  a, b = rectangles(0, 6, 32), rectangles(1, 6, 32)
  # Channels of different spread, so per-channel normalisation matters.
  b[..., 2] *= 0.3
  settings = dict(nhood_size=7, nhoods_per_image=16, dir_repeats=2,
                  dirs_per_repeat=8)
  ours = sliced_wasserstein(a, b, 5, **settings)
  expected = reference_swd(a, b, 5, **settings)
  assert list(ours) == [32, 16, "mean"]
  for resolution, value in expected.items():
    assert value > 10  # far from zero: the sets differ
    np.testing.assert_allclose(ours[resolution], value, rtol=2e-5)
  np.testing.assert_allclose(ours["mean"], np.mean(list(expected.values())),
                             rtol=2e-5)


@pytest.mark.parametrize("size,levels", [(32, [32, 16]),
                                         (64, [64, 32, 16])])
def test_identical_sets_are_zero_and_levels_follow_pggan(size, levels):
  a = rectangles(0, N, size)
  result = sliced_wasserstein(a, a.copy(), 0)
  assert list(result) == levels + ["mean"]
  for value in result.values():
    assert value == 0.0


def test_grows_with_blur_and_with_noise():
  a = rectangles(0, N, 32)
  blurred, previous = a, 0.0
  for _ in range(3):
    blurred = np.asarray(swd._blur(jnp.asarray(blurred)))
    d = sliced_wasserstein(a, blurred, 1)["mean"]
    assert d > previous + 1.0
    previous = d
  noise = np.random.default_rng(1).normal(size=a.shape).astype(np.float32)
  previous = 0.0
  for sigma in (0.05, 0.1, 0.2, 0.4):
    d = sliced_wasserstein(a, np.clip(a + sigma * noise, -1, 1), 1)["mean"]
    assert d > previous + 1.0
    previous = d


def test_deterministic_given_seed_and_blind_to_pixel_range():
  a, b = rectangles(0, N, 32), rectangles(1, N, 32)
  first = sliced_wasserstein(a, b, 3)
  assert first == sliced_wasserstein(a, b, jax.random.PRNGKey(3))
  assert first != sliced_wasserstein(a, b, 4)
  # Per-channel normalisation (as in PGGAN): [0, 255] pixels give the same.
  to_255 = lambda x: (x + 1) * 127.5
  again = sliced_wasserstein(to_255(a), to_255(b), 3)
  for k in first:
    np.testing.assert_allclose(again[k], first[k], rtol=1e-3)


def test_grayscale_and_bad_shapes():
  a = rectangles(0, 4, 16, channels=1)
  assert list(sliced_wasserstein(a, a, 0)) == [16, "mean"]
  with pytest.raises(ImageError, match="same shape"):
    sliced_wasserstein(a, a[:3], 0)
  with pytest.raises(ImageError, match="at least 16"):
    sliced_wasserstein(a[:, :8, :8], a[:, :8, :8], 0)
  odd = np.zeros((2, 66, 66, 3), np.float32)  # 66 → 33 → 16?
  with pytest.raises(ImageError, match="divisible"):
    sliced_wasserstein(odd, odd, 0)
