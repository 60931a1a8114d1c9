"""WINN on faces (WINN §5.3, App. C–D): WINN-single, or WINN with K critics.

    python -m introjax.main --config=configs/winn_celeba.py --workdir=runs/winn_faces

Variants, chosen after a colon:
  (none)   the laptop default, offline: scikit-image's 100 grey LFW faces
           (`lfw_subset`, 25×25, scaled up to 32×32), a half-width App. C
           critic with three stages, 32 negatives per round, 10 rounds, a
           final grid of 64 new faces; about 6 minutes on a shared 2-core
           CPU (SWD 222 → 182, measured on the set with its 100
           non-faces; see BENCHMARKS.md).
  celeba   the same training on TFDS `celeb_a` (train split), the centre
           64×64 of each 218×178 photo as IGM §4.3 crops it, a four-stage
           critic. Needs the dataset prepared (the error says how).
  paper    §5.1 and §5.3 as published on CelebA: the full Table 5 critic,
           batches of 50 positives + 50 negatives, k = 3 passes over 10,000
           images per round, 1000 negatives per round from App. D's
           initialiser, synthesis up to 2000 Adam steps, 100 rounds. Meant
           for an accelerator.
  tiny     16×16 faces and a few steps, for tests.
Any field can be overridden, e.g. --config.cascade.critics=4 (rounds a multiple
of it) for WINN-4CNNs, --config.data.max_images=20000 to keep fewer images.

The workdir gets checkpoints/ (every critic, the pool, optimiser state),
metrics.jsonl (per round, with the sliced Wasserstein distance to real
images), and samples/: round_NNN.png (that round's pseudo-negatives) and
final_SxS.png (new images climbed from p0 through the cascade).
"""
import os

import ml_collections

from introjax import config_parts
from introjax import config_utils


def get_config(variant=""):
  c = ml_collections.ConfigDict()
  c.trainer = "winn_images"
  c.seed = 0
  c.rounds = 10                  # Algorithm 1's iterations, over all cascades
  c.dtype = "float32"

  c.data = ml_collections.ConfigDict()
  c.data.source = "lfw_subset"   # bundled faces; or "tfds"
  c.data.name = ""               # the TFDS dataset when source="tfds"
  c.data.split = "train"         # TFDS split(s), "+"-joined
  c.data.data_dir = ""           # "" is TFDS's default
  c.data.max_images = 0          # 0: all
  c.data.crop = 0                # centre square cut first; 0: the largest
  c.data.image_size = 32         # then resized to this (see datasets.py)
  c.data.channels = 0            # 0: as stored; 1: grey; 3: RGB
  c.data.flip = False            # random left-right mirroring of positives

  c.model = ml_collections.ConfigDict()
  c.model.name = "winn"          # App. C: 3×3 convs, Swish, LayerNorm, pools
  c.model.features = (16, 32, 32, 64, 64, 128)
  c.model.convs_per_stage = 2
  c.model.norm = "layer"

  c.cascade = ml_collections.ConfigDict()
  c.cascade.critics = 1          # K critics (eq. 8); 1: WINN-single

  c.negatives = ml_collections.ConfigDict()
  c.negatives.per_round = 32     # r in Algorithm 1

  c.p0 = ml_collections.ConfigDict()
  c.p0.name = "upsampling"       # App. D's network, or "gaussian"
  c.p0.std = 0.3                 # p0 = N(0, std²) when name="gaussian"

  c.pool = ml_collections.ConfigDict()
  c.pool.rounds = 11             # keeps p0's samples and every round's
  c.pool.recency_decay = 1.0     # uniform over the pool

  # §5.1's critic training (WGAN-GP, Adam 1e-4) and synthesis (Adam 0.01,
  # per-sample thresholds) are the same for faces as for textures.
  texture = config_utils.load_config_file(
      os.path.join(os.path.dirname(__file__), "winn_texture.py"))
  c.train = texture.train
  c.synthesis = texture.synthesis

  c.generate = ml_collections.ConfigDict()
  c.generate.num_images = 64     # the final grid, at the images' size

  c.log = ml_collections.ConfigDict()
  c.log.num_samples = 32         # negatives shown in each round's PNG

  c.eval = ml_collections.ConfigDict()
  c.eval.per_round = "swd"       # SWD to real images (eval/evaluators.py)

  if variant in ("celeba", "paper"):
    c.data.source, c.data.name = "tfds", "celeb_a"
    c.data.crop = c.data.image_size = 64
    c.model.features = (16, 32, 32, 64, 64, 128, 128, 256)
  if variant == "paper":
    c.rounds = 100
    c.model.features = (32, 64, 64, 128, 128, 256, 256, 512)   # Table 5
    c.negatives.per_round = 1000
    c.pool.rounds = 101
    c.train.batch_size = 50
    c.train.batches_per_pass = 100   # 5000 positives + 5000 negatives
    c.synthesis.max_steps = 2000
    c.log.num_samples = 64
  elif variant == "tiny":
    c.rounds = 3
    c.data.image_size = 16
    c.data.max_images = 64
    c.model.features, c.model.convs_per_stage = (8, 16), 1
    c.negatives.per_round = 8
    c.pool.rounds = 4
    c.train.batch_size = 8
    c.train.k, c.train.batches_per_pass = 3, 4
    c.train.learning_rate = 1e-3   # learns within 3 rounds
    c.synthesis.max_steps = 40
    c.synthesis.threshold_positives = 8
    c.generate.num_images = 4
    c.log.num_samples = 4
  elif variant not in ("", "celeba", "paper"):
    raise ValueError(f"Unknown variant {variant!r} of winn_celeba.py; use "
                     "'celeba', 'paper', 'tiny' or none.")
  return config_parts.complete(c)
