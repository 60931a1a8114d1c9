"""Critic networks: a CNN whose logit f(x) is both classifier and energy.

Every critic maps a batch (B, H, W, C) to logits (B,). Normalisation is per
sample (LayerNorm over H, W, C), so a sample's logit and its input gradient
never depend on what else is in the batch: synthesis is batch-independent.

Precision: `dtype` is the compute dtype ("float32" or "bfloat16").
Parameters are float32 and cast where they are used (`Conv`), inputs are
cast by the first convolution, LayerNorm takes its statistics in float32,
and the last (Dense) layer runs in float32 on the upcast features, so
logits, losses and every gradient (of the parameters and of the input the
ascent climbs) are float32; only the convolutions' work is in bfloat16.
"""
from typing import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from introjax.errors import ConfigError
from introjax.models.conv import conv2d

COMPUTE_DTYPES = ("float32", "bfloat16")


def compute_dtype(name) -> jnp.dtype:
  """The compute dtype `config.dtype` names."""
  try:
    dtype = jnp.dtype(name)
  except TypeError:
    dtype = None
  if dtype is None or dtype.name not in COMPUTE_DTYPES:
    raise ConfigError(
        f"Unknown config.dtype={name!r}; use 'float32' or 'bfloat16' (the "
        "compute dtype; parameters, optimiser state and images stay "
        "float32).")
  return dtype


def float32_logits(x, num_outputs, name,
                   kernel_init=nn.initializers.lecun_normal()):
  """The last layer in float32: logits (and so losses and early-stopping
  decisions) keep float32 resolution whatever the compute dtype."""
  return nn.Dense(num_outputs, dtype=jnp.float32, name=name,
                  kernel_init=kernel_init)(x.astype(jnp.float32))


class Conv(nn.Module):
  """A convolution through `conv2d` (which has a CPU-friendly backward).
  The default initialiser is DCGAN's N(0, 0.02²); classifiers pass He's."""
  features: int
  kernel_size: int
  stride: int = 1
  dtype: jnp.dtype = jnp.float32
  kernel_init: Callable = nn.initializers.normal(0.02)

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    kernel = self.param("kernel", self.kernel_init,
                        (k, k, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    y = conv2d(x.astype(self.dtype), kernel.astype(self.dtype), self.stride)
    return y + bias.astype(self.dtype)


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


def build_critic(model: ml_collections.ConfigDict, dtype="float32") -> nn.Module:
  """The critic named by `config.model`: "dcgan" (IGM §4) or "winn" (WINN
  App. C)."""
  if model.name == "winn":
    # Imported here: models.winn builds on this module's Conv.
    from introjax.models import winn  # pylint: disable=import-outside-toplevel
    return winn.build_winn_critic(model, dtype)
  if model.name != "dcgan":
    raise ConfigError(f"Unknown critic model.name={model.name!r}; "
                     "the known critics are: 'dcgan', 'winn'.")
  if model.norm not in _NORMS:
    raise ConfigError(f"Unknown model.norm={model.norm!r}; use one of {_NORMS}.")
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

