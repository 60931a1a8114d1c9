"""IGM on MNIST digits as unlabelled images, from a Keras-layout npz
(offline): the faces settings of configs/igm_celeba.py (§4.3: the DCGAN
critic with LayerNorm, SGD 0.01, Adam 0.01 β1 0.5 synthesis from
N(0, 0.3²), the windowed stop) on 28×28 grey digits. Its critic is what
IGM §4.5's semi-supervised protocol reads
(`python -m introjax.evaluate --workdir=… --eval=semisup`).

    python -m introjax.main --config=configs/igm_mnist.py --workdir=runs/igm_mnist \
        --config.data.npz_path=/path/to/mnist.npz

Variants:
  (none)   every training image, 40 rounds, the three-layer half-width
           critic (32, 64, 128) of the faces default.
  cpu      the reduced schedule for a 2-core CPU: the first 2,000
           training images (as icl_mnist.py:cpu), 12 rounds of at most
           100 critic steps; a few minutes.
  tfds     TFDS `mnist` instead of the npz (prepared beforehand).
"""
import os

from introjax import config_utils


def get_config(variant=""):
  if variant not in ("", "cpu", "tfds"):
    raise ValueError(f"Unknown variant {variant!r} of igm_mnist.py; use "
                     "'cpu', 'tfds' or none.")
  c = config_utils.load_config_file(
      os.path.join(os.path.dirname(__file__), "igm_celeba.py"))
  c.data.source, c.data.npz_path, c.data.split = "npz", "mnist.npz", "train"
  c.data.crop, c.data.image_size, c.data.channels = 0, 28, 1
  c.eval.per_round = ""          # SWD needs 16·2^j crops; 28 gives one level
  if variant == "cpu":
    c.rounds = 12
    c.data.max_images = 2000
    c.pool.rounds = 12
    c.train.max_steps = 100
  elif variant == "tfds":
    c.data.source, c.data.name = "tfds", "mnist"
  return c
