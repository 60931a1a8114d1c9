"""Initial pseudo-negatives p0, chosen by name (`p0.name` in configs).

    sample = p0.build(name, std=…, network_key=…, patch=…)
    x = sample(key, num, shape)        # (num, *shape) float32 in [-1, 1]

    gaussian    N(0, std²) clipped to [-1, 1] (IGM, ICL, the WINN classifier)
    upsampling  WINN App. D's random up-sampling network: one network per
                run (drawn from `network_key`), fresh z per sample; canvases
                larger than a patch keep the patch's scale (anysize)
    blank       every pixel at the data range's maximum (STIC's τ = 1)
    uniform     U[-1, 1] per pixel (STIC's and JEM's chain re-initialisation)
"""
import functools
import math

import jax
import jax.numpy as jnp

from introjax.errors import ConfigError
from introjax.models import winn as winn_models

P0 = {}


def register(name):
  def add(fn):
    P0[name] = fn
    return fn
  return add


@register("gaussian")
def gaussian(key, num, shape, *, std=0.3, **unused):
  del unused
  return jnp.clip(std * jax.random.normal(key, (num, *shape)), -1.0, 1.0)


@register("uniform")
def uniform(key, num, shape, **unused):
  del unused
  return jax.random.uniform(key, (num, *shape), jnp.float32, -1.0, 1.0)


@register("blank")
def blank(key, num, shape, **unused):
  del key, unused
  return jnp.ones((num, *shape), jnp.float32)


@register("upsampling")
def upsampling(key, num, shape, *, network_key, patch, **unused):
  del unused
  return _upsampling_canvases(network_key, key, num, tuple(shape), patch)


def check_upsampling_patch(patch, field, size_field):
  """App. D grows 4×4 noise by doubling to the patch: a clear sentence for a
  patch it cannot make."""
  stages = math.log2(patch / 4) if patch >= 8 else 0
  if stages < 1 or stages != int(stages):
    raise ConfigError(
        f"{field}='upsampling' (WINN App. D) grows 4×4 noise to the patch by "
        f"doubling, which cannot make {patch}×{patch}; use a {size_field} of "
        f"4·2^k (16, 32, 64) or {field}='gaussian'.")


def build(name, field="p0.name", **settings):
  """p0 `name` with its settings bound: `sample(key, num, shape)`.

  `field` names the config entry for error messages."""
  if name not in P0:
    raise ConfigError(f"Unknown {field}={name!r}; use one of "
                      f"{', '.join(map(repr, P0))}.")
  return functools.partial(P0[name], **settings)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _upsampling_canvases(net_key, z_key, num, canvas_shape, patch):
  """WINN App. D outputs covering `canvas_shape`: z is a (⌈H/s⌉, ⌈W/s⌉, 512)
  grid with s = patch/4, so a patch-sized window of the output is exactly
  App. D's 4×4 → patch network, and larger canvases keep that scale."""
  h, w, channels = canvas_shape
  stages = int(math.log2(patch // 4))
  scale = 2 ** stages
  zh, zw = -(-h // scale), -(-w // scale)
  module = winn_models.UpsamplingInitializer(
      size=zh * scale, features=(256, 128, 64, 64, 64)[:max(stages - 1, 0)],
      channels=channels)
  z_shape = (num, zh, zw, 512)
  params = winn_models.random_initializer_params(module, net_key,
                                                 (1,) + z_shape[1:])
  z = jax.random.uniform(z_key, z_shape, jnp.float32, -1.0, 1.0)
  out = module.apply({"params": params}, z)
  top, left = (out.shape[1] - h) // 2, (out.shape[2] - w) // 2
  x = winn_models.minmax_to_unit(out[:, top:top + h, left:left + w])
  return jnp.clip(x, -1.0, 1.0)  # min-max rounding can overshoot by an ulp
