"""IGM and WINN on datasets of whole images: faces, SVHN, CIFAR-10 (IGM
§4.3–4.4, WINN §5.3–5.5).

These are the texture members with other positives: instead of random
patches of one texture canvas, the positives are whole images drawn at
random from a dataset kept on the device, and the pseudo-negatives are
images of the same size (the patch is the image, one patch per image).
Everything else — critic loss, optimisers, early stops, p0, cascades, pool,
checkpoints, per-round SWD, sample grids, generation through the cascade
from p0 — is the shared round of `igm.TextureTrainer`, so the four members
(IGM, IGM-single, WINN-single, WINN with K critics) are directly comparable
on identical data:

    trainer="igm_images"   igm.single=False | True     (IGM | IGM-single)
    trainer="winn_images"  winn.cascade=1 | K          (WINN-single | WINN)

The dataset lives on the devices as uint8 (4× smaller than float32), split
over the mesh's data axis like the negative pool: each process decodes only
the rows its devices hold, each device keeps 1/D of the images, and a batch
of positives is a gather on each device's own rows plus a sum over devices
of the batch (never of the dataset). Positives are scaled to [-1, 1] inside
the jitted steps; random horizontal flips (`data.flip`, WINN §5.5 on
CIFAR-10) are drawn per positive there too.
"""
import jax
import jax.numpy as jnp

from introjax import parallel
from introjax.data import datasets
from introjax.sampling import anysize
from introjax.training import igm
from introjax.training import winn

class ImagePositives:
  """Whole dataset images as the positives of a texture member (mix in
  before it): overrides only where positives come from."""

  def _load_positives(self):
    images, self.data_name, self.num_positives = datasets.load_images(
        self.config.data, rows=lambda n: parallel.process_rows(n, self.mesh))
    shape = images.shape[1:]  # square: load_images cuts a centre square
    self.canvas_shape = shape
    self.canvas_pad = 0
    self.patch = shape[0]
    self.negative_shape = shape
    self.negative_pad = 0
    self.patches_per_image = 1
    self.flip = bool(self.config.data.get("flip", False))
    # Zero rows pad the split to a multiple of the mesh size; they are never
    # drawn.
    self.positive = parallel.global_rows(images, self.num_positives,
                                         self.mesh)

  size_field = "data.image_size"

  def draw_positives(self, positive, key, num, size):
    """`num` positives drawn uniformly with replacement from the dataset
    `positive`: random size×size crops (the whole image at size = the image
    side), mirrored left-right with probability 1/2 when `data.flip`."""
    k_index, k_origin, k_flip = jax.random.split(key, 3)
    index = jax.random.randint(k_index, (num,), 0, self.num_positives)
    origins = anysize.random_origins(k_origin, 1, num, self.canvas_shape[:2],
                                     size)[0]
    x = datasets.to_unit_range(anysize.crop(positive, index, origins, size))
    if self.flip:
      mirrored = jax.random.bernoulli(k_flip, 0.5, (num,))
      x = jnp.where(mirrored[:, None, None, None], x[:, :, ::-1], x)
    return x

  def describe_data(self):
    (h, w, c), n = self.canvas_shape, self.num_positives
    return (f"{self.data_name} ({n} images of {h}×{w}, {c} "
            f"channel{'' if c == 1 else 's'})")


class ImageIGM(ImagePositives, igm.TextureIGM):
  """IGM (a critic per round) or IGM-single on a dataset of images."""


class ImageWINN(ImagePositives, winn.TextureWINN):
  """WINN-single or WINN with `winn.cascade` critics on a dataset of
  images."""


def train_igm(config, workdir):
  """Trains IGM (or IGM-single) on images per `config`, resuming from
  `workdir`, then writes a grid of new images generated from p0."""
  return igm.train_texture(ImageIGM, config, workdir)


def train_winn(config, workdir):
  """Trains WINN-single (or a WINN cascade) on images per `config`,
  resuming from `workdir`, then writes a grid of new images from p0."""
  return igm.train_texture(ImageWINN, config, workdir)
