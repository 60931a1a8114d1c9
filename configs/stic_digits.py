"""STIC (Synthesize-It-Classifier) on scikit-learn's bundled 8×8 digits: the
offline default, a few minutes on a laptop CPU.

    python -m introjax.main --config=configs/stic_digits.py --workdir=runs/stic

Trains the ERM baseline, STIC-ERM (no mixup) and STIC from the same initial
weights on the same real batches (introjax/training/stic.py), writes per-pass
grids of the class-conditional and mixup-conditional chains and, after the
last pass, a class-interpolation grid into <workdir>/samples, and results.md
/ results.json (test errors, the FGSM table, and each sampler's SWD, Cls_R
and Cls_G). The MNIST and CIFAR-10 configs start from this one. Variants:
  (none)   the laptop default above
  tiny     a few steps, for tests
Useful overrides: --config.stic.sampler=sgld (JEM's SGLD on the same chains),
--config.synthesis.metropolis=True (MALA with the Metropolis–Hastings test),
--config.stic.variants="('stic',)", --config.seed=1; the §5 variants:
--config.stic.variants="('stic','score_stic','attentive_stic')".
"""
import ml_collections

from introjax import config_parts


def get_config(variant=""):
  c = ml_collections.ConfigDict()
  c.trainer = "stic"
  c.seed = 0                     # initial weights, batches, chains
  c.rounds = 10                  # passes τ (STIC §4: 10)
  c.dtype = "float32"

  c.data = ml_collections.ConfigDict()
  c.data.source = "digits"       # digits | npz | tfds
  c.data.name = ""
  c.data.npz_path = ""
  c.data.data_dir = ""
  c.data.train_split = "train"
  c.data.test_split = "test"
  c.data.num_classes = 10
  c.data.max_train = 0
  c.data.max_test = 0
  c.data.seed = 0
  c.data.augment = False

  c.model = ml_collections.ConfigDict()
  c.model.name = "icl_conv"      # icl_conv | resnet32 | wrn (STIC §4)
  c.model.features = (32, 64, 128, 256)
  c.model.kernel_size = 5
  c.model.depth = 28             # wrn
  c.model.widen = 10             # wrn

  c.stic = ml_collections.ConfigDict()
  c.stic.variants = ("erm", "stic_erm", "stic")
  c.stic.steps_per_pass = 300    # Adam iterations per pass (STIC §4: 5,000)
  c.stic.mixup_alpha = 1.0       # λ ~ Beta(α, α)
  c.stic.chains_per_class = 20   # class-conditioned persistent chains
  c.stic.mixup_chains = 100      # mixup-conditioned chains (stic only)
  c.stic.restart_probability = 0.5   # STIC §4: re-initialised with p = 0.5
  c.stic.sampler = "grmala"      # grmala (STIC eq. 3) | sgld (JEM)
  c.stic.gram_layers = ("conv0",)  # see the README: a 2×2 map's Gram copies its image
  c.stic.gram_weight = 3.0       # ε2 / ε1 (on relative Gram distances)
  c.stic.references_per_class = 10   # real images saved for introjax.sample
  # Score-STIC (stic.variants "score_stic", STIC §5)
  c.stic.score = ml_collections.ConfigDict()
  # shared: one last layer gives s(x) and the K + 1 logits; on_score: a
  # Dense layer from s(x) to the logits (models/classifiers.ScoreClassifier)
  c.stic.score.head = "shared"
  # The regulariser's weight. Its optimum, the noisy data's score, is steep
  # (∇ₓs ≈ −I/σ²); at 0.01 the shared trunk followed it and from pass 7 the
  # chains fell apart; at 0.001 they hold for 20 passes (BENCHMARKS.md).
  c.stic.score.weight = 0.001
  c.stic.score.trace = "hutchinson"   # tr ∇ₓs: hutchinson | exact (D passes)
  c.stic.score.projections = 1   # Hutchinson probes per image
  c.stic.score.data_noise = 0.1  # σ of the noise on x in it (0: as written)
  c.stic.score.guidance = 0.05   # s(x)'s weight in the chains: ε1·0.05 ≈ σ²/2
  # Attentive-STIC (stic.variants "attentive_stic", STIC §5)
  c.stic.attentive = ml_collections.ConfigDict()
  c.stic.attentive.glimpse = 4   # N: an N × N DRAW glimpse (≤ the image)
  c.stic.attentive.glimpses = 4  # glimpses the LSTM encoder reads
  c.stic.attentive.hidden = 64   # LSTM width = the features f
  c.stic.attentive.decoder_features = (64, 32)   # DCGAN decoder widths
  c.stic.attentive.reconstruction_weight = 1.0
  c.stic.attentive.gram_weight = 1.0   # GRMALA's Gram term on f

  c.p0 = ml_collections.ConfigDict()
  c.p0.name = "uniform"          # chains (re)start from U[-1, 1]

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 50        # STIC §4: 50 (real; as many mixup and fakes)
  c.train.optimizer = "adam"
  c.train.learning_rate = 0.001
  c.train.b1 = 0.9
  c.train.b2 = 0.999
  c.train.weight_decay = 0.0

  c.synthesis = ml_collections.ConfigDict()
  c.synthesis.optimizer = "grmala"
  c.synthesis.learning_rate = 0.1    # ε1
  c.synthesis.proposal_noise = 0.01  # ε3
  c.synthesis.metropolis = False     # MALA-approx as written
  c.synthesis.b1 = 0.0               # (unused by grmala)
  c.synthesis.b2 = 0.0
  c.synthesis.noise_std = 0.0
  c.synthesis.clip = 1.0
  c.synthesis.max_steps = 100    # sampler steps per chain per pass
  c.synthesis.stop = "fixed"     # STIC: a fixed step count
  c.synthesis.window = 20
  c.synthesis.stop_probability = 0.5

  c.eval = ml_collections.ConfigDict()
  c.eval.per_round = "test_error"
  c.eval.final = "test_error,fgsm,swd,cls_r,cls_g"
  c.eval.every_rounds = 1
  c.eval.batch_size = 500
  c.eval.fgsm_eps = 0.25
  c.eval.judge_steps = 500       # Cls_R / Cls_G judges' Adam steps
  c.eval.judge_features = (32, 64, 128)

  c.log = ml_collections.ConfigDict()
  c.log.num_samples = 10         # chains per class in the PNGs
  c.log.interpolate_classes = (0, 6)
  c.log.interpolation_steps = 8

  if variant == "tiny":
    c.rounds = 2
    c.model.features = (8, 16)
    c.stic.steps_per_pass = 20
    c.stic.chains_per_class = 2
    c.stic.mixup_chains = 4
    c.stic.references_per_class = 2
    c.stic.attentive.glimpse = 3
    c.stic.attentive.glimpses = 2
    c.stic.attentive.hidden = 16
    c.stic.attentive.decoder_features = (16, 8)
    c.train.batch_size = 16
    c.synthesis.max_steps = 5
    c.data.max_train = 400
    c.data.max_test = 200
    c.eval.batch_size = 100
    c.eval.judge_steps = 20
    c.eval.judge_features = (8, 16)
    c.log.num_samples = 2
    c.log.interpolation_steps = 4
  elif variant:
    raise ValueError(f"Unknown variant {variant!r} of stic_digits.py; use "
                     "'tiny' or none.")
  return config_parts.complete(c)
