"""Positives: where a member's real examples come from, behind one small
interface.

    positives = Kind(config, mesh)              # reads the data
    Kind(config, mesh, abstract=True)           # only its shapes: `array`
                                                # is a ShapeDtypeStruct
    positives.array                             # on device (an argument of
                                                # every compiled step)
    positives.draw(array, key, num, size)       # num size×size positives in
                                                # [-1, 1], inside jit too
    positives.shapes                            # what generation needs
    positives.describe()

    TextureCanvas  IGM §3.4 / WINN §5.1–5.2: one texture, reflect-padded to
                   a canvas; positives are random crops of it
    ImageSet       IGM §4.3–4.4 / WINN §5.3–5.5: whole images of a dataset,
                   split over the mesh's data axis, drawn uniformly (random
                   horizontal flips with `data.flip`)

The labelled sets of the classifiers (data/datasets.py) are read by ICL
itself: their positives come with labels and epochs.
"""
import jax
import jax.numpy as jnp

from introjax import parallel
from introjax.data import datasets
from introjax.data import images as image_data
from introjax.sampling import anysize

# The shapes everything else is built from: one positive (`canvas_shape`)
# and its padding, the critic's input (`patch`), the pseudo-negatives'
# shape and padding, patches per negative per step.
SHAPES = ("canvas_shape", "canvas_pad", "patch", "negative_shape",
          "negative_pad", "patches_per_image")


class TextureCanvas:
  """One texture image, reflect-padded by `data.pad`; positives are
  `data.patch_size` crops; negatives are whole canvases (IGM) or
  `negatives.size` squares (WINN: patch-sized)."""

  size_field = "data.patch_size"

  def __init__(self, config, mesh, abstract=False):
    data, negatives = config.data, config.negatives
    self.config = config
    self.image = image_data.load_image(
        data.image_path or data.texture, size=data.image_size,
        channels=data.channels or None, min_side=data.patch_size)
    canvas = image_data.texture_canvas(self.image, data.pad)
    side = negatives.get("size", 0)
    # Only canvases carry the reflect padding.
    self.shapes = dict(
        canvas_shape=canvas.shape, canvas_pad=data.pad, patch=data.patch_size,
        negative_shape=((side, side, canvas.shape[2]) if side
                        else canvas.shape),
        negative_pad=0 if side else data.pad,
        patches_per_image=negatives.get("patches_per_image", 1))
    if abstract:
      self.array = jax.ShapeDtypeStruct(canvas[None].shape, canvas.dtype,
                                        sharding=parallel.replicated(mesh))
    else:
      self.array = jax.device_put(canvas[None], parallel.replicated(mesh))

  def draw(self, array, key, num, size):
    """Crops of the canvas at uniform positions."""
    origins = anysize.random_origins(key, 1, num,
                                     self.shapes["canvas_shape"][:2], size)[0]
    return anysize.crop(array, jnp.zeros(num, jnp.int32), origins, size)

  def describe(self):
    source = self.config.data.image_path or self.config.data.texture
    h, w, c = self.image.shape
    return f"{source!r} ({h}×{w}, {c} channel{'' if c == 1 else 's'})"


class ImageSet:
  """A dataset's images (uint8 on device, split over the data axis; zero
  rows pad the split and are never drawn); the patch is the image."""

  size_field = "data.image_size"

  def __init__(self, config, mesh, abstract=False):
    if abstract:
      shape, self.name, self.count = datasets.image_shapes(config.data)
    else:
      images, self.name, self.count = datasets.load_images(
          config.data, rows=lambda n: parallel.process_rows(n, mesh))
      shape = images.shape[1:]  # square: load_images cuts a centre square
    self.shapes = dict(canvas_shape=shape, canvas_pad=0, patch=shape[0],
                       negative_shape=shape, negative_pad=0,
                       patches_per_image=1)
    self.flip = bool(config.data.get("flip", False))
    self.array = (parallel.abstract_rows(self.count, shape, jnp.uint8, mesh)
                  if abstract else
                  parallel.global_rows(images, self.count, mesh))

  def draw(self, array, key, num, size):
    """Uniform with replacement: random size×size crops (the whole image at
    size = its side), mirrored with probability 1/2 when `data.flip`."""
    k_index, k_origin, k_flip = jax.random.split(key, 3)
    index = jax.random.randint(k_index, (num,), 0, self.count)
    origins = anysize.random_origins(
        k_origin, 1, num, self.shapes["canvas_shape"][:2], size)[0]
    x = datasets.to_unit_range(anysize.crop(array, index, origins, size))
    if self.flip:
      mirrored = jax.random.bernoulli(k_flip, 0.5, (num,))
      x = jnp.where(mirrored[:, None, None, None], x[:, :, ::-1], x)
    return x

  def describe(self):
    (h, w, c) = self.shapes["canvas_shape"]
    return (f"{self.name} ({self.count} images of {h}×{w}, {c} "
            f"channel{'' if c == 1 else 's'})")
