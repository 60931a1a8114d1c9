"""The Inception-v3 network of FID and the Inception score, in Flax Linen.

This is the network of TensorFlow's original FID code (the 2015-12-05
Inception graph), as pytorch-fid ports it to `pt_inception-2015-12-05-*.pth`.
It is torchvision's Inception-v3 with 1008 output classes, no auxiliary
head, and four patched blocks:

  * FIDInceptionA / C / E_1 (Mixed_5b-d, 6b-e, 7b): the pooling branch's
    3×3 average pool leaves padding out of the mean (count_include_pad=False),
    as TensorFlow's does;
  * FIDInceptionE_2 (Mixed_7c): that branch max-pools instead.

Inputs are NHWC images in [−1, 1] of any size, resized bilinearly (half-pixel
centres, no antialiasing: torch's `F.interpolate(..., align_corners=False)`)
to 299×299 inside the network, as pytorch-fid does. Outputs are the 2048-d
pool3 features (FID) and the 1008 logits of the final layer (Inception score).

No weights are bundled or downloaded. Point `eval.inception_weights` at
pytorch-fid's file, or at an `.npz` converted once from it with

    python -m introjax.eval.inception --convert pt_inception-2015-12-05-6726825d.pth inception.npz

(reading a `.pth` needs PyTorch; the `.npz` needs nothing but NumPy).
"""
import argparse
import functools
import os
import sys
from typing import Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from introjax import paths
from introjax.errors import ConfigError, ImageError, UserError

WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/"
               "fid_weights/pt_inception-2015-12-05-6726825d.pth")
INPUT_SIZE = 299
FEATURES = 2048
CLASSES = 1008
# The tag our .npz carries, so a random .npz is refused by name.
NPZ_FORMAT = "introjax-fid-inception-v3/1"
_FORMAT_KEY = "__format__"
# The smallest input the network's strided layers can reduce to 1×1.
MIN_RESIZE = 75


# Network -------------------------------------------------------------------


class FrozenBatchNorm(nn.Module):
  """Inference-time BatchNorm (eps 0.001, torchvision's): the running
  statistics are plain parameters, so the whole network is one pytree."""
  eps: float = 1e-3

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (c,))
    bias = self.param("bias", nn.initializers.zeros, (c,))
    mean = self.param("mean", nn.initializers.zeros, (c,))
    var = self.param("var", nn.initializers.ones, (c,))
    return (x - mean) * (scale * jax.lax.rsqrt(var + self.eps)) + bias


class BasicConv(nn.Module):
  """torchvision's BasicConv2d: conv without bias, BatchNorm, ReLU."""
  features: int
  kernel: Tuple[int, int] = (1, 1)
  stride: int = 1
  padding: Tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x):
    (ph, pw) = self.padding
    x = nn.Conv(self.features, self.kernel, strides=self.stride,
                padding=((ph, ph), (pw, pw)), use_bias=False,
                name="conv")(x)
    return nn.relu(FrozenBatchNorm(name="bn")(x))


def _avg_pool_same(x):
  # TensorFlow's 3×3 'SAME' average pool: padding left out of the mean.
  return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)),
                     count_include_pad=False)


def _max_pool(x, stride, pad=0):
  return nn.max_pool(x, (3, 3), (stride, stride), ((pad, pad), (pad, pad)))


class FIDInceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv(64, name="branch1x1")(x)
    b5 = BasicConv(48, name="branch5x5_1")(x)
    b5 = BasicConv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
    b3 = BasicConv(64, name="branch3x3dbl_1")(x)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
    bp = BasicConv(self.pool_features, name="branch_pool")(_avg_pool_same(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """Mixed_6a: the grid reduction 35 → 17 (torchvision's, unpatched)."""

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(384, (3, 3), stride=2, name="branch3x3")(x)
    bd = BasicConv(64, name="branch3x3dbl_1")(x)
    bd = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = BasicConv(96, (3, 3), stride=2, name="branch3x3dbl_3")(bd)
    return jnp.concatenate([b3, bd, _max_pool(x, 2)], axis=-1)


class FIDInceptionC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1),
                                                         padding=(3, 0))
    b1 = BasicConv(192, name="branch1x1")(x)
    b7 = BasicConv(c7, name="branch7x7_1")(x)
    b7 = BasicConv(c7, **row, name="branch7x7_2")(b7)
    b7 = BasicConv(192, **col, name="branch7x7_3")(b7)
    bd = BasicConv(c7, name="branch7x7dbl_1")(x)
    bd = BasicConv(c7, **col, name="branch7x7dbl_2")(bd)
    bd = BasicConv(c7, **row, name="branch7x7dbl_3")(bd)
    bd = BasicConv(c7, **col, name="branch7x7dbl_4")(bd)
    bd = BasicConv(192, **row, name="branch7x7dbl_5")(bd)
    bp = BasicConv(192, name="branch_pool")(_avg_pool_same(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """Mixed_7a: the grid reduction 17 → 8 (torchvision's, unpatched)."""

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(192, name="branch3x3_1")(x)
    b3 = BasicConv(320, (3, 3), stride=2, name="branch3x3_2")(b3)
    b7 = BasicConv(192, name="branch7x7x3_1")(x)
    b7 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = BasicConv(192, (3, 3), stride=2, name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, _max_pool(x, 2)], axis=-1)


class FIDInceptionE(nn.Module):
  """Mixed_7b (pool="avg": FIDInceptionE_1) and Mixed_7c (pool="max":
  FIDInceptionE_2, the original graph's max pool in the pooling branch)."""
  pool: str

  @nn.compact
  def __call__(self, x):
    row, col = dict(kernel=(1, 3), padding=(0, 1)), dict(kernel=(3, 1),
                                                         padding=(1, 0))
    b1 = BasicConv(320, name="branch1x1")(x)
    b3 = BasicConv(384, name="branch3x3_1")(x)
    b3 = jnp.concatenate([BasicConv(384, **row, name="branch3x3_2a")(b3),
                          BasicConv(384, **col, name="branch3x3_2b")(b3)], -1)
    bd = BasicConv(448, name="branch3x3dbl_1")(x)
    bd = BasicConv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate([BasicConv(384, **row, name="branch3x3dbl_3a")(bd),
                          BasicConv(384, **col, name="branch3x3dbl_3b")(bd)],
                         -1)
    pooled = _max_pool(x, 1, pad=1) if self.pool == "max" else _avg_pool_same(x)
    bp = BasicConv(192, name="branch_pool")(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


def resize_bilinear(images, size):
  """torch's `F.interpolate(mode='bilinear', align_corners=False)` on NHWC:
  half-pixel centres, edge pixels repeated, no antialiasing when shrinking."""
  n, _, _, c = images.shape
  return jax.image.resize(images, (n, size, size, c), "bilinear",
                          antialias=False)


class FIDInceptionV3(nn.Module):
  """pool3 features (N, 2048) and logits (N, 1008) of NHWC RGB images in
  [−1, 1]. `resize_to` is 299 for real use; tests may shrink it (≥ 75)."""
  resize_to: int = INPUT_SIZE

  @nn.compact
  def __call__(self, images):
    x = resize_bilinear(images.astype(jnp.float32), self.resize_to)
    x = BasicConv(32, (3, 3), stride=2, name="Conv2d_1a_3x3")(x)
    x = BasicConv(32, (3, 3), name="Conv2d_2a_3x3")(x)
    x = BasicConv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
    x = _max_pool(x, 2)
    x = BasicConv(80, name="Conv2d_3b_1x1")(x)
    x = BasicConv(192, (3, 3), name="Conv2d_4a_3x3")(x)
    x = _max_pool(x, 2)
    x = FIDInceptionA(32, name="Mixed_5b")(x)
    x = FIDInceptionA(64, name="Mixed_5c")(x)
    x = FIDInceptionA(64, name="Mixed_5d")(x)
    x = InceptionB(name="Mixed_6a")(x)
    x = FIDInceptionC(128, name="Mixed_6b")(x)
    x = FIDInceptionC(160, name="Mixed_6c")(x)
    x = FIDInceptionC(160, name="Mixed_6d")(x)
    x = FIDInceptionC(192, name="Mixed_6e")(x)
    x = InceptionD(name="Mixed_7a")(x)
    x = FIDInceptionE("avg", name="Mixed_7b")(x)
    x = FIDInceptionE("max", name="Mixed_7c")(x)
    features = jnp.mean(x, axis=(1, 2))         # pool3
    logits = nn.Dense(CLASSES, name="fc")(features)
    return features, logits


def _init_params(key, resize_to=MIN_RESIZE):
  x = jnp.zeros((1, resize_to, resize_to, 3), jnp.float32)
  return FIDInceptionV3(resize_to).init(key, x)["params"]


def random_params(seed=0):
  """Random parameters of the network's tree and shapes, drawn in NumPy
  (Flax's own initialisation of 24M parameters takes a minute on a CPU):
  He-scaled kernels and non-trivial BatchNorm statistics, so activations
  keep their scale through the 94 layers. For tests and benchmarks."""
  rng = np.random.default_rng(seed)
  flat = {}
  for path, shape in param_shapes().items():
    leaf = path.rsplit("/", 1)[1]
    if leaf == "kernel":
      fan_in = int(np.prod(shape[:-1]))
      value = rng.normal(0, np.sqrt(2 / fan_in), shape)
    elif leaf in ("scale", "var"):
      value = rng.uniform(0.5, 1.5, shape)
    else:  # bias, mean
      value = rng.normal(0, 0.1, shape)
    flat[path] = value.astype(np.float32)
  return _unflatten(flat)


# Parameter names -------------------------------------------------------------

# Our leaf name → pytorch-fid's, per module kind. Every tensor of the .pth is
# one of these; `running_*` are BatchNorm's statistics.
_TORCH_LEAF = {
    ("conv", "kernel"): "weight",
    ("bn", "scale"): "weight",
    ("bn", "bias"): "bias",
    ("bn", "mean"): "running_mean",
    ("bn", "var"): "running_var",
    ("fc", "kernel"): "weight",
    ("fc", "bias"): "bias",
}
# pytorch-fid's BatchNorm also stores a step counter that inference ignores.
_IGNORED_TORCH_SUFFIX = ".num_batches_tracked"


@functools.lru_cache(maxsize=None)
def param_shapes():
  """{"Mixed_5b/branch1x1/conv/kernel": (1, 1, 192, 64), …}: every
  parameter of the network with its (Flax-layout) shape."""
  tree = jax.eval_shape(_init_params, jax.random.PRNGKey(0))
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {"/".join(k.key for k in path): tuple(leaf.shape)
          for path, leaf in flat}


def torch_name(path):
  """pytorch-fid's state-dict key of our parameter `path`."""
  parts = path.split("/")
  leaf = _TORCH_LEAF[(parts[-2], parts[-1])]
  return ".".join(parts[:-1] + [leaf])


def to_torch_layout(path, array):
  """Our array at `path` in pytorch-fid's layout: conv kernels HWIO → OIHW,
  the final layer (in, out) → (out, in)."""
  if path.endswith("conv/kernel"):
    return np.transpose(array, (3, 2, 0, 1))
  if path == "fc/kernel":
    return np.transpose(array)
  return array


def torch_shape(path, shape):
  """The shape of our parameter `path` in pytorch-fid's layout."""
  return to_torch_layout(path, np.broadcast_to(np.float32(0), shape)).shape


def from_torch_layout(path, array):
  if path.endswith("conv/kernel"):
    return np.transpose(array, (2, 3, 1, 0))
  if path == "fc/kernel":
    return np.transpose(array)
  return array


def _unflatten(flat):
  tree = {}
  for path, value in flat.items():
    node = tree
    *parents, leaf = path.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


def flatten_params(params):
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return {"/".join(k.key for k in path): np.asarray(leaf)
          for path, leaf in flat}


# Loading ---------------------------------------------------------------------


def _check_names(source, given, expected, fix):
  """Refuses `given` names/shapes that are not exactly `expected`, naming
  the first difference."""
  missing = [k for k in expected if k not in given]
  if missing:
    raise ConfigError(
        f"{source} lacks the Inception weight {missing[0]!r} "
        f"({len(missing)} missing in all); {fix}")
  unexpected = [k for k in given if k not in expected]
  if unexpected:
    raise ConfigError(
        f"{source} has a tensor {unexpected[0]!r} that the FID Inception "
        f"network does not ({len(unexpected)} unexpected in all); {fix}")
  for k, shape in expected.items():
    if tuple(given[k]) != tuple(shape):
      raise ConfigError(
          f"{source} gives {k!r} the shape {tuple(given[k])}, but the FID "
          f"Inception network needs {tuple(shape)}; {fix}")


_PTH_FIX = (f"use pytorch-fid's pt_inception-2015-12-05-6726825d.pth from "
            f"{WEIGHTS_URL}.")


def params_from_state_dict(state_dict, source="The state dict"):
  """Our parameter tree from pytorch-fid's state dict (name → array-like),
  after checking every name and shape."""
  arrays = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach")
                          else v)
            for k, v in state_dict.items()
            if not k.endswith(_IGNORED_TORCH_SUFFIX)}
  shapes = param_shapes()
  expected = {torch_name(p): torch_shape(p, s)
              for p, s in shapes.items()}
  _check_names(source, {k: a.shape for k, a in arrays.items()}, expected,
               _PTH_FIX)
  return _unflatten({p: from_torch_layout(p, arrays[torch_name(p)])
                     .astype(np.float32) for p in shapes})


