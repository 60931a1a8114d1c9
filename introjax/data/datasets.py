"""Labelled image datasets for the classifiers, as uint8 arrays in host memory.

Three sources, chosen by `config.data.source`:

- "digits": scikit-learn's bundled 8×8 digits, the offline default (no
  network, no files).
- "npz": a Keras-layout `mnist.npz` given by `data.npz_path`, so the papers'
  MNIST numbers can be checked offline.
- "tfds": any prepared TFDS image classification dataset (features 'image'
  and 'label', e.g. mnist, cifar10, svhn_cropped), read through
  `tfds.data_source` and grain. TensorFlow is not needed to read, only to
  prepare; the loader never downloads (`download=False`).

Images stay uint8 until they are on the device: `to_unit_range` scales them
inside the jitted step, which moves 4× fewer bytes than float32 would.

Multi-host: with `train_rows`, each process keeps only its own rows of the
training split (TFDS: only those are decoded; grain slices the source), and
the trainer assembles the global array from them; the test split is small
and loaded whole by every process.
"""
import dataclasses
import os
import re

import jax
import jax.numpy as jnp
import numpy as np

from introjax import paths
from introjax import parallel
from introjax.errors import DataError

SOURCES = ("digits", "npz", "tfds")
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# Fraction of each digit class held out for the test split.
_DIGITS_TEST_FRACTION = 1 / 3
# Examples decoded per grain batch; big enough to amortise the per-batch
# overhead, small enough that a thread's batch stays in cache-sized memory.
_TFDS_BATCH = 256


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
  """A labelled image dataset in host memory.

  Attributes:
    images: (N, H, W, C) uint8.
    labels: (N,) int32 in [0, num_classes).
    num_classes: The number of classes the labels index.
    name: Where it came from, e.g. "digits", "mnist.npz", "tfds:cifar10".
    total: Rows over every process when this process holds only some of
      them (`load_classification`'s train_rows); 0: these are all.
  """
  images: np.ndarray
  labels: np.ndarray
  num_classes: int
  name: str
  total: int = 0

  @property
  def num_rows(self):
    """Rows over every process."""
    return self.total or len(self.labels)

  def __len__(self):
    return len(self.labels)


def load_classification(data, train_rows=None):
  """Loads the (train, test) datasets the config's data section names.

  Fields read from `data` (an ml_collections.ConfigDict): `source` ("digits",
  "npz" or "tfds"), `num_classes`, `max_train` and `max_test` (0 keeps all,
  N keeps the first N), `seed` (digits split), `npz_path` (npz), `name`,
  `data_dir` ("" is TFDS's default), `train_split` and `test_split` (tfds;
  "+" joins splits, e.g. SVHN's "train+extra").

  Args:
    data: The config's `data` section.
    train_rows: None (load the whole training split), or a function of the
      split's size returning the rows [start, stop) this process keeps
      (`parallel.process_rows`); stop may pass the end.

  Returns:
    (train, test) ArrayDatasets, validated against `data.num_classes`.

  Raises:
    DataError: The data is missing, unreadable, not prepared, empty or does
      not match `data.num_classes`.
  """
  source = data.get("source", None)
  num_classes = int(data.get("num_classes", 10))
  max_train = int(data.get("max_train", 0))
  max_test = int(data.get("max_test", 0))
  if num_classes < 1:
    raise DataError(f"data.num_classes is {num_classes}; set "
                    "--config.data.num_classes to the dataset's class count.")
  for key, value in (("max_train", max_train), ("max_test", max_test)):
    if value < 0:
      raise DataError(f"data.{key} is {value}; set --config.data.{key} to 0 "
                      "(all examples) or a positive count.")
  if source == "digits":
    (xtr, ytr), (xte, yte) = _digits(int(data.get("seed", 0)))
    name = "digits"
  elif source == "npz":
    path = data.get("npz_path", "")
    (xtr, ytr), (xte, yte) = _npz(path)
    name = os.path.basename(path)
  elif source == "tfds":
    tfds_name = data.get("name", "")
    data_dir = data.get("data_dir", "")
    xtr, ytr, total = _tfds(tfds_name, data.get("train_split", "train"),
                            data_dir, max_train, "train_split", train_rows)
    xte, yte, _ = _tfds(tfds_name, data.get("test_split", "test"), data_dir,
                        max_test, "test_split")
    name = f"tfds:{tfds_name}"
    if train_rows is not None:  # already this process's rows
      train = _make(xtr, ytr, 0, num_classes, name, "train", False)
      test = _make(xte, yte, max_test, num_classes, name, "test", False)
      return dataclasses.replace(train, total=total), test
  else:
    raise DataError(f"Unknown data source {source!r}; set "
                    f"--config.data.source to one of {', '.join(SOURCES)}.")
  # TFDS sources are already cut before decoding; cutting again is a no-op.
  train = _make(xtr, ytr, max_train, num_classes, name, "train", True)
  test = _make(xte, yte, max_test, num_classes, name, "test", False)
  if train_rows is not None:
    start, stop = train_rows(len(train))
    train = dataclasses.replace(train, images=train.images[start:stop],
                                labels=train.labels[start:stop],
                                total=len(train))
  return train, test


