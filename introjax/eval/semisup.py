"""IGM §4.5's semi-supervised protocol (after DCGAN §5.1): how much a
network's features know about the classes it was never told.

  features  the outputs of the network's last three convolutions, each
            max-pooled to a 4×4 grid (DCGAN's; a smaller map is kept whole)
            and flattened, concatenated: 4·4·(128 + 256 + 512) = 14,336
            dimensions for IGM's SVHN critic, as §4.5 reports
  split     `heldout` random training examples (10,000) are the validation
            set that chooses C; the SVMs' labelled examples are drawn from
            the rest
  SVMs      an L2-SVM (squared hinge, L2 penalty: scikit-learn's LinearSVC,
            one-vs-rest) on `labelled` random examples (1,000); C is the one
            of `c_grid` with the lowest mean validation error over
            `selection_draws` labelled draws, then `svms` (100) SVMs on new
            draws give the test error, mean ± std (IGM on SVHN: 36.44 ±
            0.72 %, DCGAN 33.13 ± 0.83 %)

Features are standardised with the validation set's mean and deviation
(it is unlabelled data to the SVMs), which LinearSVC needs to converge at
these dimensions. The protocol works on any network whose convolutions
are `layers.Conv` (the critics and the classifiers): a trained one, or a
randomly initialised one of the same architecture, the floor.
"""
import concurrent.futures
import dataclasses
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from introjax.errors import ConfigError
from introjax.models import classifiers

GRID = 4          # DCGAN's 4×4 spatial grid per layer
LAYERS = 3        # the last three convolutions
C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def _adaptive_max_pool(x, grid):
  """(N, H, W, C) → (N, g, g, C), g = min(grid, H): cell i spans rows
  ⌊iH/g⌋ … ⌈(i+1)H/g⌉ − 1 (torch's adaptive pooling), likewise columns."""
  n, h, w, c = x.shape
  gh, gw = min(grid, h), min(grid, w)
  rows = []
  for i in range(gh):
    r0, r1 = (i * h) // gh, -(-((i + 1) * h) // gh)
    cols = []
    for j in range(gw):
      c0, c1 = (j * w) // gw, -(-((j + 1) * w) // gw)
      cols.append(jnp.max(x[:, r0:r1, c0:c1], axis=(1, 2)))
    rows.append(jnp.stack(cols, axis=1))
  return jnp.stack(rows, axis=1)


def conv_layers(module, input_shape, count=LAYERS):
  """The paths of `module`'s last `count` convolutions, in forward order."""
  paths = classifiers.conv_names(module, input_shape)
  if not paths:
    raise ConfigError("The semi-supervised protocol reads a network's "
                      "convolutions, but this network has none.")
  return tuple(paths[-count:])


def feature_fn(module, input_shape, count=LAYERS, grid=GRID):
  """`params, x -> (N, D)`: the last `count` convolutions' outputs, each
  max-pooled to grid×grid and flattened, concatenated."""
  taps = classifiers.feature_taps(module, conv_layers(module, input_shape,
                                                      count))

  def features(params, x):
    _, outputs = taps(params, x)
    return jnp.concatenate(
        [_adaptive_max_pool(o.astype(jnp.float32), grid).reshape(len(x), -1)
         for o in outputs], axis=1)

  return features


def extract(module, params, images, batch=500, count=LAYERS, grid=GRID):
  """Host float32 (N, D) features of `images` (N, H, W, C) in [-1, 1]."""
  images = np.asarray(images, np.float32)
  run = jax.jit(feature_fn(module, images.shape[1:], count, grid))
  return np.concatenate([np.asarray(run(params, jnp.asarray(
      images[i:i + batch]))) for i in range(0, len(images), batch)])


def labelled_data(config, npz_path=None):
  """The labelled-data section of a saved run: a classifier's own (all its
  training images), or one read from an image member's dataset."""
  data = config.data.to_dict()
  if npz_path:
    data["npz_path"] = npz_path
  if config.trainer in ("icl", "stic"):
    data["max_train"] = 0
    return ml_collections.ConfigDict(data)
  source = data.get("source", "")
  if source == "npz":
    return ml_collections.ConfigDict({"source": "npz", "num_classes": 10,
                                      "npz_path": data["npz_path"]})
  if source == "tfds":
    return ml_collections.ConfigDict({
        "source": "tfds", "num_classes": 10, "name": data["name"],
        "train_split": data.get("split", "train"), "test_split": "test",
        "data_dir": data.get("data_dir", "")})
  raise ConfigError(
      f"The run was trained on {source or data.get('texture', 'a texture')!r}"
      " images, which have no labels; the semi-supervised protocol needs a "
      "labelled dataset (npz or TFDS, e.g. MNIST or SVHN).")


@dataclasses.dataclass(frozen=True)
class Settings:
  labelled: int = 1000
  heldout: int = 10000
  svms: int = 100
  selection_draws: int = 5
  c_grid: Sequence[float] = C_GRID
  seed: int = 0
  # SVMs fitted at once, in threads (liblinear frees the GIL); 0: a core each.
  jobs: int = 0

  @classmethod
  def from_config(cls, config):
    ev = (config.get("eval") or {}) if config is not None else {}
    return cls(labelled=int(ev.get("semisup_labelled", 1000)),
               heldout=int(ev.get("semisup_heldout", 10000)),
               svms=int(ev.get("semisup_svms", 100)),
               selection_draws=int(ev.get("semisup_selection_draws", 5)),
               seed=int((config or {}).get("seed", 0)),
               jobs=int(ev.get("semisup_jobs", 0)))


