"""Fréchet Inception distance and Inception score, and the per-round hook.

FID (Heusel et al., 2017): the Fréchet distance between Gaussian fits of two
sets' Inception pool3 features,

    ||μ1 − μ2||² + tr(Σ1) + tr(Σ2) − 2·tr((Σ1 Σ2)^½),

in float64. tr((Σ1 Σ2)^½) is the sum of the square roots of the eigenvalues
of Σ1^½ Σ2 Σ1^½, which is symmetric positive semi-definite, so symmetric
eigendecompositions give it without the complex round-off of a general
matrix square root (pytorch-fid's `scipy.linalg.sqrtm` route gives the same
number up to that round-off; the tests compare the two).

Inception score (Salimans et al., 2016): exp E_x KL(p(y|x) || p(y)) over
the 1008-class softmax, averaged over `splits` equal parts of the samples
(10 by convention; part i holds samples i·N//splits … (i+1)·N//splits − 1,
as in the original code), reported as mean and std over the parts.

Both need the Inception weights, which are never downloaded: see
`introjax.eval.inception`. `round_metrics` is what the `fid` evaluator
(eval/evaluators.py) calls.
"""
import hashlib

from absl import logging
import jax
import numpy as np

from introjax.errors import ConfigError
from introjax.eval import inception


def gaussian_stats(features):
  """Mean and covariance (unbiased, as numpy.cov) of (N, D) features."""
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or len(features) < 2:
    raise ConfigError(f"FID needs at least 2 samples of (N, D) features, but "
                      f"got shape {features.shape}; evaluate more images.")
  return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix):
  values, vectors = np.linalg.eigh(matrix)
  return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2):
  """The Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), float64.

  Covariances must be symmetric positive semi-definite (any sample
  covariance is, including rank-deficient ones from fewer samples than
  dimensions).
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1 = np.asarray(sigma1, np.float64)
  sigma2 = np.asarray(sigma2, np.float64)
  if (mu1.shape != mu2.shape or mu1.ndim != 1
      or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2):
    raise ConfigError(f"frechet_distance needs means (D,) and covariances "
                      f"(D, D) of one D, but got {mu1.shape}, {sigma1.shape}, "
                      f"{mu2.shape}, {sigma2.shape}; pass gaussian_stats() of "
                      "two feature sets.")
  root1 = _psd_sqrt(sigma1)
  middle = root1 @ sigma2 @ root1
  middle = (middle + middle.T) / 2   # symmetric up to round-off
  tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh(middle), 0, None)).sum()
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2)
               - 2 * tr_covmean)


def fid_from_features(features1, features2):
  """FID between two (N, D) feature sets, float64.

  With fewer samples than dimensions (a round's few dozen negatives against
  2048 features) the covariances have low rank, and the distance comes
  exactly from the centred features A, B: tr((Σ1 Σ2)^½) is the sum of the
  singular values of A Bᵀ / √((n1−1)(n2−1)), since A Bᵀ B Aᵀ has the nonzero
  eigenvalues of AᵀA BᵀB. That costs an n1×n2 SVD instead of two D×D
  eigendecompositions (seconds each at D = 2048 on a CPU).
  """
  a = np.asarray(features1, np.float64)
  b = np.asarray(features2, np.float64)
  if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
    raise ConfigError(f"FID compares two (N, D) feature sets of one D, but "
                      f"got shapes {a.shape} and {b.shape}; pass "
                      "inception_features() of two image sets.")
  if max(len(a), len(b)) >= a.shape[1]:
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
  gaussian_stats(a), gaussian_stats(b)   # the same checks of N ≥ 2
  diff = a.mean(axis=0) - b.mean(axis=0)
  a, b = a - a.mean(axis=0), b - b.mean(axis=0)
  scale = np.sqrt((len(a) - 1) * (len(b) - 1))
  tr_covmean = np.linalg.svd(a @ b.T, compute_uv=False).sum() / scale
  return float(diff @ diff + (a * a).sum() / (len(a) - 1)
               + (b * b).sum() / (len(b) - 1) - 2 * tr_covmean)


def inception_score(logits, splits=10):
  """(mean, std) over `splits` parts of exp(E KL(p(y|x) || p(y))), float64,
  from (N, classes) logits."""
  logits = np.asarray(logits, np.float64)
  if logits.ndim != 2:
    raise ConfigError(f"inception_score needs (N, classes) logits, but got "
                      f"shape {logits.shape}; pass inception_features()[1].")
  n = len(logits)
  if not 1 <= int(splits) <= n:
    raise ConfigError(f"inception_score splits {n} samples into {splits} "
                      f"parts, which needs 1 ≤ splits ≤ {n}; set "
                      "eval.inception_splits lower or evaluate more images.")
  shifted = logits - logits.max(axis=1, keepdims=True)
  log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
  scores = []
  for i in range(splits):
    part = log_p[i * n // splits:(i + 1) * n // splits]
    # log p(y) of the part: log of the mean of p(y|x), computed stably.
    top = part.max(axis=0)
    log_marginal = top + np.log(np.exp(part - top).mean(axis=0))
    kl = (np.exp(part) * (part - log_marginal)).sum(axis=1)
    scores.append(np.exp(kl.mean()))
  return float(np.mean(scores)), float(np.std(scores))


# The per-round hook ----------------------------------------------------------

_loaded = {}      # weights path → parameters, read once per process
_told = set()     # sentences logged once per process

HOW_TO_ENABLE = (
    "FID and Inception score are off: add 'fid' to eval.per_round (e.g. "
    "--config.eval.per_round=swd,fid) and set "
    "--config.eval.inception_weights=/path/to/"
    "pt_inception-2015-12-05-6726825d.pth (from "
    f"{inception.WEIGHTS_URL}) or an .npz made from it with `python -m "
    "introjax.eval.inception --convert in.pth out.npz`.")


def log_how_to_enable():
  """Says once per process how to turn FID and IS on."""
  if HOW_TO_ENABLE not in _told:
    _told.add(HOW_TO_ENABLE)
    logging.info("%s", HOW_TO_ENABLE)


def inception_params(path):
  """The network's parameters from `path`, read once per process."""
  if path not in _loaded:
    _loaded[path] = jax.device_put(inception.load_params(path))
  return _loaded[path]


