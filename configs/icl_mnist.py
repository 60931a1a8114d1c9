"""ICL on MNIST (ICL §4.1, Table 1): the 4-conv network (64–512), SGD
momentum 0.9 with batch 64, lr 0.01 ×0.1 at round 20, 5 epochs per round,
200 pseudo-negatives per round (20 per class in the softmax and one-vs-all
modes). Meant for an accelerator.

    python -m introjax.main --config=configs/icl_mnist.py --workdir=runs/icl_mnist
    # reading your own Keras-layout mnist.npz instead of TFDS:
    python -m introjax.main --config=configs/icl_mnist.py --workdir=runs/icl_mnist \
        --config.data.source=npz --config.data.npz_path=/path/to/mnist.npz

Variant `cpu`: the documented reduced schedule for a 2-core CPU (the first
2,000 training images, the whole test set, 8 rounds of 2 epochs, decay at
round 6, a half-width network; about 3 minutes) — ICL §4.1's Figure 5 regime of few training
examples, not Table 1's.

Variant `full`: Table 1's data on a 2-core CPU in under an hour — all 60,000
training images and the whole test set, 10 rounds of 1 epoch (lr ×0.1 from
round 8), the half-width network 32–64–128–256 (the paper's is twice as
wide), 20 pseudo-negatives per class per round, all kept:

    python launch/sweep.py --config=configs/icl_mnist.py:full --root=runs/icl_mnist_full \
        --seeds=0,1,2 -- --config.data.source=npz --config.data.npz_path=mnist.npz
"""
import os

from introjax import config_utils


def get_config(variant=""):
  c = config_utils.load_config_file(
      os.path.join(os.path.dirname(__file__), "icl_digits.py"))
  c.rounds = 30
  c.data.source = "tfds"
  c.data.name = "mnist"
  c.model.features = (64, 128, 256, 512)
  c.negatives.per_class = 20
  c.pool.rounds = 30
  c.eval.every_rounds = 5
  if variant == "cpu":
    c.rounds = 8
    c.data.max_train = 2000
    c.model.features = (32, 64, 128, 256)
    c.pool.rounds = 8
    c.train.epochs_per_round = 2.0
    c.train.decay_round = 6
    c.eval.every_rounds = 2
  elif variant == "full":
    c.rounds = 10
    c.model.features = (32, 64, 128, 256)
    c.pool.rounds = 10
    c.train.epochs_per_round = 1.0
    c.train.decay_round = 8
    c.eval.every_rounds = 5
  elif variant:
    raise ValueError(f"Unknown variant {variant!r} of icl_mnist.py; use "
                     "'cpu', 'full' or none.")
  return c
