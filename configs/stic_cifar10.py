"""STIC on CIFAR-10 with STIC §4's settings: WideResNet-28-10 without
BatchNorm, Adam, batch 50, 10 passes of 5,000 iterations, chains
re-initialised from uniform noise with p = 0.5, Gram matrices of conv21 …
conv28. Meant for an accelerator (TFDS `cifar10`).

    python -m introjax.main --config=configs/stic_cifar10.py --workdir=runs/stic_c10

The paper gives no learning rate or sampler step sizes; these follow JEM
(Adam lr 1e-4 for WRN-28-10 without BatchNorm) and the digits defaults
(ε1 = 0.1, ε3 = 0.01, 100 steps a pass). 500 class chains (50 a class)
and 250 mixup chains: every chain runs each pass, so their count sizes the
synthesis call's memory (WRN-28-10's activations for 750 images).
"""
import os

from introjax import config_utils


def get_config(variant=""):
  if variant:
    raise ValueError(f"Unknown variant {variant!r} of stic_cifar10.py.")
  c = config_utils.load_config_file(
      os.path.join(os.path.dirname(__file__), "stic_digits.py"))
  c.data.source = "tfds"
  c.data.name = "cifar10"
  c.data.augment = True
  c.model.name = "wrn"
  c.model.depth = 28
  c.model.widen = 10
  c.stic.steps_per_pass = 5000
  # Attentive-STIC: 12×12 glimpses of 32×32 images, a 4×4 decoder start.
  c.stic.attentive.glimpse = 12
  c.stic.attentive.glimpses = 8
  c.stic.attentive.hidden = 256
  c.stic.attentive.decoder_features = (256, 128, 64)
  c.stic.chains_per_class = 50
  c.stic.mixup_chains = 250
  c.stic.gram_layers = tuple(f"conv{i}" for i in range(21, 29))
  c.train.learning_rate = 1e-4
  c.eval.judge_steps = 2000
  c.eval.judge_features = (64, 128, 256)
  c.log.interpolate_classes = (3, 5)   # cat → dog
  return c