def _make(images, labels, limit, num_classes, name, split, all_classes):
  """Cuts to the first `limit` examples and checks the result."""
  if limit:
    images, labels = images[:limit], labels[:limit]
  what = f"the {split} split of {name}"
  head = what[0].upper() + what[1:]  # the same, starting a sentence
  if images.ndim != 4:
    raise DataError(f"{head} has images of shape {images.shape}; expected "
                    "(N, H, W, C) — use an image classification dataset.")
  labels = np.asarray(labels)
  if labels.ndim == 2 and labels.shape[1] == 1:  # Keras-style (N, 1)
    labels = labels[:, 0]
  if labels.ndim != 1 or len(labels) != len(images):
    raise DataError(f"{head} has {len(images)} images but labels of shape "
                    f"{labels.shape}; give one integer label per image.")
  if not len(images):
    raise DataError(f"{head} is empty; check the data source and "
                    f"--config.data.max_{split}.")
  if not np.issubdtype(labels.dtype, np.integer):
    raise DataError(f"{head} has {labels.dtype} labels; give integer class "
                    "labels.")
  low, high = int(labels.min()), int(labels.max())
  if low < 0:
    raise DataError(
        f"Labels/classes mismatch: {what} has negative labels (down to {low}); "
        "give 0-based class labels in [0, data.num_classes).")
  if high >= num_classes:
    raise DataError(
        f"Labels/classes mismatch: {what} has labels up to {high}, outside "
        f"[0, {num_classes}) for data.num_classes={num_classes}; set "
        f"--config.data.num_classes to at least {high + 1}.")
  if all_classes:
    found = len(np.unique(labels))
    if found != num_classes:
      raise DataError(
          f"Labels/classes mismatch: {what} has {found} distinct labels but "
          f"data.num_classes={num_classes}; set --config.data.num_classes to "
          f"{found} or raise --config.data.max_train so every class appears.")
  return ArrayDataset(images=np.ascontiguousarray(images, np.uint8),
                      labels=labels.astype(np.int32), num_classes=num_classes,
                      name=name)


def _to_uint8(images, what):
  """Integer images in 0..255 as uint8; anything else is refused."""
  images = np.asarray(images)
  if images.dtype == np.uint8:
    return images
  if (not np.issubdtype(images.dtype, np.integer) or
      (images.size and (images.min() < 0 or images.max() > 255))):
    raise DataError(f"{what} are not 8-bit pixels ({images.dtype}); give "
                    "uint8 images in 0..255.")
  return images.astype(np.uint8)