def _read_pth(path):
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError(
        f"Reading {path} needs PyTorch, which is not installed; install it "
        "(pip install 'introjax[bench]'), or convert the file once where "
        "PyTorch is installed with `python -m introjax.eval.inception "
        "--convert in.pth out.npz` and point eval.inception_weights at the "
        ".npz.") from None
  try:
    state = torch.load(paths.readable(path), map_location="cpu", weights_only=True)
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f"The Inception weights file {path!r} is not a readable "
                      f"PyTorch file ({type(e).__name__}: {e}); "
                      f"{_PTH_FIX}") from None
  if not isinstance(state, dict):
    raise ConfigError(f"The Inception weights file {path!r} holds a "
                      f"{type(state).__name__}, not a state dict; "
                      f"{_PTH_FIX}")
  return params_from_state_dict(state, f"The Inception weights file {path!r}")


def _read_npz(path):
  try:
    with np.load(paths.readable(path), allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f"The Inception weights file {path!r} is not a readable "
                      f".npz file ({type(e).__name__}: {e}); convert "
                      "pytorch-fid's weights with `python -m "
                      "introjax.eval.inception --convert in.pth out.npz`.")
  fix = ("convert pytorch-fid's weights with `python -m "
         "introjax.eval.inception --convert in.pth out.npz`.")
  tag = arrays.pop(_FORMAT_KEY, None)
  if tag is None or str(tag) != NPZ_FORMAT:
    raise ConfigError(f"The Inception weights file {path!r} is not one "
                      f"written by this library (format tag "
                      f"{None if tag is None else str(tag)!r}, expected "
                      f"{NPZ_FORMAT!r}); {fix}")
  _check_names(f"The Inception weights file {path!r}",
               {k: a.shape for k, a in arrays.items()}, param_shapes(), fix)
  return _unflatten({k: a.astype(np.float32) for k, a in arrays.items()})


