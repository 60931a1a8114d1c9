"""IntroVAE's networks (Appendix B, Table 3): a residual encoder and
generator built from the resolution.

    encoder    conv 5×5 → avg-pool, then per entry of `channels[1:]` a
               residual block and an avg-pool, a last residual block at
               4×4, FC → (μ, log σ²)
    generator  FC → 4×4×channels[-1] (ReLU), per entry of reversed
               `channels` a residual block and a nearest 2× up-sampling, a
               last residual block, conv 5×5 → image

so the image side is 4·2^len(channels): Table 3's 1024² network is
channels = (16, 32, 64, 128, 256, 512, 512, 512); smaller resolutions drop
the first entries, as Appendix B says. A residual block is conv 3×3 →
LeakyReLU(0.2) → conv 3×3, added to the input (through a 1×1 conv where the
width changes), then LeakyReLU.

No BatchNorm (the official code has it after every conv): without it the
networks have no train/eval modes and no batch statistics to save, so a
saved model samples and reconstructs exactly as in training, and batches of
8 at 1024² (the paper's) lose nothing. To keep activations in scale without
it, the sum of a block is divided by √2.

The generator's output is linear (no tanh, as the official code): images are
[-1, 1] and values outside are clipped only when shown.
"""
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from introjax.errors import ConfigError
from introjax.models.layers import Conv

# He-normal for LeakyReLU(0.2) layers; the official code uses PyTorch's
# default, which is smaller and with no normalisation would shrink the
# signal block after block.
_INIT = nn.initializers.variance_scaling(2.0 / (1 + 0.2 ** 2), "fan_in",
                                         "normal")


def _lrelu(x):
  return nn.leaky_relu(x, 0.2)


def resolution(channels):
  """The image side the networks with these `channels` take and make."""
  return 4 * 2 ** len(channels)


def check(image_size, channels, latent_dim):
  """Refuses an image size the architecture has no network for and a
  latent size ≤ 0, each in one sentence."""
  if latent_dim <= 0:
    raise ConfigError(f"model.latent_dim={latent_dim}; the latent code needs "
                      "at least one dimension (the paper: 512 at 256²–1024²,"
                      " 256 at 128²).")
  if not channels:
    raise ConfigError("model.channels is empty; give one width per "
                      "resolution halving, e.g. (64, 128, 256, 512) for "
                      "64×64 images.")
  side = resolution(channels)
  if image_size != side:
    sizes = ", ".join(str(4 * 2 ** k) for k in range(1, 9))
    depth = np.log2(image_size / 4) if image_size >= 8 else 0
    fix = (f"give model.channels {int(depth)} widths"
           if depth == int(depth) and depth >= 1 else
           f"resize the images to one of {sizes}")
    raise ConfigError(
        f"data.image_size={image_size} is not a resolution of the IntroVAE "
        f"network with model.channels={tuple(channels)} (which takes "
        f"{side}×{side} images, 4·2^{len(channels)}); {fix}.")


class ResBlock(nn.Module):
  features: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    skip = x
    if x.shape[-1] != self.features:
      skip = Conv(self.features, 1, dtype=self.dtype, kernel_init=_INIT,
                  name="expand")(x)
    h = _lrelu(Conv(self.features, 3, dtype=self.dtype, kernel_init=_INIT,
                    name="conv1")(x))
    h = Conv(self.features, 3, dtype=self.dtype, kernel_init=_INIT,
             name="conv2")(h)
    return _lrelu((h + skip.astype(h.dtype)) / np.sqrt(2.0).astype(h.dtype))


def _avg_pool(x):
  return nn.avg_pool(x, (2, 2), strides=(2, 2))


def _upsample(x):
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class Encoder(nn.Module):
  """x (N, S, S, C) in [-1, 1] → (μ, log σ²), each (N, latent_dim) float32."""
  channels: Sequence[int]
  latent_dim: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    h = Conv(self.channels[0], 5, dtype=self.dtype, kernel_init=_INIT,
             name="conv_in")(x)
    h = _avg_pool(_lrelu(h))
    for i, width in enumerate(self.channels[1:]):
      h = _avg_pool(ResBlock(width, self.dtype, name=f"res{i}")(h))
    h = ResBlock(self.channels[-1], self.dtype, name="res_out")(h)
    h = h.reshape(h.shape[0], -1).astype(jnp.float32)
    # float32 for the moments: the KL and its margin are in float32.
    stats = nn.Dense(2 * self.latent_dim, dtype=jnp.float32,
                     kernel_init=nn.initializers.normal(0.01),
                     name="moments")(h)
    mu, logvar = jnp.split(stats, 2, axis=-1)
    return mu, logvar


class Generator(nn.Module):
  """z (N, latent_dim) → images (N, S, S, image_channels), float32."""
  channels: Sequence[int]
  image_channels: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, z):
    width = self.channels[-1]
    h = nn.Dense(4 * 4 * width, dtype=self.dtype, name="fc")(z)
    h = nn.relu(h).reshape(z.shape[0], 4, 4, width)
    for i, width in enumerate(reversed(self.channels)):
      h = _upsample(ResBlock(width, self.dtype, name=f"res{i}")(h))
    h = ResBlock(self.channels[0], self.dtype, name="res_out")(h)
    out = Conv(self.image_channels, 5, dtype=self.dtype,
               kernel_init=nn.initializers.normal(0.02), name="conv_out")(h)
    return out.astype(jnp.float32)


def reparameterize(key, mu, logvar):
  """z = μ + σ ⊙ ε, ε ~ N(0, I)."""
  return mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape,
                                                        mu.dtype)