def _digits(seed):
  """scikit-learn's 1797 8×8 digits, split per class: a seeded third of each
  class (rounded) is the test split, the rest trains.

  Both splits keep the bundled order (which cycles through the classes), so
  a `max_train` prefix stays roughly balanced.
  """
  import sklearn.datasets
  digits = sklearn.datasets.load_digits()
  # Values are counts 0..16 of set pixels in 4×4 blocks; stretch to 0..255.
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = digits.target.astype(np.int32)
  is_test = digits_test_mask(labels, seed)
  return ((images[~is_test], labels[~is_test]),
          (images[is_test], labels[is_test]))


def digits_test_mask(labels, seed):
  """True for the test examples: a seeded third (rounded) of each class."""
  rng = np.random.default_rng(seed)
  is_test = np.zeros(len(labels), bool)
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    n_test = int(round(len(members) * _DIGITS_TEST_FRACTION))
    is_test[rng.permutation(members)[:n_test]] = True
  return is_test


def _npz(path):
  """A Keras-layout mnist.npz: x_* (N, H, W) or (N, H, W, C) uint8, y_* (N,)."""
  fix = "set --config.data.npz_path to a Keras-layout mnist.npz"
  if not path:
    raise DataError(f"data.source is 'npz' but data.npz_path is empty; {fix}.")
  if not paths.is_file(path):
    raise DataError(f"The npz file {path!r} does not exist; {fix}.")
  try:
    with np.load(paths.readable(path), allow_pickle=False) as f:
      missing = [k for k in _NPZ_KEYS if k not in f.files]
      if missing:
        raise DataError(f"The npz file {path!r} lacks the keys "
                        f"{', '.join(missing)}; {fix}.")
      arrays = {k: f[k] for k in _NPZ_KEYS}
  except DataError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(f"Could not read {path!r} as an npz file ({e}); {fix}.") \
        from e
  out = []
  for split in ("train", "test"):
    images = _to_uint8(arrays[f"x_{split}"], f"The {split} images in {path!r}")
    if images.ndim == 3:  # Keras keeps grey images without a channel axis.
      images = images[..., None]
    out.append((images, arrays[f"y_{split}"]))
  return tuple(out)


def _tfds(name, split, data_dir, limit, split_key, rows=None, transform=None,
          with_labels=True):
  """Decodes the "+"-joined TFDS `split` (only the `rows` of it, if given)
  into (images, labels, rows in the whole split); `transform` maps each
  decoded image (e.g. a centre crop) before it is stored, and without labels
  only 'image' is read (labels are zeros)."""
  import grain
  import tensorflow_datasets as tfds
  if not name:
    raise DataError("data.source is 'tfds' but data.name is empty; set "
                    "--config.data.name to a TFDS dataset such as cifar10.")
  parts = [p.strip() for p in str(split).split("+") if p.strip()]
  if not parts:
    raise DataError(f"data.{split_key} is {split!r}; set "
                    f"--config.data.{split_key} to a split such as 'train'.")
  # Slices ('train[29000:]') are taken here, so every TFDS reader (and the
  # test stand-in) sees whole splits.
  pieces = []
  for part in parts:
    piece = grain.MapDataset.source(
        _tfds_source(tfds, name, split_name(part), data_dir, split_key))
    rows_of = split_rows(part, len(piece))[1]
    pieces.append(piece[rows_of.start:rows_of.stop])
  ds = grain.MapDataset.concatenate(pieces)
  if limit:
    ds = ds[:limit]
  total = len(ds)
  if not total:
    return np.zeros((0, 1, 1, 1), np.uint8), np.zeros((0,), np.int32), total
  # The first example of the whole split: a process can hold no rows at all
  # and still needs the image shape.
  first = ds[0]
  if rows is not None:
    start, stop = rows(total)
    ds = ds[min(start, total):min(stop, total)]
  n = len(ds)
  needed = {"image", "label"} if with_labels else {"image"}
  if not isinstance(first, dict) or not needed <= first.keys():
    keys = sorted(first) if isinstance(first, dict) else type(first).__name__
    if with_labels:
      raise DataError(f"TFDS dataset {name!r} has features {keys}, not "
                      "'image' and 'label'; set --config.data.name to an "
                      "image classification dataset.")
    raise DataError(f"TFDS dataset {name!r} has features {keys}, no 'image';"
                    " set --config.data.name to an image dataset.")
  transform = transform or (lambda image: image)
  shape = np.shape(transform(first["image"]))
  images = np.empty((n, *shape), np.uint8)
  labels = np.empty((n,), np.int64)
  # Only the two features travel: others (e.g. cifar10's string 'id') would
  # only slow the batching down.
  ds = ds.map(lambda ex: (transform(ex["image"]),
                         ex["label"] if with_labels else 0))
  ds = ds.batch(_TFDS_BATCH)
  # Threads decode batches in parallel (PNG decoding releases the GIL).
  options = grain.ReadOptions(num_threads=min(16, os.cpu_count() or 1),
                              prefetch_buffer_size=4)
  start = 0
  try:
    for x, y in ds.to_iter_dataset(options) if n else ():
      images[start:start + len(x)] = x
      labels[start:start + len(y)] = y
      start += len(x)
  except ValueError as e:  # np.stack/assignment of differing image shapes
    raise DataError(f"TFDS dataset {name!r} ({split}) has images of differing "
                    f"shapes ({e}); use a dataset with one image size.") from e
  return images, labels, total