def _check_file(path):
  if not path or not paths.is_file(path):
    raise ConfigError(f"The Inception weights file {path!r} does not exist; "
                      f"download {WEIGHTS_URL} and give its path.")


def load_params(path):
  """The network's parameters from pytorch-fid's `.pth` or our `.npz`."""
  _check_file(path)
  if path.endswith(".npz"):
    return _read_npz(path)
  return _read_pth(path)


def save_npz(params, path):
  """Writes `params` in our .npz format (Flax layout, names as paths)."""
  np.savez(path, **{_FORMAT_KEY: np.array(NPZ_FORMAT)},
           **flatten_params(params))


def convert(pth_path, npz_path):
  """pytorch-fid's .pth → our .npz, so later runs need no PyTorch."""
  _check_file(pth_path)
  save_npz(_read_pth(pth_path), npz_path)


# Features --------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("resize_to",))
def _forward(params, images, resize_to):
  return FIDInceptionV3(resize_to).apply({"params": params}, images)


def quantize_uint8(images):
  """[−1, 1] images as pytorch-fid sees them: saved as 8-bit PNGs
  (torchvision's save_image: ×255, +0.5, clamp, truncate) and read back,
  on [−1, 1] again."""
  levels = np.clip(np.floor((np.asarray(images, np.float32) + 1.0) * 127.5
                            + 0.5), 0, 255)
  return (levels / 127.5 - 1.0).astype(np.float32)