def split(num_train, settings):
  """(validation rows, the rest) of a training set of `num_train` rows, a
  random split; refuses a set too small for the protocol's sizes."""
  need = settings.heldout + settings.labelled
  if settings.labelled < 2 or settings.heldout < 1 or settings.svms < 1:
    raise ConfigError(
        f"The semi-supervised protocol needs at least 2 labelled examples, 1 "
        f"held-out one and 1 SVM, but got {settings.labelled}, "
        f"{settings.heldout} and {settings.svms}; raise "
        "eval.semisup_labelled, eval.semisup_heldout or eval.semisup_svms.")
  if num_train < need:
    raise ConfigError(
        f"The semi-supervised protocol takes {settings.heldout} held-out and "
        f"{settings.labelled} labelled training examples, but the training "
        f"set has {num_train}; lower --heldout / --labelled "
        "(eval.semisup_heldout, eval.semisup_labelled), e.g. "
        f"{max(1, num_train // 3)} and {max(2, num_train // 6)}.")
  order = np.random.default_rng(settings.seed).permutation(num_train)
  return order[:settings.heldout], order[settings.heldout:]


def draws(rest, settings, count, stream):
  """`count` random labelled sets of `settings.labelled` rows of `rest`."""
  rng = np.random.default_rng([settings.seed, stream])
  return [rng.choice(rest, settings.labelled, replace=False)
          for _ in range(count)]


def plan(num_train, settings):
  """(validation rows, the C-selection draws, the SVMs' draws)."""
  heldout, rest = split(num_train, settings)
  return (heldout, draws(rest, settings, settings.selection_draws, 1),
          draws(rest, settings, settings.svms, 2))


def rows_used(num_train, settings):
  """The sorted training rows the protocol reads: only their features are
  computed."""
  heldout, selection, svms = plan(num_train, settings)
  return np.unique(np.concatenate([heldout, *selection, *svms]))


def _svm(c, seed):
  from sklearn.svm import LinearSVC  # pylint: disable=g-import-not-at-top
  return LinearSVC(C=c, loss="squared_hinge", penalty="l2", dual=True,
                   max_iter=2000, random_state=seed)


def protocol(train_features, train_labels, test_features, test_labels,
             settings=Settings(), rows=None):
  """{"error", "error_std" (test error, %, over the SVMs), "C", "errors"
  (each SVM's), "dims"} of the protocol on precomputed features:
  `train_features` of every training row, or of `rows` (sorted; at least
  `rows_used`) only; `train_labels` of every training row."""
  import warnings  # pylint: disable=g-import-not-at-top
  from sklearn.exceptions import ConvergenceWarning  # pylint: disable=g-import-not-at-top
  train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
  heldout, selection, svm_draws = plan(len(train_labels), settings)
  position = ((lambda r: r) if rows is None
              else (lambda r: np.searchsorted(rows, r)))
  held = np.asarray(train_features[position(heldout)], np.float32)
  mean, std = held.mean(axis=0), held.std(axis=0) + 1e-6
  scale = lambda f: (np.asarray(f, np.float32) - mean) / std
  held_x, test_x = scale(held), scale(test_features)

  def error(c, draw, x, y, seed):
    svm = _svm(c, seed).fit(scale(train_features[position(draw)]),
                            train_labels[draw])
    return 100.0 * float((svm.predict(x) != y).mean())

  jobs = settings.jobs or os.cpu_count() or 1
  with warnings.catch_warnings(), \
      concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
    # A few SVMs stop at max_iter on near-separable features; their
    # solution is still the one the protocol scores.
    warnings.simplefilter("ignore", ConvergenceWarning)
    fits = lambda tasks: list(pool.map(lambda task: error(*task), tasks))
    validation = {c: np.mean(fits([(c, draw, held_x, train_labels[heldout], i)
                                   for i, draw in enumerate(selection)]))
                  for c in settings.c_grid}
    best = min(validation, key=validation.get)
    errors = fits([(best, draw, test_x, test_labels, i)
                   for i, draw in enumerate(svm_draws)])
  return {"error": float(np.mean(errors)), "error_std": float(np.std(errors)),
          "C": float(best), "errors": errors, "dims": int(held_x.shape[1])}


def evaluate(module, params, train_set, test_set, settings=Settings(),
             batch=500):
  """The protocol on `module`'s features of the labelled (images in
  [-1, 1], labels) train and test sets; only the training rows it reads
  pass through the network."""
  train_images, train_labels = train_set
  rows = rows_used(len(train_labels), settings)
  test_images, test_labels = test_set
  return protocol(extract(module, params, np.asarray(train_images)[rows],
                          batch),
                  train_labels, extract(module, params, test_images, batch),
                  test_labels, settings, rows=rows)
