import pathlib
import socket

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from introjax.data import datasets
from introjax.errors import DataError


def data_config(**overrides):
  data = ml_collections.ConfigDict(dict(
      source="digits", npz_path="", name="", data_dir="", train_split="train",
      test_split="test", num_classes=10, max_train=0, max_test=0, seed=0))
  data.update(overrides)
  return data


def test_digits_shapes_range_and_classes():
  train, test = datasets.load_classification(data_config())
  for ds in (train, test):
    assert ds.images.dtype == np.uint8 and ds.labels.dtype == np.int32
    assert ds.images.shape[1:] == (8, 8, 1)
    assert ds.images.shape[0] == ds.labels.shape[0]
    # 0..16 stretched to the full 8-bit range.
    assert ds.images.min() == 0 and ds.images.max() == 255
    np.testing.assert_array_equal(np.unique(ds.labels), np.arange(10))
    assert ds.num_classes == 10 and ds.name == "digits"
  assert len(train) + len(test) == 1797
  assert abs(len(test) - 1797 / 3) < 10  # a third of each class
  # Stratified: each class's share of the test split is a third, ±1 example.
  counts = np.bincount(train.labels) + np.bincount(test.labels)
  assert np.all(np.abs(np.bincount(test.labels) - counts / 3) <= 1)


def test_digits_split_disjoint_and_deterministic_per_seed():
  import sklearn.datasets
  raw = sklearn.datasets.load_digits()
  full = np.round(raw.images * (255 / 16)).astype(np.uint8)[..., None]
  mask = datasets.digits_test_mask(raw.target, 3)
  train, test = datasets.load_classification(data_config(seed=3))
  # The splits are the complementary rows of the bundled set, in its order:
  # disjoint by position and together all 1797 examples.
  np.testing.assert_array_equal(train.images, full[~mask])
  np.testing.assert_array_equal(test.images, full[mask])
  np.testing.assert_array_equal(test.labels, raw.target[mask])
  again, _ = datasets.load_classification(data_config(seed=3))
  np.testing.assert_array_equal(again.images, train.images)
  np.testing.assert_array_equal(datasets.digits_test_mask(raw.target, 3), mask)
  other = datasets.digits_test_mask(raw.target, 4)
  assert other.sum() == mask.sum() and not np.array_equal(other, mask)


def test_max_train_keeps_a_prefix():
  full, _ = datasets.load_classification(data_config())
  cut, test = datasets.load_classification(data_config(max_train=200,
                                                       max_test=30))
  assert len(cut) == 200 and len(test) == 30
  np.testing.assert_array_equal(cut.images, full.images[:200])


def test_real_mnist_npz_if_present():
  path = pathlib.Path(__file__).resolve().parents[2] / "shared/data/mnist.npz"
  if not path.exists():
    pytest.skip(f"{path} is absent")
  train, test = datasets.load_classification(
      data_config(source="npz", npz_path=str(path)))
  assert train.images.shape == (60000, 28, 28, 1)
  assert test.images.shape == (10000, 28, 28, 1)
  # The official per-class counts and mean pixel values.
  assert np.bincount(train.labels)[[0, 9]].tolist() == [5923, 5949]
  assert np.bincount(test.labels)[[0, 9]].tolist() == [980, 1009]
  assert abs(train.images.mean() - 33.318) < 1e-3
  assert abs(test.images.mean() - 33.791) < 1e-3


def _write_npz(path, n_train=40, n_test=20, classes=10, **replace):
  rng = np.random.default_rng(0)
  arrays = dict(
      x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
      y_train=np.arange(n_train, dtype=np.uint8) % classes,
      x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
      y_test=np.arange(n_test, dtype=np.uint8) % classes)
  arrays.update(replace)
  arrays = {k: v for k, v in arrays.items() if v is not None}
  np.savez(path, **arrays)
  return arrays


