"""ICL on CIFAR-10 (ICL §4.2, Table 2): ResNet-32 (LayerNorm in place of
BatchNorm, as WINN uses, so synthesis does not depend on the batch), batch
128, SGD momentum 0.9. Table 2's "w/ data augmentation" rows need
--config.data.augment=True (pad 4, random crop, random flip). Meant for an
accelerator.

    python -m introjax.main --config=configs/icl_cifar10.py --workdir=runs/icl_cifar10
"""
import os

from introjax import config_utils


def get_config(variant=""):
  if variant:
    raise ValueError(f"Unknown variant {variant!r} of icl_cifar10.py.")
  c = config_utils.load_config_file(
      os.path.join(os.path.dirname(__file__), "icl_digits.py"))
  c.rounds = 30
  c.data.source = "tfds"
  c.data.name = "cifar10"
  c.model.name = "resnet32"
  c.train.batch_size = 128
  c.train.learning_rate = 0.1    # the ResNet recipe's rate (ICL cites it)
  c.train.weight_decay = 2e-4
  c.negatives.per_class = 20
  c.pool.rounds = 30
  c.eval.every_rounds = 5
  return c
