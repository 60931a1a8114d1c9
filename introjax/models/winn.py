"""WINN's networks: the App. C critic and the App. D initialiser.

Appendix C / Table 5 (64×64 input), "inspired by" PGGAN's discriminator:

    Conv3-32, Conv3-64, avg pool 2/2        64×64 → 32×32×64
    Conv3-64, Conv3-128, avg pool 2/2       → 16×16×128
    Conv3-128, Conv3-256, avg pool 2/2      → 8×8×256
    Conv3-256, Conv3-512, avg pool 2/2      → 4×4×512
    FC-1

all 3×3 stride 1, Swish after every conv, LayerNorm after every conv but the
first. (Table 5 prints the last conv's output as 8×8×256; the pool after it
gives 4×4×512 and the released code uses 512, so it is 8×8×512.) The released
code orders each layer conv → LayerNorm → Swish (→ pool), initialises
weights with std 0.02, and normalises over (C, H, W) with per-channel scale
and offset; we do the same, so the norm is per sample.

Appendix D, "alternative initialisation": z (4×4×512) ~ U[−1, 1] passed
through Conv5-256, up, Conv5-128, up, Conv5-64, up, Conv5-3, up (→ 64×64×3)
with weights ~ N(0, 0.1²), no nonlinearity, LayerNorm after every conv but
the last. (Table 5 names the last conv Conv5-64 but prints its output as
32×32×3: it maps to the image channels.) See `UpsamplingInitializer` for what the paper leaves open.
"""
import functools
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from introjax.errors import ConfigError
from introjax.models.layers import Conv, compute_dtype, float32_logits


def _layer_norm(dtype, name):
  # Over (H, W, C) of each sample, so one sample's logit and gradient never
  # depend on the rest of the batch; App. C takes LayerNorm from WGAN-GP,
  # whose per-sample gradient penalty is not valid under BatchNorm.
  return nn.LayerNorm(reduction_axes=(-3, -2, -1), dtype=dtype, name=name)


class WINNCritic(nn.Module):
  """WINN App. C critic: (B, H, W, C) -> logits (B,) float32.

  Attributes:
    features: conv widths in order; Table 5: (32, 64, 64, 128, 128, 256,
      256, 512).
    convs_per_stage: convs between average pools (Table 5: 2). A pool
      follows every stage, so the map shrinks by 2^(len(features) /
      convs_per_stage): 64 → 4 in Table 5, 32 → 2 for 32×32 input.
    norm: "layer" (App. C) or "none".
    dtype: computation dtype; the logit is returned in float32.
  """
  features: Sequence[int] = (32, 64, 64, 128, 128, 256, 256, 512)
  convs_per_stage: int = 2
  norm: str = "layer"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    for i, f in enumerate(self.features):
      x = Conv(f, 3, stride=1, dtype=self.dtype, name=f"conv{i}")(x)
      if i > 0 and self.norm == "layer":
        x = _layer_norm(self.dtype, f"norm{i}")(x)
      x = nn.swish(x)
      if (i + 1) % self.convs_per_stage == 0:
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    return float32_logits(x, 1, "logit", nn.initializers.normal(0.02))[:, 0]


_NORMS = ("layer", "none")


def build_winn_critic(model: ml_collections.ConfigDict, dtype="float32"):
  """`WINNCritic` from `config.model` (name "winn"; fields `features`,
  optional `convs_per_stage` (2) and `norm` ("layer"))."""
  if model.name != "winn":
    raise ConfigError(f"build_winn_critic got model.name={model.name!r}; "
                      "it builds only model.name='winn'.")
  norm = model.get("norm", "layer")
  if norm not in _NORMS:
    raise ConfigError(f"Unknown model.norm={norm!r}; use one of {_NORMS}.")
  per_stage = model.get("convs_per_stage", 2)
  if per_stage < 1 or len(model.features) % per_stage:
    raise ConfigError(
        f"model.features has {len(model.features)} widths, which is not a "
        f"whole number of stages of model.convs_per_stage={per_stage}; give "
        "a multiple of convs_per_stage widths.")
  return WINNCritic(features=tuple(model.features), convs_per_stage=per_stage,
                    norm=norm, dtype=compute_dtype(dtype))