def _tfds_source(tfds, name, split, data_dir, split_key):
  """`tfds.data_source` for one split, never downloading; failures explained."""
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir or None,
                            download=False)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise DataError(f"TFDS has no dataset named {name!r}; set "
                    "--config.data.name to a TFDS image classification "
                    "dataset such as mnist, cifar10 or svhn_cropped.") from e
  except Exception as e:  # pylint: disable=broad-except
    # TFDS reports a missing dataset in several ways (KeyError on empty
    # splits, NotImplementedError on the default file format); ask the
    # builder what is actually there.
    cause = e
  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
    prepared = builder.is_prepared()
    root = str(builder.data_dir_root)
  except Exception:  # pylint: disable=broad-except
    builder, prepared, root = None, False, data_dir or "TFDS's default data_dir"
  if not prepared:
    raise DataError(
        f"TFDS dataset {name!r} is not prepared in {root} (the loader reads "
        "ArrayRecord files and never downloads); prepare it once with "
        f"`pip install tensorflow && tfds build {name} --data_dir={root} "
        "--file_format=array_record` or point --config.data.data_dir at a "
        "directory where it is prepared.") from cause
  file_format = builder.info.file_format
  random_access = tfds.core.file_adapters.FileFormat.with_random_access()
  if file_format not in random_access:
    raise DataError(
        f"TFDS dataset {name!r} in {root} is stored as "
        f"{getattr(file_format, 'value', file_format)}, which tfds.data_source "
        "cannot read; rebuild it with `tfds build "
        f"{name} --data_dir={root} --file_format=array_record`.") from cause
  splits = ", ".join(sorted(builder.info.splits.keys()))
  raise DataError(
      f"Could not read split {split!r} of TFDS dataset {name!r} in {root} "
      f"({type(cause).__name__}: {cause}); set --config.data.{split_key} to "
      f"one of its splits ({splits}), '+'-joined if needed.") from cause


# Unlabelled images for the generative models -------------------------------

IMAGE_SOURCES = ("lfw_subset", "npz", "tfds")
# scikit-image's lfw_subset is a face-detection set: 100 grey 25×25 LFW faces
# followed by 100 non-faces (background crops). Only the faces are training
# images.
LFW_SUBSET_FACES = 100
# The faces are scaled up to this side: the
# App. C critic halves its map per stage and App. D's initialiser doubles
# 4×4 noise, so both need a side of 4·2^k, and 32 is the nearest one above
# 25 (up-sampling keeps every pixel of the data; 16 would throw most away).
LFW_SUBSET_SIZE = 32


