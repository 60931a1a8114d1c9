"""The building blocks every network here shares: the compute dtype, the
convolution (through `conv2d` and its CPU backward) and the float32 logit
layer.

Precision: `dtype` is the compute dtype ("float32" or "bfloat16").
Parameters are float32 and cast where they are used (`Conv`), inputs are
cast by the first convolution, and the last (Dense) layer runs in float32
on the upcast features, so logits, losses and every gradient (of the
parameters and of the input the ascent climbs) are float32; only the
convolutions' work is in bfloat16.
"""
from typing import Callable

import flax.linen as nn
import jax.numpy as jnp

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