_real_cache = {}  # the last real set's features: most callers pass the
                  # same real images every round


def _real_features(path, params, real, batch):
  key = (path, real.shape, hashlib.sha1(real.tobytes()).hexdigest())
  if key not in _real_cache:
    _real_cache.clear()
    _real_cache[key] = inception.inception_features(params, real, batch)[0]
  return _real_cache[key]


def round_metrics(config, fake, real):
  """{"fid": …, "inception_score": …} of `fake` against `real` (NHWC
  images in [−1, 1], any size, 1 or 3 channels) with the network of
  `config.eval.inception_weights` (the `fid` evaluator, eval/evaluators.py).

  The Inception score uses eval.inception_splits parts (10 by convention),
  at most one per image. FID from few samples is biased upwards (a plug-in
  estimate of a 2048-d covariance), so compare rounds of one run, not runs
  with different sample counts.
  """
  section = config.eval
  if not section.get("inception_weights", ""):
    raise ConfigError(HOW_TO_ENABLE)
  path = section.inception_weights
  params = inception_params(path)
  batch = section.get("inception_batch", 50)
  fake_features, fake_logits = inception.inception_features(
      params, np.asarray(fake, np.float32), batch)
  real_features = _real_features(path, params, np.asarray(real, np.float32),
                                 batch)
  score, _ = inception_score(fake_logits,
                             min(section.get("inception_splits", 10),
                                 len(fake_logits)))
  return {"fid": fid_from_features(fake_features, real_features),
          "inception_score": score}
