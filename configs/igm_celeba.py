"""IGM on faces (IGM §4.3): IGM (a new critic every round), or IGM-single.

    python -m introjax.main --config=configs/igm_celeba.py --workdir=runs/igm_faces

§4.3's settings: the DCGAN critic (LayerNorm for BatchNorm, so synthesis
does not depend on the batch), classification by SGD at lr 0.01 on batches
of 50 positives + 50 negatives, synthesis by Adam at lr 0.01 and β1 = 0.5
from N(0, 0.3²), each sample stopping once it has crossed the decision
boundary: the mean probability of "positive" over its last 20 steps above
0.5 (synthesis.stop="windowed", as texture IGM; "logit" stops at the first
step past it).

Variants, chosen after a colon:
  (none)   the laptop default, offline: the same 100 grey LFW faces at
           32×32 as configs/winn_celeba.py, a three-layer half-width
           critic, 32 negatives per round, 40 rounds with the windowed
           stop; about 4 minutes on 2 cores (SWD to real faces 161 → 59;
           faces under some noise, see BENCHMARKS.md).
  celeba   TFDS `celeb_a`, the centre 64×64 of each photo (§4.3), a
           four-layer critic.
  paper    §4.3 on CelebA: the full DCGAN critic (64…512), batches of
           50 + 50, 200 negatives per round, 12 rounds (WINN §5.3 compares
           against INNg with 12 CNNs). Meant for an accelerator.
  tiny     16×16 faces and a few steps, for tests.
--config.cascade.single=True gives IGM-single. The workdir gets the same
checkpoints/, metrics.jsonl and samples/ as a WINN run.
"""
import ml_collections

from introjax import config_parts


def get_config(variant=""):
  c = ml_collections.ConfigDict()
  c.trainer = "igm_images"
  c.seed = 0
  c.rounds = 40                  # SWD 80 after 20 rounds, 59 after 40
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
  c.model.name = "dcgan"
  c.model.features = (32, 64, 128)
  c.model.kernel_size = 5
  c.model.norm = "layer"

  c.cascade = ml_collections.ConfigDict()
  c.cascade.single = False       # IGM-single: one critic, synthesis from noise
  c.cascade.single_steps = 1000  # its synthesis.max_steps (igm_texture.py)

  c.negatives = ml_collections.ConfigDict()
  c.negatives.per_round = 32

  c.p0 = ml_collections.ConfigDict()
  c.p0.name = "gaussian"         # p0 = N(0, std²)
  c.p0.std = 0.3

  c.pool = ml_collections.ConfigDict()
  c.pool.rounds = 11             # keeps p0's samples and every round's
  c.pool.recency_decay = 0.7     # weight of a negative `a` rounds old: decay**a

  c.train = ml_collections.ConfigDict()
  c.train.optimizer = "sgd"
  c.train.learning_rate = 0.01
  c.train.momentum = 0.0
  c.train.batch_size = 32        # positives (and as many negatives) per step
  c.train.max_steps = 150
  c.train.loss_target = 0.005    # stop early once the smoothed loss is this low

  c.synthesis = ml_collections.ConfigDict()
  c.synthesis.optimizer = "adam"  # §4.3: Adam lr 0.01, β1 = 0.5
  c.synthesis.learning_rate = 0.01
  c.synthesis.b1 = 0.5
  c.synthesis.b2 = 0.999
  c.synthesis.noise_std = 0.0
  c.synthesis.clip = 1.0
  c.synthesis.max_steps = 100
  # §4.3 stops "when the pseudo-negatives cross the decision boundary". As
  # the first step past it ("logit") each round moved the faces 5–8 Adam
  # steps and 10 rounds left noise (SWD 139); the texture IGM's reading,
  # mean P(positive) over the last `window` steps > 0.5, moves them ~10–20
  # steps and 40 rounds draw faces (SWD 59; BENCHMARKS.md).
  c.synthesis.stop = "windowed"  # windowed | logit | fixed
  c.synthesis.stop_probability = 0.5
  c.synthesis.window = 20

  c.generate = ml_collections.ConfigDict()
  c.generate.num_images = 64     # the final grid, at the images' size

  c.log = ml_collections.ConfigDict()
  c.log.num_samples = 32

  c.eval = ml_collections.ConfigDict()
  c.eval.per_round = "swd"       # SWD to real images (eval/evaluators.py)

  if variant in ("celeba", "paper"):
    c.data.source, c.data.name = "tfds", "celeb_a"
    c.data.crop = c.data.image_size = 64
    c.model.features = (32, 64, 128, 256)
  if variant == "paper":
    c.rounds = 12
    c.model.features = (64, 128, 256, 512)
    c.negatives.per_round = 200
    c.pool.rounds = 13
    c.train.batch_size = 50
    c.train.max_steps = 1000
    c.synthesis.max_steps = 500
    c.log.num_samples = 64
  elif variant == "tiny":
    c.rounds = 2
    c.data.image_size = 16
    c.data.max_images = 64
    c.model.features = (8, 16)
    c.negatives.per_round = 8
    c.pool.rounds = 3
    c.train.batch_size = 8
    c.train.max_steps = 30
    c.synthesis.max_steps = c.cascade.single_steps = 15
    c.synthesis.stop = "logit"
    c.generate.num_images = 4
    c.log.num_samples = 4
  elif variant not in ("", "celeba", "paper"):
    raise ValueError(f"Unknown variant {variant!r} of igm_celeba.py; use "
                     "'celeba', 'paper', 'tiny' or none.")
  return config_parts.complete(c)