def load_images(data, rows=None):
  """The unlabelled training images the config's data section names: (N, S,
  S, C) uint8, a name for them, and how many there are over every process.

  Fields read from `data`: `source` ("lfw_subset": scikit-image's 100
  bundled LFW faces, offline, without the set's 100 non-faces; "npz":
  `npz_path`, a Keras-layout file, `split` "train" or "test"; "tfds":
  `name`, `split` ("+"-joins), `data_dir`), `max_images` (0: all), `crop`
  (side of the centre square cut from each image; 0: the largest),
  `image_size` (the square is resized to this; 0: kept), `channels` (0: as
  stored; 1: grey; 3: RGB). Each image is cut and resized as it is decoded,
  so a large dataset never sits in memory at its stored size.

  `rows`, as in `load_classification`: a function of the dataset's size
  returning the rows [start, stop) this process keeps (TFDS: only those are
  decoded); None keeps all.

  Raises:
    DataError: the data is missing, not prepared, empty, or smaller than
      `crop`.
  """
  source = data.get("source", "")
  crop = int(data.get("crop", 0))
  size = int(data.get("image_size", 0))
  limit = int(data.get("max_images", 0))
  if min(crop, size, limit) < 0:
    raise DataError("data.crop, data.image_size and data.max_images must be "
                    "≥ 0 (0: the whole image, its own size, all images).")
  transform = lambda image: _square(image, crop, size)
  if source == "lfw_subset":
    import skimage.data
    faces = skimage.data.lfw_subset()[:LFW_SUBSET_FACES]  # floats in [0, 1]
    faces = np.round(faces * 255.0).astype(np.uint8)[..., None]
    if limit:
      faces = faces[:limit]
    total = len(faces)
    shape = np.shape(transform(faces[0]))  # also for a process with no rows
    if rows is not None:
      faces = faces[slice(*rows(total))]
    images = np.array([transform(f) for f in faces], np.uint8).reshape(
        (-1, *shape))
    name = "lfw_subset"
  elif source == "npz":
    # A Keras-layout npz (mnist.npz) as unlabelled images: `split` is
    # "train" or "test".
    split = data.get("split", "train")
    if split not in ("train", "test"):
      raise DataError(f"data.split={split!r} for an npz file; use 'train' or "
                      "'test'.")
    arrays = dict(zip(("train", "test"), _npz(data.get("npz_path", ""))))
    stored = arrays[split][0]
    if limit:
      stored = stored[:limit]
    total = len(stored)
    shape = np.shape(transform(stored[0])) if total else (1, 1, 1)
    if rows is not None:
      stored = stored[slice(*rows(total))]
    images = np.array([transform(x) for x in stored], np.uint8).reshape(
        (-1, *shape))
    name = os.path.basename(data.get("npz_path", ""))
  elif source == "tfds":
    tfds_name = data.get("name", "")
    images, _, total = _tfds(tfds_name, data.get("split", "train"),
                             data.get("data_dir", ""), limit, "split", rows,
                             transform=transform, with_labels=False)
    name = f"tfds:{tfds_name}"
  else:
    raise DataError(f"Unknown image source {source!r}; set "
                    "--config.data.source to one of "
                    f"{', '.join(IMAGE_SOURCES)}.")
  if not total:
    raise DataError(f"{name} has no images; check the data source and "
                    "--config.data.max_images.")
  return _with_channels(images, int(data.get("channels", 0))), name, total


def _square(image, crop, size):
  """The centre crop×crop square of an (H, W, C) uint8 image (crop 0: the
  largest square), resized to size×size (size 0: kept)."""
  image = np.asarray(image)
  h, w = image.shape[:2]
  side = crop or min(h, w)
  if side > min(h, w):
    raise DataError(f"data.crop={crop} is larger than the {h}×{w} images; "
                    f"set --config.data.crop to at most {min(h, w)}.")
  top, left = (h - side) // 2, (w - side) // 2
  image = image[top:top + side, left:left + side]
  if size and size != side:
    from PIL import Image  # pylint: disable=import-outside-toplevel
    grey = image.shape[-1] == 1
    picture = Image.fromarray(image[..., 0] if grey else image)
    image = np.asarray(picture.resize((size, size), Image.BICUBIC))
    image = image[..., None] if grey else image
  return image


