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
