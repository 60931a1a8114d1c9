"""IntroVAE on CelebA, CelebA-HQ or LSUN bedroom at 64² … 1024² (§4.1).

    python -m introjax.main --config=configs/introvae_celeba.py:128 --workdir=runs/iv128

The variant is the resolution: 64, 128 (default), 256, 512, 1024. Each gets
Appendix B's network for that size (Table 3's 1024² widths, the first ones
dropped for smaller images) and §4.1's (latent, m, α, β):

  res.  latent  m    α     β       source
  64    256     110  0.25  0.5     not in §4.1: the 128² values
  128   256     110  0.25  0.5     §4.1
  256   512     120  0.25  0.05    §4.1
  512   512     90   0.25  0.0025  not in §4.1: the 1024² values
  1024  512     90   0.25  0.0025  §4.1

The official scripts differ (hhb072/IntroVAE, main.py and run_*.sh). Their
E weighs the hinge sum by ½·weight_neg and their G weighs its KL sum by
½·weight_kl, weight_kl being 1 in both scripts: so E's α is 0.5 in the
1024² script (m = 500, β = 0.01, batch 12) and 0.25 in the 256² one
(m = 120, β = 0.05, batch 16), while G's α is 0.5 in both. Ours uses one α
for both updates, as eq. 11–12 write it. Their code also uses BatchNorm;
ours has none (no train/eval modes to get wrong). Adam 2e-4, β (0.9, 0.999), batch 8, as
§4.1.

Data (TFDS, prepared beforehand; nothing is downloaded at training time):
  celeb_a (default ≤ 128²): the centre 178×178 square, resized.
  celeb_a_hq (256² and above; --config.data.name=celeb_a_hq/1024): a manual
      download — build it with `tfds build celeb_a_hq/1024 --manual_dir=DIR`
      after putting PGGAN's CelebA-HQ files in DIR (TFDS's celeb_a_hq page
      and README "IntroVAE" say how). Its one split of 30,000 is cut as the
      official scripts cut it: train[:29000] to train, train[29000:] held
      out.
  lsun/bedroom: --config.data.name=lsun/bedroom --config.data.eval_split=validation.
--config.dtype=bfloat16 runs the convolutions in bfloat16 (losses float32).
"""
import os

from introjax import config_parts
from introjax import config_utils

# resolution -> (App. B widths, latent, m, α, β)
SETTINGS = {
    64: ((64, 128, 256, 512), 256, 110, 0.25, 0.5),
    128: ((64, 128, 256, 512, 512), 256, 110, 0.25, 0.5),
    256: ((32, 64, 128, 256, 512, 512), 512, 120, 0.25, 0.05),
    512: ((32, 64, 128, 256, 512, 512, 512), 512, 90, 0.25, 0.0025),
    1024: ((16, 32, 64, 128, 256, 512, 512, 512), 512, 90, 0.25, 0.0025),
}


def get_config(variant=""):
  size = int(variant or 128)
  if size not in SETTINGS:
    raise ValueError(f"Unknown variant {variant!r} of introvae_celeba.py; "
                     f"use one of {', '.join(map(str, SETTINGS))}.")
  c = config_utils.load_config_file(
      os.path.join(os.path.dirname(__file__), "introvae_faces.py"))
  channels, latent, margin, alpha, beta = SETTINGS[size]
  c.data.source = "tfds"
  c.data.name = "celeb_a" if size <= 128 else f"celeb_a_hq/{size}"
  if size <= 128:
    c.data.split, c.data.eval_split = "train", "test"
  else:
    # celeb_a_hq has one split of 30,000: the official scripts train on the
    # first 29,000 (--trainsize=29000) and hold the last 1,000 out.
    c.data.split, c.data.eval_split = "train[:29000]", "train[29000:]"
  c.data.holdout = 1000 if size > 128 else 2000
  c.data.image_size = size
  c.data.channels = 3
  c.model.channels = channels
  c.model.latent_dim = latent
  c.introvae.margin = str(margin)
  c.introvae.alpha = alpha
  c.introvae.beta = beta
  c.introvae.pretrain_rounds = 1     # §4.1: 1–2 epochs as a plain VAE
  c.rounds = 50
  c.train.batch_size = 8
  c.train.epochs_per_round = 1
  c.train.learning_rate = 2e-4
  c.log.num_samples = 16
  c.eval.num_images = 256
  # Images per encode/decode call: 128 at 128², 2 at 1024² (one batch's
  # activations, not the 1,000 held-out images', are in memory at once).
  c.eval.batch_size = max(1, 128 ** 3 // size ** 2)
  return config_parts.complete(c)
