"""WINN texture synthesis (WINN Algorithm 1, §5.1–5.2, App. C–D).

    python -m introjax.main --config=configs/winn_texture.py --workdir=runs/winn_brick

Variants, chosen after a colon:
  (none)   the laptop default: a 128×128 brick texture, 32×32 patches, a
           half-width App. C critic with three stages, 32 negatives per
           round, 20 rounds, a 256×256 final texture; 10.5 minutes on a
           shared 2-core CPU (SWD to real patches 164 → 59; real patches
           against each other: 40–49).
  paper    §5.1–5.2 as published: 256×256 source, 64×64 patches, the full
           App. C critic, batches of 50 positives + 50 negatives, k = 3
           passes over 10,000 images per round, 100 rounds, 1000 negatives
           per round from App. D's initialiser, synthesis up to 2000 Adam
           steps; the final 256×256 texture from a 320×320 working image
           with 200 patches per step. Meant for an accelerator.
  tiny     16×16 patches and a few steps, for tests.
Any field can be overridden, e.g. --config.cascade.critics=4 (with rounds a
multiple of it) for a cascade of 4 critics (eq. 8), or
--config.data.image_path=my_texture.jpg.
"""
import ml_collections

from introjax import config_parts


def get_config(variant=""):
  c = ml_collections.ConfigDict()
  c.trainer = "winn"
  c.seed = 0
  c.rounds = 20                  # Algorithm 1's iterations, over all cascades
  c.dtype = "float32"

  c.data = ml_collections.ConfigDict()
  c.data.texture = "brick"       # a scikit-image texture: brick, grass, gravel
  c.data.image_path = ""         # or any image file; overrides `texture`
  c.data.image_size = 128        # the source is resized to this (shorter side)
  c.data.pad = 16                # reflect-padding: the working canvas border
  c.data.channels = 0            # 0: as the image has; 1: grey; 3: RGB

  c.model = ml_collections.ConfigDict()
  c.model.name = "winn"          # App. C: 3×3 convs, Swish, LayerNorm, pools
  c.model.features = (16, 32, 32, 64, 64, 128)
  c.model.convs_per_stage = 2
  c.model.norm = "layer"

  c.data.patch_size = 32         # the critic's input

  c.cascade = ml_collections.ConfigDict()
  c.cascade.critics = 1          # K critics (eq. 8); 1: WINN-single

  c.negatives = ml_collections.ConfigDict()
  c.negatives.size = 32          # side of each pseudo-negative (§5.2: a patch)
  c.negatives.patches_per_image = 1   # patches per negative in both steps
  c.negatives.per_round = 32     # r in Algorithm 1

  c.p0 = ml_collections.ConfigDict()
  c.p0.name = "upsampling"       # App. D's network, or "gaussian"
  c.p0.std = 0.3                 # p0 = N(0, std²) when name="gaussian"

  c.pool = ml_collections.ConfigDict()
  c.pool.rounds = 21             # keeps p0's samples and every round's
  c.pool.recency_decay = 1.0     # uniform over the pool, as the authors' code

  c.train = ml_collections.ConfigDict()
  c.train.loss = "wgan_gp"       # eq. 5 + λ·gradient penalty
  c.train.gp_weight = 10.0       # λ
  c.train.optimizer = "adam"
  c.train.learning_rate = 1e-4
  c.train.b1 = 0.0
  c.train.b2 = 0.9
  # The released code multiplies the rate by 0.9 every 100 critic steps
  # (the paper is silent): train.schedule="step" does that (`:paper`).
  c.train.schedule = "constant"
  c.train.decay_every = 100
  c.train.decay_factor = 0.9
  c.train.batch_size = 32        # positives (and as many negatives) per step
  c.train.k = 3                  # passes per round (Algorithm 1's k)
  c.train.batches_per_pass = 5   # mini-batches per pass

  c.synthesis = ml_collections.ConfigDict()
  c.synthesis.optimizer = "adam"  # §5.1: Adam lr 0.01, β = (0.9, 0.99)
  c.synthesis.learning_rate = 0.01
  c.synthesis.b1 = 0.9
  c.synthesis.b2 = 0.99
  c.synthesis.noise_std = 0.0    # §4.1: no noise injection in practice
  c.synthesis.clip = 1.0
  c.synthesis.max_steps = 100
  c.synthesis.stop = "winn"      # per sample, threshold ~ U[min, max f(x⁺)]
  c.synthesis.threshold_positives = 50  # positives the thresholds come from
  c.synthesis.window = 20        # for stop="windowed"
  c.synthesis.stop_probability = 0.5  # for stop="windowed" or "logit"

  c.generate = ml_collections.ConfigDict()
  c.generate.size = 256          # the final texture, larger than the source
  c.generate.patches = 320       # patches of the (size + 2·pad)² working
                                 # canvas per step: each pixel ~4× covered
                                 # (other sizes keep this density)
  c.generate.num_images = 1

  c.log = ml_collections.ConfigDict()
  c.log.num_samples = 16         # negatives shown in each round's PNG

  c.eval = ml_collections.ConfigDict()
  c.eval.per_round = "swd"       # evaluators by name (eval/evaluators.py):
                                 # SWD to real patches; add fid with
                                 # eval.inception_weights (config_parts)

  if variant == "paper":
    c.rounds = 100               # the authors' iterations per cascade
    c.data.image_size, c.data.pad = 256, 32   # 320×320 working image
    c.model.features = (32, 64, 64, 128, 128, 256, 256, 512)   # Table 5
    c.data.patch_size = c.negatives.size = 64
    c.negatives.per_round = 1000
    c.pool.rounds = 101
    c.train.batch_size = 50
    c.train.batches_per_pass = 100   # 5000 positives + 5000 negatives
    c.train.schedule = "step"
    c.synthesis.max_steps = 2000
    c.generate.size = 256
    c.generate.patches = 200
  elif variant == "tiny":
    c.rounds = 3
    c.data.image_size, c.data.pad = 48, 8
    c.model.features, c.model.convs_per_stage = (8, 16), 1
    c.data.patch_size = c.negatives.size = 16
    c.negatives.per_round = 8
    c.pool.rounds = 4
    c.train.batch_size = 8
    c.train.k, c.train.batches_per_pass = 3, 4
    c.train.learning_rate = 1e-3   # learns within 3 rounds
    c.synthesis.max_steps = 40
    c.synthesis.threshold_positives = 8
    c.generate.size = 32
    c.generate.patches = 8
    c.log.num_samples = 4
  elif variant:
    raise ValueError(f"Unknown variant {variant!r} of winn_texture.py; use "
                     "'paper', 'tiny' or none.")
  return config_parts.complete(c)
