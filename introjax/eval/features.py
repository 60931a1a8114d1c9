"""Feature-space metrics of generated images, and the networks they use.

  kid        Kernel Inception distance (Bińkowski et al. 2018): the unbiased
             MMD² between real and generated features under the cubic
             polynomial kernel k(x, y) = (x·y / d + 1)³, averaged over
             `subsets` random subsets of `subset_size` of each set (drawn
             without replacement within a subset); reported with the
             standard deviation of the subset estimates, as Bińkowski et
             al.'s code and torch-fidelity report it. A subset is at most
             half the smaller set: subsets of every row would all be the
             same estimate, with a deviation of 0 that says nothing (so
             with fewer than 2·subset_size images the ± is that of a
             half-size estimate, larger than the whole set's).
  precision  Kynkäänniemi et al. 2019: the share of generated features
  recall     inside the real manifold (the union of balls around each real
             feature reaching its k-th nearest real neighbour, k = 3), and
             of real features inside the generated manifold.

Every number is tied to the network whose features it compares, and its
key says which: `kid[inception]`, `precision[judge:digits]`. The networks:

  inception       pytorch-fid's Inception-v3 pool3 (eval.inception_weights),
                  inputs quantised to uint8 and resized as pytorch-fid does
  judge:<data>    for sets without an Inception protocol (MNIST, digits,
                  textures, faces): eval/judge.py's independent classifier
                  trained on the dataset's labelled images; the features are
                  its last convolution's LeakyReLU output, averaged over
                  the image (judge_features[-1] dimensions)
"""
import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from introjax.errors import ConfigError
from introjax.eval import inception
from introjax.eval import judge
from introjax.models import classifiers


@dataclasses.dataclass(frozen=True)
class FeatureNet:
  name: str                    # goes into every metric's key
  features: Callable           # (N, H, W, C) host images in [-1, 1] -> (N, D)


def tagged(metrics, net_name):
  """{"kid[inception]": …} from {"kid": …}."""
  return {f"{k}[{net_name}]": v for k, v in metrics.items()}


# The metrics ------------------------------------------------------------------


def polynomial_kernel(a, b):
  """(x·y / d + 1)³ between the rows of a (n, d) and b (m, d), float64."""
  return (a @ b.T / a.shape[1] + 1.0) ** 3


def mmd2_unbiased(x, y):
  """The unbiased MMD² of two (m, d) and (n, d) feature sets under the
  polynomial kernel: the within-set means leave out the diagonal."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  m, n = len(x), len(y)
  kxx, kyy, kxy = (polynomial_kernel(x, x), polynomial_kernel(y, y),
                   polynomial_kernel(x, y))
  return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
               + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
               - 2 * kxy.mean())


def kid(real, fake, subsets=100, subset_size=1000, seed=0):
  """{"kid": mean, "kid_std": std} of the unbiased MMD² over `subsets`
  random subsets of min(subset_size, N // 2) rows of each set (N the
  smaller set's size; all N rows when N < 4)."""
  real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
  if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
    raise ConfigError(f"KID compares two (N, D) feature sets of one D, but "
                      f"got shapes {real.shape} and {fake.shape}.")
  n = min(len(real), len(fake))
  size = min(int(subset_size), n // 2 if n >= 4 else n)
  if size < 2 or subsets < 1:
    raise ConfigError(f"KID needs at least 2 real and 2 generated images and "
                      f"one subset, but got {len(real)}, {len(fake)} and "
                      f"{subsets}; evaluate more images.")
  rng = np.random.default_rng(seed)
  values = [mmd2_unbiased(real[rng.choice(len(real), size, replace=False)],
                          fake[rng.choice(len(fake), size, replace=False)])
            for _ in range(int(subsets))]
  return {"kid": float(np.mean(values)), "kid_std": float(np.std(values))}


def _squared_distances(a, b):
  d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
  return np.maximum(d, 0.0)


def knn_radii(features, k):
  """Each row's squared distance to its k-th nearest other row."""
  d = _squared_distances(features, features)
  np.fill_diagonal(d, np.inf)
  return np.partition(d, k - 1, axis=1)[:, k - 1]


def inside_manifold(manifold, radii, queries):
  """Whether each query lies within some ball (centre manifold[i], squared
  radius radii[i])."""
  return (_squared_distances(queries, manifold) <= radii[None, :]).any(axis=1)


def precision_recall(real, fake, k=3):
  """{"precision": …, "recall": …} (Kynkäänniemi et al. 2019), float64."""
  real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
  if min(len(real), len(fake)) <= k:
    raise ConfigError(f"precision and recall with k={k} need more than {k} "
                      f"real and generated images, but got {len(real)} and "
                      f"{len(fake)}; evaluate more images or lower "
                      "eval.pr_k.")
  precision = inside_manifold(real, knn_radii(real, k), fake).mean()
  recall = inside_manifold(fake, knn_radii(fake, k), real).mean()
  return {"precision": float(precision), "recall": float(recall)}


# The networks ------------------------------------------------------------------


def inception_net(params, batch=50):
  """pool3 features of pytorch-fid's network (`params` from
  fid.inception_params)."""
  return FeatureNet("inception", lambda images: inception.inception_features(
      params, images, batch)[0])


def judge_features(module, params, input_shape, batch=500):
  """`images -> (N, D)`: the spatial mean of the LeakyReLU of the judge's
  last convolution."""
  last = classifiers.conv_names(module, input_shape)[-1]
  taps = classifiers.feature_taps(module, [last])

  @jax.jit
  def run(x):
    _, (out,) = taps(params, x)
    return jnp.mean(jax.nn.leaky_relu(out.astype(jnp.float32), 0.2),
                    axis=(1, 2))

  def features(images):
    images = np.asarray(images, np.float32)
    return np.concatenate([np.asarray(run(jnp.asarray(images[i:i + batch])),
                                      np.float64)
                           for i in range(0, len(images), batch)])

  return features


_JUDGES = {}   # (name, shape, settings) -> FeatureNet


def judge_net(name, images, labels, num_classes, config):
  """`judge:<name>`: eval/judge.py's classifier trained on the labelled
  `images` (in [-1, 1]) with the config's judge settings, once per process
  and dataset."""
  steps, widths, seed = judge.settings(config)
  cache_key = (name, np.shape(images), steps, widths, seed)
  if cache_key not in _JUDGES:
    module, params = judge.train_judge_network(
        images, labels, num_classes, steps, widths, seed)
    _JUDGES[cache_key] = FeatureNet(
        f"judge:{name}", judge_features(module, params, np.shape(images)[1:]))
  return _JUDGES[cache_key]