def test_npz_keras_layout(tmp_path):
  path = tmp_path / "mnist.npz"
  arrays = _write_npz(path)
  train, test = datasets.load_classification(
      data_config(source="npz", npz_path=str(path)))
  assert train.images.shape == (40, 28, 28, 1) and test.images.shape == (20, 28, 28, 1)
  assert train.images.dtype == np.uint8 and train.labels.dtype == np.int32
  np.testing.assert_array_equal(train.images[..., 0], arrays["x_train"])
  np.testing.assert_array_equal(test.labels, arrays["y_test"])
  assert train.name == "mnist.npz"


def test_npz_missing_file_and_keys(tmp_path):
  with pytest.raises(DataError, match="npz_path"):
    datasets.load_classification(
        data_config(source="npz", npz_path=str(tmp_path / "absent.npz")))
  bad = tmp_path / "bad.npz"
  _write_npz(bad, y_test=None)
  with pytest.raises(DataError, match="y_test.*npz_path"):
    datasets.load_classification(data_config(source="npz", npz_path=str(bad)))
  junk = tmp_path / "junk.npz"
  junk.write_bytes(b"not a zip file")
  with pytest.raises(DataError, match="npz_path"):
    datasets.load_classification(data_config(source="npz", npz_path=str(junk)))


def test_labels_classes_mismatch(tmp_path):
  path = tmp_path / "mnist.npz"
  _write_npz(path)
  # Labels 0..9 with only 5 classes configured.
  with pytest.raises(DataError, match="(?i)mismatch.*up to 9.*num_classes to at least 10"):
    datasets.load_classification(
        data_config(source="npz", npz_path=str(path), num_classes=5))
  negative = tmp_path / "negative.npz"
  _write_npz(negative, y_train=np.arange(40, dtype=np.int8) % 10 - 1)
  with pytest.raises(DataError, match="(?i)mismatch.*negative.*0-based"):
    datasets.load_classification(
        data_config(source="npz", npz_path=str(negative)))
  # 12 classes configured but only 10 present.
  with pytest.raises(DataError, match="(?i)mismatch.*10 distinct"):
    datasets.load_classification(data_config(num_classes=12))
  with pytest.raises(DataError, match="(?i)mismatch"):
    datasets.load_classification(data_config(max_train=3))


def test_wrong_rank_empty_and_unknown_source(tmp_path):
  path = tmp_path / "flat.npz"
  _write_npz(path, x_train=np.zeros((40, 784), np.uint8))
  with pytest.raises(DataError, match="shape"):
    datasets.load_classification(data_config(source="npz", npz_path=str(path)))
  path = tmp_path / "empty.npz"
  _write_npz(path, n_train=0)
  with pytest.raises(DataError, match="empty"):
    datasets.load_classification(data_config(source="npz", npz_path=str(path)))
  with pytest.raises(DataError, match="digits, npz, tfds"):
    datasets.load_classification(data_config(source="imagenet"))


@pytest.mark.parametrize("name,train_split,shape", [
    ("mnist", "train", (28, 28, 1)),
    ("cifar10", "train", (32, 32, 3)),
    ("svhn_cropped", "train+extra", (32, 32, 3)),
])
def test_tfds_mock(name, train_split, shape):
  import tensorflow_datasets as tfds
  n = 120  # enough that the mock's random labels cover all 10 classes
  with tfds.testing.mock_data(num_examples=n):
    train, test = datasets.load_classification(data_config(
        source="tfds", name=name, train_split=train_split, max_test=50))
  parts = len(train_split.split("+"))
  assert train.images.shape == (n * parts, *shape)
  assert test.images.shape == (50, *shape)
  for ds in (train, test):
    assert ds.images.dtype == np.uint8 and ds.labels.dtype == np.int32
    assert ds.labels.min() >= 0 and ds.labels.max() < 10
    assert ds.name == f"tfds:{name}"
  if parts == 2:  # "+" concatenates the splits in order
    np.testing.assert_array_equal(train.labels[:n], train.labels[n:])
  # Same examples as reading the data source directly.
  with tfds.testing.mock_data(num_examples=n):
    src = tfds.data_source(name, split="test", download=False)
    np.testing.assert_array_equal(test.images[7], src[7]["image"])
    assert test.labels[7] == src[7]["label"]
  x = datasets.to_unit_range(jnp.asarray(train.images))
  assert x.dtype == jnp.float32
  assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0


