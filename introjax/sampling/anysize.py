"""Anysize canvases (IGM §3.4): a critic of p×p patches scores images of any
size through random, overlapping patches.

This module holds the geometry (where patches are cut, how many a canvas
gets); the score a sampler climbs over a canvas, each pixel moving by the
average gradient of the patches covering it, is `scores.patch_average`.
"""
import jax
import jax.numpy as jnp


def random_origins(key, num_canvases, patches_per_canvas, canvas_hw, patch):
  """Top-left corners (B, P, 2), uniform over all in-bounds positions."""
  shape = (num_canvases, patches_per_canvas)
  k_row, k_col = jax.random.split(key)
  rows = jax.random.randint(k_row, shape, 0, canvas_hw[0] - patch + 1)
  cols = jax.random.randint(k_col, shape, 0, canvas_hw[1] - patch + 1)
  return jnp.stack([rows, cols], axis=-1)


def crop(images, index, origins, patch):
  """Patches (N, patch, patch, C) of images[index[n]] at origins[n]."""
  channels = images.shape[-1]

  def one(i, origin):
    p = jax.lax.dynamic_slice(images, (i, origin[0], origin[1], 0),
                              (1, patch, patch, channels))
    return p[0]

  return jax.vmap(one)(index, origins)


def extract_patches(canvases, origins, patch):
  """(B, H, W, C) canvases, (B, P, 2) origins -> (B*P, patch, patch, C).

  Vectorised over canvases so the patches of a canvas stay on the device
  that holds it.
  """
  per_canvas = jax.vmap(lambda c, o: crop(c[None], jnp.zeros(len(o), int),
                                          o, patch))
  patches = per_canvas(canvases, origins)
  return patches.reshape((-1,) + patches.shape[2:])


def patches_for_canvas(train_patches, train_canvas, canvas):
  """Patch count for a canvas, keeping the training density per pixel
  (IGM §4.1: more patches than that lowers quality and diversity)."""
  area = (canvas[0] * canvas[1]) / (train_canvas[0] * train_canvas[1])
  return max(1, round(train_patches * area))
