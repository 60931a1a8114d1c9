"""Building blocks every config file shares, so a setting the README offers
for any run exists in every config that can use it.

Each root config (igm_texture, winn_texture, igm_celeba, winn_celeba,
icl_digits; the others extend one of these) ends with `complete(c)`, which
adds what is missing and keeps what the file set:

  profile_round        every trainer: 0 off; N traces round N into
                       <workdir>/profile (alias --config.profile_steps)
  eval.inception_*     members that generate images (IGM, WINN, on textures
                       and image sets): FID and Inception score per round
                       once `eval.inception_weights` names the weights file
"""
import ml_collections

# Trainers whose rounds produce images that FID and IS can score.
_GENERATORS = ("igm", "winn", "igm_images", "winn_images")


def inception_eval():
  """eval.inception_*: off until `inception_weights` names pytorch-fid's
  pt_inception-2015-12-05-6726825d.pth or an .npz converted from it
  (README: "Inception score and FID"). Nothing is downloaded."""
  return {"inception_weights": "",
          "inception_splits": 10,   # Inception score parts (≤ the images)
          "inception_batch": 50}    # images per Inception forward pass


def complete(c):
  """Adds the shared settings `c` lacks; returns `c`."""
  if "profile_round" not in c:
    c.profile_round = 0
  if c.trainer in _GENERATORS:
    if "eval" not in c:
      c.eval = ml_collections.ConfigDict()
    for key, value in inception_eval().items():
      if key not in c.eval:
        c.eval[key] = value
  return c
