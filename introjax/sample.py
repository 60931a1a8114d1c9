r"""Samples from a trained IGM model without training.

New textures of any size from the saved cascade:

    python -m introjax.sample --workdir=runs/brick --size=512 --num_images=4

Style transfer (IGM §4.2): a content image rendered in the learned texture's
style, minimising α·||I_style − I||² − (1−α)·ln p_style(I_style):

    python -m introjax.sample --workdir=runs/brick --content=astronaut \
        --alpha=0.3

`--content` is a bundled scikit-image picture (astronaut, camera, coffee,
chelsea, rocket) or an image file.

Class-conditional samples from a STIC workdir (a row per class, or one
class with --class_label), each chain from U[-1, 1] through the saved
classifier's sampler for --steps steps:

    python -m introjax.sample --workdir=runs/stic --num_images=8 --steps=200

From an IntroVAE workdir: new images G(z), reconstructions of held-out
images beside them and latent interpolations between real images (Fig. 6),
three PNGs named <out>_samples.png, _reconstructions.png and
_interpolations.png (default <workdir>/samples/sample_seed<S>_*):

    python -m introjax.sample --workdir=runs/introvae --num_images=64

Images go to <workdir>/samples unless --out names a PNG path.
"""
import os

from absl import flags
from absl import logging
import jax

from introjax import cli
from introjax.data import images as image_data
from introjax.errors import UserError
from introjax.eval.images import save_grid
from introjax.models import cascade as cascade_lib
from introjax.saved import load_classifier, load_model, saved_trainer
from introjax.training import harness
from introjax.training import introvae

_WORKDIR = flags.DEFINE_string("workdir", None, "A training workdir.",
                               required=True)
_ROUND = flags.DEFINE_integer("round", None, "Checkpoint round to use "
                              "(default: the latest).")
_SIZE = flags.DEFINE_integer("size", None, "Side of each new texture "
                             "(default: the config's generate.size).")
_NUM = flags.DEFINE_integer("num_images", 1, "How many textures.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_CONTENT = flags.DEFINE_string("content", None, "Style transfer: the content "
                               "image (bundled name or path).")
_ALPHA = flags.DEFINE_float("alpha", None, "Style transfer: weight of the L2 "
                            "fidelity term (default: the config's style.alpha).")
_STEPS = flags.DEFINE_integer("style_steps", None, "Style transfer: ascent "
                              "steps per critic (default: style.steps).")
_CONTENT_SIZE = flags.DEFINE_integer("content_size", 256, "Style transfer: the "
                                     "content image's shorter side.")
_OUT = flags.DEFINE_string("out", None, "PNG path to write.")
_CRITICS = flags.DEFINE_integer("critics", None, "Use only the cascade's "
                                "first N critics (default: all).")
_CLASS = flags.DEFINE_integer("class_label", None, "STIC: the class to draw "
                              "(default: every class, a row each).")
_VARIANT = flags.DEFINE_string("variant", "stic", "STIC: which of the run's "
                               "classifiers (stic, stic_erm, erm, score_stic, "
                               "attentive_stic).")
_SAMPLE_STEPS = flags.DEFINE_integer("steps", None, "STIC: sampler steps "
                                     "(default: the config's "
                                     "synthesis.max_steps).")


def sample_stic(workdir):
  """Class-conditional samples from a STIC workdir (module docstring)."""
  model, params, references, round_index = load_classifier(workdir,
                                                           _ROUND.value)
  if _VARIANT.value not in params:
    raise UserError(f"{workdir} holds the classifiers "
                    f"{', '.join(params)}; choose one with --variant.")
  classes = (list(range(model.k)) if _CLASS.value is None
             else [_CLASS.value])
  if not all(0 <= c < model.k for c in classes):
    raise UserError(f"--class_label={_CLASS.value} is not a class of this "
                    f"model (0 … {model.k - 1}).")
  steps = _SAMPLE_STEPS.value or model.settings.max_steps
  images, _ = model.sample_classes(params[_VARIANT.value], references,
                                   classes, _NUM.value, steps,
                                   jax.random.PRNGKey(_SEED.value),
                                   variant=_VARIANT.value)
  which = "all" if _CLASS.value is None else f"class{_CLASS.value}"
  out = _OUT.value or os.path.join(
      harness.samples_dir(workdir),
      f"sample_{_VARIANT.value}_{which}_seed{_SEED.value}.png")
  save_grid(out, images, columns=_NUM.value, scale=model.display_scale)
  logging.info("Drew %d sample(s) per class of %s with pass %d's %s "
               "classifier (%d sampler steps): %s", _NUM.value,
               "every class" if _CLASS.value is None else f"class {classes[0]}",
               round_index, _VARIANT.value, steps, out)


def main(argv):
  del argv
  trainer = saved_trainer(_WORKDIR.value)
  if trainer == "stic":
    return sample_stic(_WORKDIR.value)
  if trainer == "introvae":
    num = _NUM.value if flags.FLAGS["num_images"].present else 64
    prefix = os.path.splitext(_OUT.value)[0] if _OUT.value else None
    introvae.sample_workdir(_WORKDIR.value, _ROUND.value, num, _SEED.value,
                            prefix)
    return
  model, cascade, round_index = load_model(_WORKDIR.value, _ROUND.value)
  config = model.config
  key = jax.random.PRNGKey(_SEED.value)
  if _CRITICS.value is not None:
    cascade = cascade_lib.first(cascade, _CRITICS.value)
  num_critics = int(cascade.count)
  if _CONTENT.value:
    content = image_data.load_image(_CONTENT.value, size=_CONTENT_SIZE.value,
                                    channels=model.canvas_shape[2])
    alpha = config.style.alpha if _ALPHA.value is None else _ALPHA.value
    steps = config.style.steps if _STEPS.value is None else _STEPS.value
    image, _ = model.stylize(cascade, content, alpha, steps, key)
    name = os.path.splitext(os.path.basename(_CONTENT.value))[0]
    out = _OUT.value or os.path.join(harness.samples_dir(_WORKDIR.value),
                                     f"style_{name}.png")
    save_grid(out, jax.device_get(image)[None])
    logging.info("Stylized %r with round %d's %d critic(s) (α=%g, %d steps "
                 "each): %s", _CONTENT.value, round_index, num_critics, alpha,
                 steps, out)
    return
  # Image models default to their images' size.
  size = (_SIZE.value or config.generate.get("size", 0)
          or model.negative_shape[0])
  textures, _ = model.generate(cascade, _NUM.value, size, key)
  out = _OUT.value or os.path.join(harness.samples_dir(_WORKDIR.value),
                                   f"sample_{size}x{size}_seed{_SEED.value}.png")
  save_grid(out, jax.device_get(textures))
  logging.info("Synthesized %d image(s) of %d×%d with round %d's %d "
               "critic(s): %s", _NUM.value, size, size, round_index,
               num_critics, out)


def run(argv=None):
  cli.run_app(main, argv)


if __name__ == "__main__":
  run()