def _with_channels(images, channels):
  """uint8 images with `channels` (1: luminance, 3: grey repeated; 0: kept)."""
  have = images.shape[-1]
  if channels in (0, have):
    return images
  if channels == 1 and have == 3:
    grey = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114],
                                                np.float32)
    return np.round(grey).astype(np.uint8)[..., None]
  if channels == 3 and have == 1:
    return np.repeat(images, 3, axis=-1)
  raise DataError(f"data.channels={channels} cannot be made from images "
                  f"with {have} channels; use 0, 1 or 3.")


def class_table(labels, num_classes):
  """((K, max count) int32 rows of each class's examples, padded with its
  first; (K,) int32 counts), for drawing examples of a given class on
  device. Every class has examples: the loaders refuse a split without."""
  labels = np.asarray(labels)
  counts = np.bincount(labels, minlength=num_classes)[:num_classes]
  order = np.argsort(labels, kind="stable")
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  table = np.stack([
      order[starts[c] + np.minimum(np.arange(counts.max()), counts[c] - 1)]
      for c in range(num_classes)]).astype(np.int32)
  return table, counts.astype(np.int32)


def place_classification(train_set, test_set, mesh, train_labels=None,
                         test_labels=None, abstract=False):
  """(training images, labels) split over the mesh's data axis (uint8,
  int32) and (test images in [-1, 1], labels) replicated, on device; the
  labels default to the sets' own. `abstract`: the same as
  ShapeDtypeStructs, for sets of `classification_shapes`."""
  train_labels = train_set.labels if train_labels is None else train_labels
  test_labels = test_set.labels if test_labels is None else test_labels
  n, shape = train_set.num_rows, train_set.images.shape[1:]
  replicated = parallel.replicated(mesh)
  if abstract:
    n_test = test_set.num_rows
    return (parallel.abstract_rows(n, shape, jnp.uint8, mesh),
            parallel.abstract_rows(n, (), jnp.int32, mesh),
            jax.ShapeDtypeStruct((n_test, *shape), jnp.float32,
                                 sharding=replicated),
            jax.ShapeDtypeStruct((n_test,), jnp.int32, sharding=replicated))
  rows = (slice(None) if train_set.total else
          slice(*parallel.process_rows(n, mesh)))
  return (parallel.global_rows(train_set.images[rows], n, mesh),
          parallel.global_rows(train_labels[rows], n, mesh),
          jax.jit(to_unit_range)(jax.device_put(test_set.images, replicated)),
          jax.device_put(test_labels, replicated))


def place_class_table(labels, num_rows, num_classes, mesh, abstract=False):
  """`class_table` of the split `labels` (their first `num_rows`),
  replicated on device. Every process indexes the whole training split
  (its rows are on other hosts' devices, but its labels are N int32s:
  gathered, a collective). `abstract`: its shapes, for balanced classes."""
  replicated = parallel.replicated(mesh)
  if abstract:
    per_class = -(-num_rows // num_classes)
    return (jax.ShapeDtypeStruct((num_classes, per_class), jnp.int32,
                                 sharding=replicated),
            jax.ShapeDtypeStruct((num_classes,), jnp.int32,
                                 sharding=replicated))
  table, counts = class_table(parallel.to_host(labels)[:num_rows],
                              num_classes)
  return jax.device_put(table, replicated), jax.device_put(counts, replicated)


def to_unit_range(images_uint8):
  """Maps uint8 pixels to float32 in [-1, 1] (x / 127.5 - 1): 0 → -1, 255 → 1.

  Meant for the device, inside jitted steps, so batches travel as uint8.
  """
  return jnp.asarray(images_uint8).astype(jnp.float32) / 127.5 - 1.0


def augment_params(key, batch, pad=4):
  """The random draws of `augment_pad_crop_flip` for a batch of `batch`.

  Returns:
    (dy, dx, flip): (batch,) int32 crop offsets in [0, 2·pad] into the padded
    image, and (batch,) bool, True where the crop is mirrored left-right.
  """
  ky, kx, kf = jax.random.split(key, 3)
  dy = jax.random.randint(ky, (batch,), 0, 2 * pad + 1)
  dx = jax.random.randint(kx, (batch,), 0, 2 * pad + 1)
  flip = jax.random.bernoulli(kf, 0.5, (batch,))
  return dy, dx, flip


def pad_crop_flip(images, dy, dx, flip, pad=4, fill=-1.0):
  """Pads (B, H, W, C) `images` by `pad` with `fill`, crops H×W at per-image
  offsets (dy, dx) and mirrors left-right where `flip`; one gather, no loop."""
  _, h, w, _ = images.shape
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)),
                   constant_values=jnp.asarray(fill, images.dtype))

  def crop(image, y, x):
    return jax.lax.dynamic_slice(image, (y, x, 0), (h, w, image.shape[-1]))

  crops = jax.vmap(crop)(padded, dy, dx)
  return jnp.where(flip[:, None, None, None], crops[:, :, ::-1], crops)


