"""ICL on SVHN (ICL §4.3, Table 3): ResNet-32 with LayerNorm, trained on
train + extra, tested on test, no augmentation, softmax mode. Meant for an
accelerator.

    python -m introjax.main --config=configs/icl_svhn.py --workdir=runs/icl_svhn
"""
import os

from introjax import config_utils


def get_config(variant=""):
  if variant:
    raise ValueError(f"Unknown variant {variant!r} of icl_svhn.py.")
  c = config_utils.load_config_file(
      os.path.join(os.path.dirname(__file__), "icl_cifar10.py"))
  c.data.name = "svhn_cropped"
  c.data.train_split = "train+extra"
  c.train.learning_rate = 0.01
  c.rounds = 20
  c.train.epochs_per_round = 2.0  # train + extra is 604,388 images
  c.train.decay_round = 15
  c.pool.rounds = 20
  return c