class UpsamplingInitializer(nn.Module):
  """WINN App. D: a random, linear up-sampling network (no nonlinearity).

  z (B, 4, 4, C_z) -> (B, S, S, channels), S = `size`. Each stage is a 5×5
  conv, then 2× nearest-neighbour up-sampling, then LayerNorm (not after the
  last conv); there are log2(S / 4) stages. For S = 64 this is Table 5's right-hand
  column: widths 256, 128, 64 and a last conv to `channels`. Smaller
  targets use the first widths (S = 32: 256, 128, then `channels`).

  What the paper leaves open, taken from the released code
  (kjunelee/WINN, `NoiseProvider`):
    * "Upsample" is nearest-neighbour (tf.image.resize NEAREST_NEIGHBOR),
      which keeps the network linear in z; we use jax.image.resize
      "nearest". Nearest up-sampling copies every value 4 times, so it leaves
      the per-sample mean and variance unchanged and it commutes with the
      LayerNorm (the code normalises after up-sampling).
    * biases are zero and LayerNorm has scale 1 and offset 0 (fresh
      initialisation, never trained).
  The released code draws the kernels from a uniform distribution with std
  0.1; we follow the paper's Gaussian N(0, 0.1²).

  Attributes:
    size: output height and width S, 4·2^k for a 4×4 z (e.g. 32, 64).
    features: widths of the convs before the last one (Table 5: 256, 128,
      64); needs at least log2(S / 4) − 1 of them.
    channels: image channels (the last conv's width).
    kernel_size: 5 (Table 5).
    use_norm: False drops the LayerNorms; the network is then linear in z
      (tests use this to check there is no pointwise nonlinearity).
    weight_std: std of the Gaussian conv kernels (App. D: 0.1).
  """
  size: int = 64
  features: Sequence[int] = (256, 128, 64)
  channels: int = 3
  kernel_size: int = 5
  use_norm: bool = True
  weight_std: float = 0.1

  @nn.compact
  def __call__(self, z):
    size = self.size
    stages = _num_stages(z.shape[1], size)
    if stages - 1 > len(self.features):
      raise ConfigError(
          f"The App. D initialiser needs {stages - 1} widths to reach "
          f"{size}×{size} from {z.shape[1]}×{z.shape[1]}, but features has "
          f"{len(self.features)}; give more widths.")
    x = z
    for i in range(stages):
      last = i == stages - 1
      width = self.channels if last else self.features[i]
      x = Conv(width, self.kernel_size, name=f"conv{i}",
               kernel_init=nn.initializers.normal(self.weight_std))(x)
      b, h, w, c = x.shape
      x = jax.image.resize(x, (b, 2 * h, 2 * w, c), method="nearest")
      if not last and self.use_norm:
        x = _layer_norm(jnp.float32, f"norm{i}")(x)
    return x


def _num_stages(z_size, size):
  stages = math.log2(size / z_size) if size > 0 else -1
  if stages < 1 or stages != int(stages):
    raise ConfigError(
        f"The App. D initialiser doubles a {z_size}×{z_size} input per "
        f"stage, so it cannot make {size}×{size} images; use a size of "
        f"{z_size}·2^k (k ≥ 1), e.g. 32 or 64.")
  return int(stages)


def random_initializer_params(module, key, z_shape):
  """Fresh App. D weights for `module` on z of `z_shape`: conv kernels
  ~ N(0, module.weight_std²), zero biases, LayerNorm scale 1, offset 0."""
  return module.init(key, jnp.zeros(z_shape, jnp.float32))["params"]


def initial_negatives(key, num, image_shape, features=(256, 128, 64),
                      z_channels=512, weight_std=0.1):
  """`num` initial pseudo-negatives from WINN App. D, in [−1, 1].

  One call draws one random network (weights ~ N(0, 0.1²)) and `num`
  inputs z ~ U[−1, 1]^(4×4×512), and returns the network's outputs rescaled
  per image to [−1, 1] by their min and max. The paper does not say whether
  the weights are re-drawn per image or per batch; the released code draws
  one network and makes all 10,000 initial negatives with it (only z is
  re-drawn), so draw all initial negatives of a run in one call (or with one
  key) to match it. The paper does not say how outputs become images either
  (no tanh, no clipping); the released code min-max normalises each image
  to [0, 255] (saving it as a PNG) and reads it back as [−1, 1], which is
  what we do (without the 8-bit rounding).

  Args:
    key: PRNG key; the same key gives the same network and images.
    num: number of images.
    image_shape: (S, S, C) with S = 4·2^k, e.g. (64, 64, 3), (32, 32, 1).
    features: widths of the hidden convs (Table 5: 256, 128, 64).
    z_channels: channels of z (App. D: 512).
    weight_std: std of the conv weights (App. D: 0.1).

  Returns:
    float32 images (num, S, S, C) in [−1, 1].
  """
  height, width, channels = image_shape
  if height != width:
    raise ConfigError(f"The App. D initialiser makes square images, but the "
                      f"image shape is {tuple(image_shape)}; use square "
                      "images or another initialiser.")
  _num_stages(4, height)  # a clear error before tracing
  return _initial_negatives(key, num, height, channels, tuple(features),
                            z_channels, weight_std)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6))
def _initial_negatives(key, num, size, channels, features, z_channels,
                       weight_std):
  module = UpsamplingInitializer(size=size, features=features,
                                 channels=channels, weight_std=weight_std)
  k_net, k_z = jax.random.split(key)
  z_shape = (num, 4, 4, z_channels)
  params = random_initializer_params(module, k_net, (1,) + z_shape[1:])
  z = jax.random.uniform(k_z, z_shape, jnp.float32, -1.0, 1.0)
  return minmax_to_unit(module.apply({"params": params}, z))


def minmax_to_unit(x):
  """Each sample's values mapped affinely onto [−1, 1] (a constant sample
  maps to 0)."""
  axes = tuple(range(1, x.ndim))
  lo = x.min(axis=axes, keepdims=True)
  span = x.max(axis=axes, keepdims=True) - lo
  return jnp.where(span > 0, 2 * (x - lo) / jnp.where(span > 0, span, 1) - 1,
                   0.0)
