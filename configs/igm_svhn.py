"""IGM on SVHN (IGM §4.4): "the same settings as in the face modeling
experiments" (configs/igm_celeba.py) on 32×32 colour house numbers.

    python -m introjax.main --config=configs/igm_svhn.py --workdir=runs/igm_svhn

Reads TFDS `svhn_cropped` (prepare it once; the error says how). Variants:
  (none)   laptop-size: 10,000 training images, the three-layer half-width
           DCGAN critic, 32 negatives per round, 40 rounds with the
           windowed stop (igm_celeba.py's; not run here: no SVHN on this
           machine). The same data as configs/winn_svhn.py, so the two are
           comparable.
  paper    §4.4: the training and extra sets together (604,388 images) as
           positives, the full DCGAN critic, batches of 50 + 50, 200
           negatives per round. Meant for an accelerator.
  tiny     16×16 images and a few steps, for tests.
"""
import os

from introjax import config_utils


def get_config(variant=""):
  if variant not in ("", "paper", "tiny"):
    raise ValueError(f"Unknown variant {variant!r} of igm_svhn.py; use "
                     "'paper', 'tiny' or none.")
  c = config_utils.load_config_file(
      os.path.join(os.path.dirname(__file__), "igm_celeba.py")
      + (f":{variant}" if variant else ""))
  c.data.source, c.data.name, c.data.split = "tfds", "svhn_cropped", "train"
  c.data.crop, c.data.image_size = 0, 32
  c.data.max_images = 10000
  if variant == "paper":
    c.data.split = "train+extra"
    c.data.max_images = 0
  elif variant == "tiny":
    c.data.image_size = 16
    c.data.max_images = 64
  return c