def augment_pad_crop_flip(key, images, pad=4, fill=-1.0):
  """The standard CIFAR augmentation, drawn independently per image.

  Each image is padded by `pad` pixels, cropped back to H×W at a uniformly
  random offset and mirrored left-right with probability 1/2. The padding is
  a constant `fill`, by default -1: black on the [-1, 1] scale of
  `to_unit_range`, i.e. the zero padding of the usual recipe (torchvision's
  `RandomCrop(32, padding=4)` before normalising). Pure JAX and jittable.

  Args:
    key: A PRNG key; the same key gives the same augmentation.
    images: (B, H, W, C) float images, e.g. from `to_unit_range`.
    pad: Padding on every side; crops move by up to ±pad pixels.
    fill: The padding value (in the images' own scale).

  Returns:
    The augmented images, same shape and dtype as `images`.
  """
  dy, dx, flip = augment_params(key, images.shape[0], pad)
  return pad_crop_flip(images, dy, dx, flip, pad, fill)


# Shapes without the data (introjax.aot) -------------------------------------

# Stored image shape and examples per split of the TFDS datasets the
# configs name (the TFDS catalog's numbers): what a run would hold, for
# compiling on a machine where the dataset is not prepared. A prepared
# dataset's own metadata wins.
TFDS_SHAPES = {
    "mnist": ((28, 28, 1), {"train": 60000, "test": 10000}),
    "fashion_mnist": ((28, 28, 1), {"train": 60000, "test": 10000}),
    "cifar10": ((32, 32, 3), {"train": 50000, "test": 10000}),
    "cifar100": ((32, 32, 3), {"train": 50000, "test": 10000}),
    "svhn_cropped": ((32, 32, 3), {"train": 73257, "test": 26032,
                                   "extra": 531131}),
    "celeb_a": ((218, 178, 3), {"train": 162770, "validation": 19867,
                                "test": 19962}),
    "lsun/bedroom": ((None, None, 3), {"train": 3033042, "validation": 300}),
}
_CELEB_A_HQ_TRAIN = 30000   # celeb_a_hq/<side>: one split, side×side×3


_SLICE = re.compile(r"^(\w+)\[(-?\d*)(%?):(-?\d*)(%?)\]$")


def split_rows(part, count):
  """(split name, range of its rows) of one TFDS split part: a whole split
  ('train') or a slice of one of `count` examples ('train[:29000]',
  'train[90%:]'), read as Python slices (percentages of `count`)."""
  match = _SLICE.match(part)
  if not match:
    return part, range(count)
  bound = lambda text, percent: (None if text == "" else
                                 int(text) * count // 100 if percent else
                                 int(text))
  return match.group(1), range(count)[slice(
      bound(match.group(2), match.group(3)),
      bound(match.group(4), match.group(5)))]


def split_name(part):
  """The split a part reads: 'train' of 'train[:29000]'."""
  match = _SLICE.match(part)
  return match.group(1) if match else part


