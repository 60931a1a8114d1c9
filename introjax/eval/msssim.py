"""MS-SSIM (Wang et al. 2003) and the sample diversity measure built on it
(Odena et al. 2017; IntroVAE Fig. 8): the mean MS-SSIM over pairs of
generated images. Lower is more diverse; a set of near-copies (mode
collapse) approaches 1.

The standard settings: an 11×11 Gaussian window (σ 1.5, 'valid'), K1 0.01,
K2 0.03 on [0, 1] pixels, five scales weighted (0.0448, 0.2856, 0.3001,
0.2363, 0.1333), negative contrast terms clipped at 0 (as
tf.image.ssim_multiscale). Small images get fewer scales: as many as keep
the coarsest at least 11 pixels wide, the weights renormalised; images
under 11 pixels use a window of their own side (one scale, i.e. SSIM).
Colour images: each term is averaged over the channels.
"""
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from introjax.errors import ImageError

_WEIGHTS = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333], np.float32)
_WINDOW, _SIGMA = 11, 1.5
_C1, _C2 = 0.01 ** 2, 0.03 ** 2


def num_scales(side):
  """How many scales MS-SSIM uses on side×side images."""
  if side < _WINDOW:
    return 1
  return int(min(5, 1 + np.floor(np.log2(side / _WINDOW))))


def _window(size):
  x = np.arange(size, dtype=np.float32) - (size - 1) / 2
  g = np.exp(-x ** 2 / (2 * _SIGMA ** 2))
  return g / g.sum()


def _filter(x, taps):
  """Separable 'valid' Gaussian filter of (N, H, W, C) per channel."""
  k = len(taps)
  h = sum(t * x[:, i:x.shape[1] - k + 1 + i] for i, t in enumerate(taps))
  return sum(t * h[:, :, i:h.shape[2] - k + 1 + i] for i, t in enumerate(taps))


def _ssim_terms(a, b, taps):
  """(SSIM, contrast-structure) per image, each averaged over the map and
  the channels."""
  mu_a, mu_b = _filter(a, taps), _filter(b, taps)
  var_a = _filter(a * a, taps) - mu_a ** 2
  var_b = _filter(b * b, taps) - mu_b ** 2
  cov = _filter(a * b, taps) - mu_a * mu_b
  cs = (2 * cov + _C2) / (var_a + var_b + _C2)
  luminance = (2 * mu_a * mu_b + _C1) / (mu_a ** 2 + mu_b ** 2 + _C1)
  return (jnp.mean(luminance * cs, axis=(1, 2, 3)),
          jnp.mean(cs, axis=(1, 2, 3)))


@functools.partial(jax.jit, static_argnums=2)
def _ms_ssim(a, b, levels):
  a = (a.astype(jnp.float32) + 1.0) / 2.0
  b = (b.astype(jnp.float32) + 1.0) / 2.0
  taps = [float(t) for t in _window(min(_WINDOW, a.shape[1]))]
  weights = _WEIGHTS[:levels] / _WEIGHTS[:levels].sum()
  value = jnp.ones(a.shape[0], jnp.float32)
  for level in range(levels):
    ssim, cs = _ssim_terms(a, b, taps)
    term = ssim if level == levels - 1 else cs
    value = value * jax.nn.relu(term) ** float(weights[level])
    if level < levels - 1:
      a = (a[:, ::2, ::2] + a[:, 1::2, ::2] + a[:, ::2, 1::2]
           + a[:, 1::2, 1::2]) / 4
      b = (b[:, ::2, ::2] + b[:, 1::2, ::2] + b[:, ::2, 1::2]
           + b[:, 1::2, 1::2]) / 4
  return value


def ms_ssim(images_a, images_b):
  """MS-SSIM of each pair (images_a[i], images_b[i]), (N, H, W, C) in
  [-1, 1]; a numpy (N,) array, 1 for identical images."""
  a, b = jnp.asarray(images_a), jnp.asarray(images_b)
  if a.ndim != 4 or a.shape != b.shape or a.shape[1] != a.shape[2]:
    raise ImageError(f"ms_ssim compares two sets of square (N, S, S, C) "
                     f"images of one shape, but got {a.shape} and {b.shape}; "
                     "pass equally many images of one size.")
  return np.asarray(_ms_ssim(a, b, num_scales(a.shape[1])))


def diversity(images, key=0, max_pairs=1000):
  """The mean MS-SSIM over pairs of distinct images of `images` (N ≥ 2):
  every pair when there are at most `max_pairs`, else that many random
  ones (deterministic given `key`, an int seed)."""
  images = np.asarray(images)
  n = len(images)
  if n < 2:
    raise ImageError(f"MS-SSIM diversity needs at least 2 images, got {n}; "
                     "generate more.")
  pairs = np.array(list(itertools.combinations(range(n), 2)))
  if len(pairs) > max_pairs:
    rng = np.random.default_rng(int(key))
    pairs = pairs[rng.choice(len(pairs), max_pairs, replace=False)]
  return float(ms_ssim(images[pairs[:, 0]], images[pairs[:, 1]]).mean())
