"""Introspective classifier learning (ICL §3–4) on scikit-learn's bundled
8×8 digits: the offline default, a few minutes on a laptop CPU.

    python -m introjax.main --config=configs/icl_digits.py --workdir=runs/icl_digits

Trains the baseline CNN, ICL-noise and ICL with the same network, schedule
and initial weights, then writes results.md / results.json (test errors and
the two-way FGSM table) in the workdir. The MNIST, CIFAR-10 and SVHN configs
start from this one. Variants after a colon:
  (none)   the laptop default above
  tiny     a few steps, for tests
Useful overrides: --config.icl.mode=one_vs_all (or binary, with
--config.icl.positive_class=3), --config.icl.variants="('baseline','icl')",
--config.seed=1.
"""
import ml_collections

from introjax import config_parts


def get_config(variant=""):
  c = ml_collections.ConfigDict()
  c.trainer = "icl"
  c.seed = 0                     # initial weights, batches, synthesis
  c.rounds = 10
  c.dtype = "float32"

  c.data = ml_collections.ConfigDict()
  c.data.source = "digits"       # digits | npz | tfds
  c.data.name = ""               # the TFDS name for source=tfds
  c.data.npz_path = ""           # a Keras-layout mnist.npz for source=npz
  c.data.data_dir = ""           # TFDS data_dir ("" : TFDS's default)
  c.data.train_split = "train"
  c.data.test_split = "test"
  c.data.num_classes = 10
  c.data.max_train = 0           # 0: all; N: the first N (reduced schedules)
  c.data.max_test = 0
  c.data.seed = 0                # the digits train/test split (fixed across
                                 # seeds, so seeds are compared on one test set)
  c.data.augment = False         # pad 4, random crop, random flip (CIFAR-10)

  c.model = ml_collections.ConfigDict()
  c.model.name = "icl_conv"      # ICL §4.1: 4 conv 5×5 stride 2, LeakyReLU
  c.model.features = (32, 64, 128, 256)
  c.model.kernel_size = 5

  c.icl = ml_collections.ConfigDict()
  c.icl.mode = "softmax"         # softmax (eq. 11) | one_vs_all | binary
  c.icl.variants = ("baseline", "icl_noise", "icl")
  c.icl.positive_class = 0       # the positive class of mode=binary

  c.negatives = ml_collections.ConfigDict()
  c.negatives.per_class = 20     # l: pseudo-negatives per class per round

  c.p0 = ml_collections.ConfigDict()
  c.p0.name = "gaussian"         # p_r (sampling/p0.py)
  c.p0.std = 0.3                 # p_r = N(0, std²)

  c.pool = ml_collections.ConfigDict()
  c.pool.rounds = 10             # rounds of pseudo-negatives the pool keeps

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 64        # ICL §4: 64 (MNIST), 128 (CIFAR-10, SVHN)
  c.train.optimizer = "sgd"      # sgd (ICL §4) | adam (WINN §5.6)
  c.train.learning_rate = 0.01
  c.train.momentum = 0.9         # sgd
  c.train.b1 = 0.0               # adam (WINN §5.6: β1 = 0, β2 = 0.9)
  c.train.b2 = 0.9
  c.train.weight_decay = 0.0
  c.train.epochs_per_round = 5.0  # SGD epochs over data ∪ pool per round
  c.train.decay_round = 20       # ×decay_factor from this round on (0: never)
  c.train.decay_factor = 0.1

  c.synthesis = ml_collections.ConfigDict()
  c.synthesis.optimizer = "adam"
  c.synthesis.learning_rate = 0.01
  c.synthesis.b1 = 0.5
  c.synthesis.b2 = 0.999
  c.synthesis.noise_std = 0.0
  c.synthesis.clip = 1.0
  c.synthesis.max_steps = 200    # the cap ICL sets by cross-validation
  c.synthesis.stop = "logit"     # stop once classified positive for its class
  c.synthesis.window = 20
  c.synthesis.stop_probability = 0.5

  # The winn variant (WINN §5.6; configs/winn_mnist_cls.py runs it).
  c.winn = ml_collections.ConfigDict()
  c.winn.alpha = 0.01            # α: weight of the Wasserstein term
  c.winn.gp_weight = 10.0        # λ: gradient penalty
  c.winn.threshold_positives_per_class = 100  # early-stop thresholds from
  c.winn.synthesis = ml_collections.ConfigDict()  # these per-class logits
  c.winn.synthesis.optimizer = "adam"  # adam | sgd | langevin (§4.1)
  c.winn.synthesis.learning_rate = 0.02  # §5.6 (§5.1's generative: 0.01)
  c.winn.synthesis.b1 = 0.9
  c.winn.synthesis.b2 = 0.9      # the released supervised code's β2
  c.winn.synthesis.noise_std = 0.0
  c.winn.synthesis.clip = 1.0
  c.winn.synthesis.max_steps = 200
  c.winn.synthesis.anneal = 1.0  # langevin: step size × anneal per step
  c.winn.synthesis.langevin_noise = True

  c.eval = ml_collections.ConfigDict()
  c.eval.per_round = "test_error"  # evaluators by name (eval/evaluators.py),
  c.eval.final = "test_error,fgsm"  # final: into results.md / results.json
  c.eval.every_rounds = 1        # per_round's metrics every N rounds
  c.eval.batch_size = 500
  # FGSM step on the [-1, 1] scale: 0.25 here is ICL §4.1's 0.125 on [0, 1]
  # (and WINN §5.6's 0.25 on [-1, 1]).
  c.eval.fgsm_eps = 0.25

  c.log = ml_collections.ConfigDict()
  c.log.num_samples = 10         # pseudo-negatives per class in the PNGs

  if variant == "tiny":
    c.rounds = 2
    c.model.features = (8, 16)
    c.negatives.per_class = 4
    c.pool.rounds = 2
    c.train.batch_size = 32
    c.train.epochs_per_round = 3.0
    c.synthesis.max_steps = 10
    c.winn.synthesis.max_steps = 10
    c.winn.threshold_positives_per_class = 8
    c.data.max_train = 400
    c.data.max_test = 200
    c.eval.batch_size = 128
    c.log.num_samples = 4
  elif variant:
    raise ValueError(f"Unknown variant {variant!r} of icl_digits.py; use "
                     "'tiny' or none.")
  return config_parts.complete(c)
