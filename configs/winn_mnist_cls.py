"""WINN as a classifier (WINN §5.6, Tables 2–3): a baseline CNN and
WINN-single trained from the same initial weights on the same batches, then
test errors and the two-way FGSM table in results.md / results.json.

    python -m introjax.main --config=configs/winn_mnist_cls.py --workdir=runs/winn_cls

The loss (introjax/objectives/wasserstein.py, `winn_classifier_loss`) is
softmax cross-entropy on the data + α·(E f(x⁻) − E f(x⁺) + λ·GP), α = 0.01,
λ = 10, with class k's logit as its critic; see introjax/training/icl.py
for the variant. Variants after a colon:
  (none)   offline default: scikit-learn's bundled 8×8 digits, a few
           minutes on a laptop CPU
  mnist    §5.6's MNIST schedule through TFDS (or a Keras mnist.npz with
           --config.data.source=npz --config.data.npz_path=/path/mnist.npz);
           meant for an accelerator
  cpu      MNIST reduced for a 2-core CPU: the first 2,000 training images,
           the whole test set, 8 rounds (TFDS or npz as for `mnist`)
  full     all 60,000 MNIST training images on a 2-core CPU in under an
           hour: 8 rounds of 1 epoch, 20 pseudo-negatives per class per
           round (up to 200 ascent steps), all kept
  tiny     a few steps, for tests
Useful overrides: --config.icl.variants="('baseline','icl','winn')" adds
ICL (trained with the same optimiser), --config.winn.alpha=0.0 reduces
WINN's loss to the baseline's, --config.winn.synthesis.optimizer=langevin,
--config.seed=1.

Settings from §5.6: Adam lr 0.001, β1 = 0 (β2 = 0.9, the released code's)
for the classifier; Adam lr 0.02, β1 = 0.9 for synthesis; FGSM on [−1, 1]
with ε = 0.25, which the released FGSM code calls "equivalent to epsilon
0.125 in FGSM paper" ([0, 1] images) — the paper's text quotes 0.125.
Pseudo-negatives start from N(0, 0.3²) (§4.1 allows a Gaussian p0; the
released code starts from App. D's random up-sampling net).
"""
import os

from introjax import config_utils


def get_config(variant=""):
  c = config_utils.load_config_file(
      os.path.join(os.path.dirname(__file__), "icl_digits.py"))
  c.icl.variants = ("baseline", "winn")
  c.train.optimizer = "adam"
  c.train.learning_rate = 0.001
  c.train.b1, c.train.b2 = 0.0, 0.9
  c.train.decay_round = 0        # §5.6: a fixed learning rate
  c.train.batch_size = 100       # §5.1 / the released code
  c.rounds = 10
  c.pool.rounds = 10         # keep every round's pseudo-negatives
  c.eval.fgsm_eps = 0.25
  if variant == "tiny":
    c.rounds = 2
    c.model.features = (8, 16)
    c.negatives.per_class = 4
    c.pool.rounds = 2
    c.train.batch_size = 32
    c.train.epochs_per_round = 3.0
    c.train.learning_rate = 0.003
    c.winn.synthesis.max_steps = 10
    c.winn.threshold_positives_per_class = 8
    c.data.max_train = 400
    c.data.max_test = 200
    c.eval.batch_size = 128
    c.log.num_samples = 4
  elif variant in ("mnist", "cpu", "full"):
    c.data.source = "tfds"
    c.data.name = "mnist"
    # "A vanilla network resembling [ICN] ... less filters": ICL's 4 convs
    # at half ICN's width.
    c.model.features = (32, 64, 128, 256)
    if variant == "mnist":
      # The released code: 200 epochs, each one pass over the data and 100
      # new pseudo-negatives per class (up to 2,000 ascent steps), all kept.
      c.rounds = 200
      c.train.epochs_per_round = 1.0
      c.negatives.per_class = 100
      c.pool.rounds = 200
      c.winn.synthesis.max_steps = 2000
      c.eval.every_rounds = 10
    elif variant == "full":
      c.rounds = 8
      c.train.epochs_per_round = 1.0
      c.pool.rounds = 8
      c.eval.every_rounds = 4
    else:
      c.rounds = 8
      c.data.max_train = 2000
      c.train.epochs_per_round = 2.0
      c.pool.rounds = 8
      c.eval.every_rounds = 2
  elif variant:
    raise ValueError(f"Unknown variant {variant!r} of winn_mnist_cls.py; use "
                     "'mnist', 'cpu', 'full', 'tiny' or none.")
  return c