def _split_examples(part, splits, name):
  """Examples in one split part against the table `splits` {name: count}."""
  base = split_name(part)
  if base not in splits:
    raise DataError(f"TFDS dataset {name!r} has no split {base!r}; use one of "
                    f"{', '.join(splits)} (or a slice such as {base}[:90%]).")
  return len(split_rows(part, splits[base])[1])


def tfds_split_shape(name, split, data_dir=""):
  """(stored image shape, examples) of the "+"-joined TFDS `split` (whole
  splits or slices, 'train[:29000]'), from the prepared dataset's
  metadata or else TFDS_SHAPES; nothing is decoded."""
  parts = [p.strip() for p in str(split).split("+") if p.strip()]
  try:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    builder = tfds.builder(name, data_dir=data_dir or None)
    if builder.is_prepared():
      shape = tuple(builder.info.features["image"].shape)
      counts = {k: v.num_examples for k, v in builder.info.splits.items()}
      return shape, sum(_split_examples(p, counts, name) for p in parts)
  except DataError:
    raise
  except Exception:  # pylint: disable=broad-except
    pass   # not prepared, or not a TFDS name: the table below decides
  if name.startswith("celeb_a_hq/") and name.split("/")[1].isdigit():
    side = int(name.split("/")[1])
    known = ((side, side, 3), {"train": _CELEB_A_HQ_TRAIN})
  else:
    known = TFDS_SHAPES.get(name)
  if known is None:
    raise DataError(
        f"TFDS dataset {name!r} is not prepared here and its size is not "
        "known to introjax; prepare it (`tfds build "
        f"{name} --file_format=array_record`) or point --config.data.data_dir "
        "at a folder where it is.")
  shape, splits = known
  return shape, sum(_split_examples(p, splits, name) for p in parts)


def _capped(count, limit):
  return min(count, limit) if limit else count


def classification_shapes(data):
  """(train, test) ArrayDatasets that hold no rows, only their count over
  every process (`total`), image shape and classes: what
  `load_classification` would give, without decoding the data."""
  if data.get("source", None) != "tfds":
    train, test = load_classification(data)   # bundled or one file: cheap
    return shapes_only(train), shapes_only(test)
  name, data_dir = data.get("name", ""), data.get("data_dir", "")
  num_classes = int(data.get("num_classes", 10))
  out = []
  for split_key, limit_key in (("train_split", "max_train"),
                               ("test_split", "max_test")):
    default = split_key.split("_")[0]
    shape, count = tfds_split_shape(name, data.get(split_key, default),
                                    data_dir)
    out.append(ArrayDataset(
        images=np.zeros((0, *shape), np.uint8), labels=np.zeros(0, np.int32),
        num_classes=num_classes, name=f"tfds:{name}",
        total=_capped(count, int(data.get(limit_key, 0)))))
  return tuple(out)


def shapes_only(dataset):
  """`dataset` without its rows (its count kept in `total`)."""
  return dataclasses.replace(
      dataset, images=dataset.images[:0], labels=dataset.labels[:0],
      total=dataset.num_rows)


def image_shapes(data):
  """(image shape, name, count) of what `load_images` would give, without
  decoding a TFDS dataset."""
  if data.get("source", "") != "tfds":
    images, name, total = load_images(data)   # bundled or one file: cheap
    return images.shape[1:], name, total
  name = data.get("name", "")
  (h, w, c), count = tfds_split_shape(name, data.get("split", "train"),
                                      data.get("data_dir", ""))
  crop, size = int(data.get("crop", 0)), int(data.get("image_size", 0))
  side = size or crop or (min(h, w) if h and w else 0)
  if not side:
    raise DataError(f"TFDS dataset {name!r} has images of differing sizes; "
                    "set --config.data.image_size.")
  channels = int(data.get("channels", 0)) or c
  return ((side, side, channels), f"tfds:{name}",
          _capped(count, int(data.get("max_images", 0))))
