"""WINN on CIFAR-10 (WINN §5.5): as configs/winn_svhn.py, on TFDS `cifar10`'s
training images with random horizontal flips ("augmented by horizontal
flips").

    python -m introjax.main --config=configs/winn_cifar10.py --workdir=runs/winn_cifar10

Variants: (none) laptop-size, `paper` (§5.1 settings, for an accelerator;
the paper reports 4–5 cascades: --config.cascade.critics=5 with rounds a
multiple of 5), `tiny` for tests.
"""
import os

from introjax import config_utils


def get_config(variant=""):
  if variant not in ("", "paper", "tiny"):
    raise ValueError(f"Unknown variant {variant!r} of winn_cifar10.py; use "
                     "'paper', 'tiny' or none.")
  path = os.path.join(os.path.dirname(__file__), "winn_svhn.py")
  c = config_utils.load_config_file(path + (f":{variant}" if variant else ""))
  c.data.name = "cifar10"
  c.data.flip = True
  return c
