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

    trainer="igm_images"   cascade.single=False | True   (IGM | IGM-single)
    trainer="winn_images"  cascade.critics=1 | K         (WINN-single | WINN)

The dataset lives on the devices as uint8 (4× smaller than float32), split
over the mesh's data axis like the negative pool: each process decodes only
the rows its devices hold, each device keeps 1/D of the images, and a batch
of positives is a gather on each device's own rows plus a sum over devices
of the batch (never of the dataset). Positives are scaled to [-1, 1] inside
the jitted steps; random horizontal flips (`data.flip`, WINN §5.5 on
CIFAR-10) are drawn per positive there too.
"""
from introjax.data import positives
from introjax.training import igm
from introjax.training import winn


class ImageIGM(igm.TextureIGM):
  """IGM (a critic per round) or IGM-single on a dataset of images."""
  positives_kind = positives.ImageSet


class ImageWINN(winn.TextureWINN):
  """WINN-single or WINN with `cascade.critics` critics on a dataset of
  images."""
  positives_kind = positives.ImageSet


def train_igm(config, workdir):
  """Trains IGM (or IGM-single) on images per `config`, resuming from
  `workdir`, then writes a grid of new images generated from p0."""
  return igm.train_texture(ImageIGM, config, workdir)


def train_winn(config, workdir):
  """Trains WINN-single (or a WINN cascade) on images per `config`,
  resuming from `workdir`, then writes a grid of new images from p0."""
  return igm.train_texture(ImageWINN, config, workdir)
