"""WINN on SVHN (WINN §5.4): the WGAN-GP ResNet critic on 32×32 colour
house numbers, the training split only, as the paper uses.

    python -m introjax.main --config=configs/winn_svhn.py --workdir=runs/winn_svhn

Reads TFDS `svhn_cropped` (prepare it once; the error says how). Variants:
  (none)   laptop-size: a 64-wide ResNet critic, 32 negatives per round, 10
           rounds, 10,000 of the training images; a few minutes per round
           on a 2-core CPU.
  paper    §5.1 settings: the 128-wide critic, every training image,
           batches of 50 + 50, k = 3 passes of 100 batches per round, 1000
           negatives per round, up to 2000 synthesis steps, 100 rounds.
           Meant for an accelerator; --config.cascade.critics=4 for WINN-4CNNs.
  tiny     16×16 images, a 16-wide critic, a few steps: for tests.
Everything else (p0, early stop, outputs in the workdir) is as in
configs/winn_celeba.py.
"""
import os

import ml_collections

from introjax import config_utils


def get_config(variant=""):
  if variant not in ("", "paper", "tiny"):
    raise ValueError(f"Unknown variant {variant!r} of winn_svhn.py; use "
                     "'paper', 'tiny' or none.")
  c = config_utils.load_config_file(
      os.path.join(os.path.dirname(__file__), "winn_celeba.py")
      + (":tiny" if variant == "tiny" else ""))
  c.data.source, c.data.name, c.data.split = "tfds", "svhn_cropped", "train"
  c.data.crop, c.data.image_size = 0, 32
  c.data.max_images = 10000
  c.model = ml_collections.ConfigDict()
  c.model.name = "resnet_critic"  # Gulrajani et al. 2017's CIFAR critic
  c.model.features = 64           # the width of every residual block
  c.model.norm = "layer"          # the original has none; see critics.py
  if variant == "paper":
    c.rounds = 100
    c.data.max_images = 0
    c.model.features = 128
    c.negatives.per_round = 1000
    c.pool.rounds = 101
    c.train.batch_size = 50
    c.train.batches_per_pass = 100
    c.synthesis.max_steps = 2000
    c.log.num_samples = 64
  elif variant == "tiny":
    c.data.image_size = 16
    c.data.max_images = 64
    c.model.features = 16
  return c
