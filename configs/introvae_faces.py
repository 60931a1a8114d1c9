"""IntroVAE on the bundled faces, offline (IntroVAE §3, Algorithm 1).

    python -m introjax.main --config=configs/introvae_faces.py --workdir=runs/introvae

Variants, chosen after a colon:
  (none)   scikit-image's 100 grey LFW faces (`lfw_subset`, 25×25, scaled up
           to 32×32); the last 20 are held out for the reconstruction error
           and SWD, 80 train. Appendix B's residual networks at 32²
           (channels 16, 32, 64), latent 32, batch 16; 5 rounds of VAE
           pre-training then IntroVAE with the margin the pre-training
           suggests (margin="auto"). A round is 10 epochs (50 iterations);
           20 rounds took 509 s of training on a shared 2-core CPU
           (BENCHMARKS.md).
  tiny     16×16 faces, narrow networks and a few iterations, for tests.
Objectives on the same networks and schedule:
  --config.introvae.alpha=0                       the plain VAE
  --config.introvae.objective=soft_introvae       Soft-IntroVAE

The workdir gets checkpoints/, metrics.jsonl (losses, the three KLs, the
margin, held-out reconstruction MSE, SWD and MS-SSIM of samples per round),
samples/round_NNN_{reconstructions,samples,interpolations}.png, and
results.json after the last round.
"""
import ml_collections

from introjax import config_parts


def base():
  """The fields every IntroVAE config has (introvae_mnist and
  introvae_celeba start from these)."""
  c = ml_collections.ConfigDict()
  c.trainer = "introvae"
  c.seed = 0
  c.rounds = 20
  c.dtype = "float32"            # or "bfloat16" (compute; losses float32)

  c.data = ml_collections.ConfigDict()
  c.data.source = "lfw_subset"   # bundled faces; "npz" or "tfds"
  c.data.name = ""               # the TFDS dataset when source="tfds"
  c.data.split = "train"         # training split (npz: train/test)
  c.data.eval_split = "test"     # npz/TFDS: where held-out images come from
  c.data.holdout = 20            # held-out images (faces: the last ones)
  c.data.data_dir = ""
  c.data.npz_path = ""
  c.data.max_images = 0          # 0: all
  c.data.crop = 0                # centre square first; 0: the largest
  c.data.image_size = 32         # must be 4·2^len(model.channels)
  c.data.channels = 0            # 0: as stored
  c.data.flip = False

  c.model = ml_collections.ConfigDict()
  c.model.channels = (16, 32, 64)    # App. B widths, one per halving
  c.model.latent_dim = 32

  c.introvae = ml_collections.ConfigDict()
  c.introvae.objective = "introvae"  # or "soft_introvae"
  c.introvae.margin = "auto"     # m (a number, as text or float) or "auto"
  c.introvae.alpha = 0.25        # §4.1 at every resolution
  # β·(pixels) near §4.1's (0.5·128²·3 ≈ 0.05·256²·3 ≈ 10⁴): 10 at 32²×1.
  c.introvae.beta = 10.0
  c.introvae.pretrain_rounds = 5     # α = 0 first (§4.1: 1–2 epochs)
  c.introvae.runaway_factor = 2.0    # KL runaway: L_REG(real) > this·m …
  c.introvae.collapse_ms_ssim = 0.9  # collapse: samples' MS-SSIM above this
  # Soft-IntroVAE (Daniel & Tamar 2021; their image defaults)
  c.introvae.beta_rec = 1.0
  c.introvae.beta_kl = 1.0
  c.introvae.beta_neg = 256.0
  c.introvae.gamma_r = 1e-8

  c.train = ml_collections.ConfigDict()
  c.train.optimizer = "adam"     # §4.1: Adam, lr 2e-4, β (0.9, 0.999)
  # 5× §4.1's 2e-4 so the CPU default learns faces in minutes.
  c.train.learning_rate = 1e-3
  c.train.b1 = 0.9
  c.train.b2 = 0.999
  c.train.batch_size = 16        # §4.1: 8
  c.train.epochs_per_round = 10

  c.log = ml_collections.ConfigDict()
  c.log.num_samples = 32         # images in each PNG

  c.eval = ml_collections.ConfigDict()
  c.eval.per_round = "swd,ms_ssim"
  c.eval.num_images = 64         # samples measured (≤ data.holdout used)
  return c


def get_config(variant=""):
  c = base()
  if variant == "tiny":
    c.rounds = 3
    c.data.image_size = 16
    c.data.holdout = 8
    c.model.channels = (8, 16)
    c.model.latent_dim = 8
    c.introvae.pretrain_rounds = 1
    c.train.batch_size = 8
    c.train.epochs_per_round = 3
    c.train.learning_rate = 3e-3   # learns within 3 short rounds
    c.log.num_samples = 8
    c.eval.num_images = 8
  elif variant:
    raise ValueError(f"Unknown variant {variant!r} of introvae_faces.py; use "
                     "'tiny' or none.")
  return config_parts.complete(c)
