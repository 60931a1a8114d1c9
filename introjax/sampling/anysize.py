"""Anysize canvases (IGM §3.4): a critic of p×p patches scores images of any
size through random, overlapping patches.

In synthesis each pixel moves by the average of the gradients of the
patches that cover it (the sum of their gradients divided by how many cover
it); pixels no patch covers this step do not move.
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


def patch_averaged_ascent(logits_fn, patch, patches_per_canvas):
  """score_and_grad for canvases: fresh random patches at every step.

  Returns patch logits (B, P) and the per-pixel average of the patch-logit
  gradients, shaped like the canvases.
  """
  def score_and_grad(canvases, key):
    b, h, w, _ = canvases.shape
    origins = random_origins(key, b, patches_per_canvas, (h, w), patch)
    crop = lambda c: extract_patches(c, origins, patch)
    patches, crop_vjp = jax.vjp(crop, canvases)
    logits, logits_vjp = jax.vjp(logits_fn, patches)
    summed = crop_vjp(logits_vjp(jnp.ones_like(logits))[0])[0]
    coverage = crop_vjp(jnp.ones_like(patches))[0][..., :1]
    grad = summed / jnp.maximum(coverage, 1.0)
    return logits.reshape(b, patches_per_canvas), grad
  return score_and_grad


def patches_for_canvas(train_patches, train_canvas, canvas):
  """Patch count for a canvas, keeping the training density per pixel
  (IGM §4.1: more patches than that lowers quality and diversity)."""
  area = (canvas[0] * canvas[1]) / (train_canvas[0] * train_canvas[1])
  return max(1, round(train_patches * area))