def _count_decodes(monkeypatch):
  """Records (split, index) of every example a TFDS data source decodes."""
  from tensorflow_datasets.core.data_sources import base
  decoded = []
  read_one, read_many = (base.BaseDataSource.__getitem__,
                         base.BaseDataSource.__getitems__)

  def getitem(self, key):
    decoded.append((str(self.split), int(key)))
    return read_one(self, key)

  def getitems(self, keys):
    decoded.extend((str(self.split), int(k)) for k in keys)
    return read_many(self, keys)

  monkeypatch.setattr(base.BaseDataSource, "__getitem__", getitem)
  monkeypatch.setattr(base.BaseDataSource, "__getitems__", getitems)
  return decoded


def test_tfds_max_train_and_process_rows_cut_before_decoding(monkeypatch):
  import tensorflow_datasets as tfds
  decoded = _count_decodes(monkeypatch)
  config = data_config(source="tfds", name="svhn_cropped",
                       train_split="train+extra", max_train=150, max_test=10)
  with tfds.testing.mock_data(num_examples=100):
    train, _ = datasets.load_classification(config)
    whole = [d for d in decoded if d[0] != "test"]
    del decoded[:]
    # This process holds rows [60, 120) of the 150: train 60..99, extra 0..19.
    part, _ = datasets.load_classification(config,
                                           train_rows=lambda n: (60, 120))
    mine = [d for d in decoded if d[0] != "test"]
  assert train.images.shape == (150, 32, 32, 3)
  # All of train, the first 50 of extra, each once; plus example 0 read
  # again for the image shape.
  expected = ([("train", i) for i in range(100)] +
              [("extra", i) for i in range(50)])
  assert sorted(whole) == sorted(expected + [("train", 0)])
  assert len(part) == 60 and part.total == 150
  np.testing.assert_array_equal(part.images, train.images[60:120])
  np.testing.assert_array_equal(part.labels, train.labels[60:120])
  assert sorted(mine) == sorted([("train", 0)] +
                                [("train", i) for i in range(60, 100)] +
                                [("extra", i) for i in range(20)])


def test_tfds_unprepared_names_dataset_and_dir(tmp_path, monkeypatch):
  connects = []

  def no_network(self, *args, **kwargs):
    connects.append(args)
    raise OSError("network blocked in tests")

  monkeypatch.setattr(socket.socket, "connect", no_network)
  with pytest.raises(DataError) as info:
    datasets.load_classification(data_config(
        source="tfds", name="cifar10", data_dir=str(tmp_path)))
  message = str(info.value)
  assert "'cifar10'" in message and str(tmp_path) in message
  assert "tfds build cifar10" in message and "array_record" in message
  assert connects == []
  assert list(tmp_path.iterdir()) == []  # nothing was written or downloaded
  with pytest.raises(DataError, match="no dataset named"):
    datasets.load_classification(data_config(
        source="tfds", name="no_such_dataset", data_dir=str(tmp_path)))


def _prepare_mnist(data_dir, file_format="array_record", sizes=(30, 10)):
  """A real prepared TFDS 'mnist' (PNG-encoded tf.Examples in ArrayRecord
  files) written without TensorFlow; returns {split: (images, labels)}."""
  import io

  import PIL.Image
  import tensorflow_datasets as tfds
  from array_record.python import array_record_module
  from tensorflow_datasets.core import splits as splits_lib
  from tensorflow_datasets.proto import tf_example_pb2
  builder = tfds.builder("mnist", data_dir=str(data_dir),
                         file_format=file_format)
  path = builder.data_path
  path.mkdir(parents=True)
  rng = np.random.default_rng(0)
  written, infos = {}, []
  for split, n in zip(("train", "test"), sizes):
    images = rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)
    labels = np.arange(n) % 10
    written[split] = images, labels
    infos.append(splits_lib.SplitInfo(name=split, shard_lengths=[n],
                                      num_bytes=0, filename_template=None))
    if file_format != "array_record":
      continue  # only the metadata: enough for the loader to refuse it
    writer = array_record_module.ArrayRecordWriter(
        str(path / f"mnist-{split}.array_record-00000-of-00001"),
        "group_size:1")
    for image, label in zip(images, labels):
      png = io.BytesIO()
      PIL.Image.fromarray(image[..., 0]).save(png, format="PNG")
      example = tf_example_pb2.Example()
      example.features.feature["image"].bytes_list.value.append(png.getvalue())
      example.features.feature["label"].int64_list.value.append(int(label))
      writer.write(example.SerializeToString())
    writer.close()
  builder.info.set_splits(splits_lib.SplitDict(infos))
  builder.info.write_to_directory(path)
  return written


