"""STIC on MNIST: ICL §4.1's 4-conv network (a STIC classifier needs no
particular network; §4's WRN-28-10 is configs/stic_cifar10.py's), 28×28
digits from TFDS or a Keras-layout mnist.npz. The whole training set and
STIC §4's schedule (10 passes of 5,000 Adam steps, batch 50) are meant for
an accelerator:

    python -m introjax.main --config=configs/stic_mnist.py --workdir=runs/stic_mnist \
        --config.data.source=npz --config.data.npz_path=/path/to/mnist.npz

Variant `cpu`: reduced for a 2-core CPU (the first 2,000 training images,
the whole test set, 10 passes of 300 steps, half-width network, 10 class
chains a class and 50 mixup chains), the schedule BENCHMARKS.md's MNIST
rows use.
"""
import os

from introjax import config_utils


def get_config(variant=""):
  c = config_utils.load_config_file(
      os.path.join(os.path.dirname(__file__), "stic_digits.py"))
  c.data.source = "tfds"
  c.data.name = "mnist"
  c.model.features = (64, 128, 256, 512)
  # 28 → 14 → 7 → 4 → 2: the Gram terms read the 7×7 and 4×4 maps.
  c.stic.gram_layers = ("conv1", "conv2")
  c.stic.steps_per_pass = 5000
  # Attentive-STIC: 12×12 glimpses of the 28×28 digits, a 7×7 decoder start.
  c.stic.attentive.glimpse = 12
  c.stic.attentive.glimpses = 6
  c.stic.attentive.hidden = 128
  c.stic.attentive.decoder_features = (128, 64)
  c.eval.judge_steps = 1000
  if variant == "cpu":
    c.data.max_train = 2000
    c.model.features = (32, 64, 128, 256)
    c.stic.steps_per_pass = 300
    c.stic.chains_per_class = 10
    c.stic.mixup_chains = 50
    c.eval.judge_steps = 500
  elif variant:
    raise ValueError(f"Unknown variant {variant!r} of stic_mnist.py; use "
                     "'cpu' or none.")
  return c