def inception_features(model_params, images, batch=50,
                       resize_to=INPUT_SIZE, quantize=True):
  """pool3 features (N, 2048) and logits (N, 1008), float64 NumPy, of NHWC
  images in [−1, 1] (1 or 3 channels; grey is repeated to RGB), `batch`
  images per jitted call (the last one padded, so one compilation).

  As pytorch-fid: the network is in inference mode (its BatchNorm uses the
  stored statistics: `FrozenBatchNorm`), the images are first quantised to
  uint8 (`quantize_uint8`; `quantize=False` feeds them as they are) and
  resized bilinearly to 299×299 inside the network."""
  images = np.asarray(images, np.float32)
  if images.ndim != 4 or images.shape[-1] not in (1, 3) or not len(images):
    raise ImageError(f"Inception features need (N, H, W, 1 or 3) images, "
                     f"N ≥ 1, but got shape {images.shape}; pass grey or "
                     "RGB images in [-1, 1].")
  if quantize:
    images = quantize_uint8(images)
  if images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  if not MIN_RESIZE <= resize_to:
    raise ConfigError(f"The FID Inception network needs inputs of at least "
                      f"{MIN_RESIZE}×{MIN_RESIZE}, but resize_to={resize_to};"
                      " use 299.")
  # Once per call, not per batch: 24M parameters (95 MB) to the device.
  model_params = jax.device_put(model_params)
  n = len(images)
  batch = max(1, min(int(batch), n))
  features, logits = [], []
  for start in range(0, n, batch):
    chunk = images[start:start + batch]
    size = len(chunk)
    if size < batch:
      chunk = np.concatenate(
          [chunk, np.zeros((batch - size,) + chunk.shape[1:], np.float32)])
    f, l = _forward(model_params, jnp.asarray(chunk), resize_to)
    features.append(np.asarray(f, np.float64)[:size])
    logits.append(np.asarray(l, np.float64)[:size])
  return np.concatenate(features), np.concatenate(logits)


# Command line ----------------------------------------------------------------


def main(argv: Sequence[str] = None):
  parser = argparse.ArgumentParser(
      prog="python -m introjax.eval.inception",
      description="Convert pytorch-fid's Inception weights to an .npz that "
      "loads without PyTorch.")
  parser.add_argument("--convert", nargs=2, metavar=("IN_PTH", "OUT_NPZ"),
                      required=True)
  args = parser.parse_args(argv)
  pth, npz = args.convert
  try:
    convert(pth, npz)
  except UserError as e:
    print(f"Error: {e}", file=sys.stderr)
    return 1
  print(f"Wrote {npz} ({len(param_shapes())} tensors); set "
        f"--config.eval.inception_weights={npz}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
