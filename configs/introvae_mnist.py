"""IntroVAE on MNIST from a Keras-layout npz (offline), 28×28 scaled to 32×32.

    python -m introjax.main --config=configs/introvae_mnist.py \
        --config.data.source=npz --config.data.npz_path=mnist.npz --workdir=runs/iv_mnist

Held-out images are the first `data.holdout` of the test split. Reduced
runs: --config.data.max_images=5000. The same networks and schedule as
configs/introvae_faces.py, so the objectives compare alike:
  --config.introvae.alpha=0                  the plain VAE
  --config.introvae.objective=soft_introvae  Soft-IntroVAE
Variant `tfds` reads TFDS `mnist` instead (prepared beforehand).
"""
import os

from introjax import config_parts
from introjax import config_utils


def get_config(variant=""):
  faces = config_utils.load_config_file(
      os.path.join(os.path.dirname(__file__), "introvae_faces.py"))
  c = faces
  c.data.source = "npz"
  c.data.npz_path = "mnist.npz"
  c.data.split, c.data.eval_split = "train", "test"
  c.data.holdout = 256
  c.data.image_size = 32
  c.rounds = 20
  c.introvae.pretrain_rounds = 2
  c.train.batch_size = 32
  c.train.epochs_per_round = 1
  if variant == "tfds":
    c.data.source, c.data.name = "tfds", "mnist"
  elif variant:
    raise ValueError(f"Unknown variant {variant!r} of introvae_mnist.py; use "
                     "'tfds' or none.")
  return config_parts.complete(c)