def test_tfds_reads_prepared_array_record(tmp_path):
  written = _prepare_mnist(tmp_path)
  train, test = datasets.load_classification(data_config(
      source="tfds", name="mnist", data_dir=str(tmp_path)))
  for ds, split in ((train, "train"), (test, "test")):
    images, labels = written[split]
    np.testing.assert_array_equal(ds.images, images)  # real PNG decoding
    np.testing.assert_array_equal(ds.labels, labels)
  with pytest.raises(DataError, match="'validation'.*test_split.*test, train"):
    datasets.load_classification(data_config(
        source="tfds", name="mnist", data_dir=str(tmp_path),
        test_split="validation"))


def test_tfds_refuses_tfrecord_preparation(tmp_path):
  _prepare_mnist(tmp_path, file_format="tfrecord")
  with pytest.raises(DataError, match="tfrecord.*--file_format=array_record"):
    datasets.load_classification(data_config(
        source="tfds", name="mnist", data_dir=str(tmp_path)))


def test_to_unit_range_endpoints():
  x = datasets.to_unit_range(jnp.array([0, 1, 127, 128, 255], jnp.uint8))
  assert x.dtype == jnp.float32
  np.testing.assert_allclose(x, np.array([0, 1, 127, 128, 255]) / 127.5 - 1,
                             atol=1e-6)
  assert float(x[0]) == -1.0 and float(x[-1]) == 1.0


def _numpy_pad_crop_flip(images, dy, dx, flip, pad, fill):
  out = np.empty_like(images)
  for i, image in enumerate(images):
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)),
                    constant_values=fill)
    h, w = image.shape[:2]
    crop = padded[dy[i]:dy[i] + h, dx[i]:dx[i] + w]
    out[i] = crop[:, ::-1] if flip[i] else crop
  return out


def test_augment_matches_numpy_crop_and_flip():
  key = jax.random.PRNGKey(0)
  images = jax.random.uniform(jax.random.PRNGKey(1), (64, 10, 12, 3),
                              minval=-1.0, maxval=1.0)
  out = jax.jit(datasets.augment_pad_crop_flip)(key, images)
  assert out.shape == images.shape and out.dtype == images.dtype
  dy, dx, flip = map(np.asarray, datasets.augment_params(key, 64, 4))
  # The draws cover the whole range and both flip states.
  assert set(dy) == set(range(9)) and set(dx) == set(range(9))
  assert 0 < flip.sum() < 64
  expected = _numpy_pad_crop_flip(np.asarray(images), dy, dx, flip, 4, -1.0)
  np.testing.assert_array_equal(np.asarray(out), expected)
  # An offset of (4, 4) without a flip is the identity.
  same = np.asarray(datasets.pad_crop_flip(
      images[:1], jnp.array([4]), jnp.array([4]), jnp.array([False])))
  np.testing.assert_array_equal(same, np.asarray(images[:1]))
  # Corner crops bring in the -1 padding.
  corner = np.asarray(datasets.pad_crop_flip(
      images[:1], jnp.array([0]), jnp.array([0]), jnp.array([True])))
  assert np.all(corner[0, :4] == -1.0) and np.all(corner[0, :, -4:] == -1.0)


def test_augment_deterministic_per_key():
  images = jax.random.normal(jax.random.PRNGKey(2), (16, 8, 8, 1))
  a = datasets.augment_pad_crop_flip(jax.random.PRNGKey(5), images)
  b = datasets.augment_pad_crop_flip(jax.random.PRNGKey(5), images)
  c = datasets.augment_pad_crop_flip(jax.random.PRNGKey(6), images)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
