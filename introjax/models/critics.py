"""Critic networks: a CNN whose logit f(x) is both classifier and energy.

Every critic maps a batch (B, H, W, C) to logits (B,). Normalisation is per
sample (LayerNorm over H, W, C), so a sample's logit and its input gradient
never depend on what else is in the batch: synthesis is batch-independent.

Precision: `dtype` is the compute dtype (models/layers.py); LayerNorm
takes its statistics in float32.
"""
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from introjax.errors import ConfigError
from introjax.models import winn
from introjax.models.layers import Conv, compute_dtype, float32_logits

class DCGANCritic(nn.Module):
  """IGM §4's discriminator: strided 5×5 convs, LeakyReLU 0.2, linear logit.

  IGM uses BatchNorm after every conv but the first; we use per-sample
  LayerNorm there so sampling does not depend on batch composition.
  """
  features: Sequence[int] = (64, 128, 256, 512)
  kernel_size: int = 5
  norm: str = "layer"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    for i, f in enumerate(self.features):
      x = Conv(f, self.kernel_size, stride=2, dtype=self.dtype,
               name=f"conv{i}")(x)
      if i > 0 and self.norm == "layer":
        x = nn.LayerNorm(reduction_axes=(-3, -2, -1), dtype=self.dtype,
                         name=f"norm{i}")(x)
      x = nn.leaky_relu(x, 0.2)
    x = x.reshape(x.shape[0], -1)
    return float32_logits(x, 1, "logit", nn.initializers.normal(0.02))[:, 0]


_NORMS = ("layer", "none")


def _mean_pool(x):
  return nn.avg_pool(x, (2, 2), strides=(2, 2))


class CriticResBlock(nn.Module):
  """A residual block of the WGAN-GP ResNet critic (Gulrajani et al. 2017,
  gan_cifar_resnet.py): [norm, ReLU, conv3]×2, then a 2×2 mean pool when
  `down`; the shortcut is a 1×1 conv then the pool (identity when neither
  the width nor the size changes). The `first` block sees the raw image: conv3,
  ReLU, conv3, pool, with a pool-then-1×1-conv shortcut and no norm."""
  features: int
  down: bool
  first: bool = False
  norm: str = "layer"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    f, conv3 = self.features, nn.initializers.he_uniform()
    conv = lambda h, k, name, init=nn.initializers.glorot_uniform(): Conv(
        f, k, dtype=self.dtype, kernel_init=init, name=name)(h)

    def norm_relu(h, name):
      if self.norm == "layer":
        # Per sample, over (H, W, C): a sample's logit never depends on the
        # rest of the batch, which synthesis and the gradient penalty need.
        h = nn.LayerNorm(reduction_axes=(-3, -2, -1), dtype=self.dtype,
                         name=name)(h)
      return nn.relu(h)

    if self.first:
      shortcut = conv(_mean_pool(x), 1, "shortcut")
      h = nn.relu(conv(x, 3, "conv1", conv3))
      return shortcut + _mean_pool(conv(h, 3, "conv2", conv3))
    shortcut = x
    if self.down or x.shape[-1] != f:
      shortcut = conv(x, 1, "shortcut")
      shortcut = _mean_pool(shortcut) if self.down else shortcut
    h = conv(norm_relu(x, "norm1"), 3, "conv1", conv3)
    h = conv(norm_relu(h, "norm2"), 3, "conv2", conv3)
    return shortcut + (_mean_pool(h) if self.down else h)


class ResNetCritic(nn.Module):
  """The WGAN-GP CIFAR-10 ResNet critic (Gulrajani et al. 2017), which WINN
  §5.4–5.5 uses for SVHN and CIFAR-10: a down-sampling first block, a
  down-sampling block, two plain blocks, all `features` wide (128), then
  ReLU, the spatial mean and a linear logit; 32×32 → 8×8 before the mean.

  The original critic has no normalisation; `norm="layer"` adds a
  per-sample LayerNorm before each ReLU inside the later blocks (as the
  authors' 64×64 ResNet critic does), which keeps the critic batch-
  independent and steadies the early rounds; `norm="none"` is the original.
  """
  features: int = 128
  norm: str = "layer"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    block = lambda down, **kw: CriticResBlock(
        self.features, down, norm=self.norm, dtype=self.dtype, **kw)
    x = block(True, first=True, name="block1")(x.astype(self.dtype))
    x = block(True, name="block2")(x)
    x = block(False, name="block3")(x)
    x = block(False, name="block4")(x)
    x = nn.relu(x).astype(jnp.float32).mean(axis=(1, 2))
    return float32_logits(x, 1, "logit")[:, 0]


def build_critic(model: ml_collections.ConfigDict, dtype="float32") -> nn.Module:
  """The critic named by `config.model`: "dcgan" (IGM §4), "winn" (WINN
  App. C) or "resnet_critic" (the WGAN-GP ResNet, WINN §5.4–5.5)."""
  if model.name == "winn":
    return winn.build_winn_critic(model, dtype)
  if model.name not in ("dcgan", "resnet_critic"):
    raise ConfigError(f"Unknown critic model.name={model.name!r}; the known "
                      "critics are: 'dcgan', 'winn', 'resnet_critic'.")
  if model.norm not in _NORMS:
    raise ConfigError(f"Unknown model.norm={model.norm!r}; use one of {_NORMS}.")
  if model.name == "resnet_critic":
    if not isinstance(model.features, int) or model.features < 1:
      raise ConfigError(f"model.features={model.features!r} is the width of "
                        "every block of the ResNet critic; give one positive "
                        "integer such as 128.")
    return ResNetCritic(features=model.features, norm=model.norm,
                        dtype=compute_dtype(dtype))
  return DCGANCritic(features=tuple(model.features),
                     kernel_size=model.kernel_size, norm=model.norm,
                     dtype=compute_dtype(dtype))


def init_critic(critic: nn.Module, key, input_shape):
  """Parameters for `critic` on inputs of shape (H, W, C)."""
  return critic.init(key, jnp.zeros((1, *input_shape), jnp.float32))["params"]


def critic_logits(critic: nn.Module):
  """`params, x -> logits` as a plain function."""
  def logits(params, x):
    return critic.apply({"params": params}, x)
  return logits

