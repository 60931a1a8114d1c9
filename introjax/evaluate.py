r"""Evaluates a saved workdir with evaluators by name, without training.

    python -m introjax.evaluate --workdir=runs/igm_mnist --eval=semisup
    python -m introjax.evaluate --workdir=runs/icl_mnist --eval=semisup \
        --heldout=10000 --labelled=1000 --svms=100
    python -m introjax.evaluate --workdir=runs/igm_mnist --eval=semisup --random_init
    python -m introjax.evaluate --workdir=runs/brick --eval=kid,precision_recall,ms_ssim

semisup (IGM §4.5) reads any saved critic or classifier (and runs as a
run ends when eval.final names it: `after_run`): the last critic
of a cascade, every ICL / STIC variant; `--random_init` gives the floor, the
same architectures with fresh weights (seed `--seed`). Its labelled data is
the run's dataset (all its training images; MNIST from an npz or TFDS,
SVHN through TFDS, the bundled digits), so runs on unlabelled images
(textures, the bundled faces) have none.

kid, precision_recall, ms_ssim (and fid, swd) score `--num_images` new
samples of a generating workdir, drawn from p0 through its cascade,
against as many real images. Without `--inception_weights` the features
are a judge classifier's, trained for the dataset: the labelled set of an
image dataset, the bundled faces against the bundled non-faces, or, for a
texture, which of the bundled textures a patch comes from. Every key names
its network.

Each line printed is one metric; the results go to
<workdir>/evaluation.json (evaluation_random_init.json for the floor), or
--out.
"""
import dataclasses
import json
import os

from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from introjax import cli
from introjax import paths
from introjax import saved
from introjax.data import datasets
from introjax.data import images as image_data
from introjax.errors import ConfigError, UserError
from introjax.eval import evaluators
from introjax.eval import semisup
from introjax.sampling import anysize
from introjax.training import harness

# Its own flag set: introjax.compare's module flags (--seed, --size, …) may
# already be defined in this process (a notebook or the tests import both).
_FLAGS = flags.FlagValues()
_WORKDIR = flags.DEFINE_string("workdir", None, "A training workdir.",
                               required=True,
                               flag_values=_FLAGS)
_EVAL = flags.DEFINE_list("eval", None, "Evaluators by name, e.g. semisup "
                          "or kid,precision_recall,ms_ssim.", required=True,
                          flag_values=_FLAGS)
_ROUND = flags.DEFINE_integer("round", None, "Checkpoint round (default: "
                              "the latest).",
                              flag_values=_FLAGS)
_RANDOM = flags.DEFINE_bool("random_init", False, "semisup: score freshly "
                            "initialised networks of the saved architectures "
                            "(the floor) instead of the trained ones.",
                            flag_values=_FLAGS)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the SVM draws, the samples "
                             "and --random_init's weights.",
                             flag_values=_FLAGS)
_LABELLED = flags.DEFINE_integer("labelled", None, "semisup: labelled "
                                 "examples per SVM (default 1000).",
                                 flag_values=_FLAGS)
_HELDOUT = flags.DEFINE_integer("heldout", None, "semisup: held-out examples "
                                "that choose C (default 10000).",
                                flag_values=_FLAGS)
_SVMS = flags.DEFINE_integer("svms", None, "semisup: SVMs averaged "
                             "(default 100).",
                             flag_values=_FLAGS)
_DRAWS = flags.DEFINE_integer("selection_draws", None, "semisup: labelled "
                              "draws each C is validated on (default 5).",
                              flag_values=_FLAGS)
_JOBS = flags.DEFINE_integer("jobs", None, "semisup: SVMs fitted at once "
                             "(default: one per core).",
                             flag_values=_FLAGS)
_NETWORKS = flags.DEFINE_list("networks", None, "semisup: only these of the "
                              "workdir's networks (e.g. icl; default all).",
                              flag_values=_FLAGS)
_NPZ = flags.DEFINE_string("npz_path", None, "Where the run's npz dataset is "
                           "now, if it moved.",
                           flag_values=_FLAGS)
_NUM = flags.DEFINE_integer("num_images", 500, "kid, precision_recall, "
                            "ms_ssim: samples drawn (and real images).",
                            flag_values=_FLAGS)
_SIZE = flags.DEFINE_integer("size", None, "Side of the samples (default: "
                             "the critic's input).",
                             flag_values=_FLAGS)
_WEIGHTS = flags.DEFINE_string("inception_weights", None, "Inception "
                               "weights for fid, kid and precision_recall.",
                               flag_values=_FLAGS)
_OUT = flags.DEFINE_string("out", None, "The results' JSON path.",
                           flag_values=_FLAGS)

# Patches per bundled texture in the texture judge's labelled set.
_TEXTURE_PATCHES = 400
_TEXTURES = ("brick", "grass", "gravel")


def eval_config(config, seed, labelled=None, heldout=None, svms=None,
                inception_weights=None, selection_draws=None, jobs=None):
  """The saved config with the command line's evaluation settings."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.seed = seed
  for field, value in (("semisup_labelled", labelled),
                       ("semisup_heldout", heldout), ("semisup_svms", svms),
                       ("semisup_selection_draws", selection_draws),
                       ("semisup_jobs", jobs),
                       ("inception_weights", inception_weights)):
    if value is not None:
      config.eval[field] = value
  return config


def _fit_to(images, shape, data):
  """uint8 images (N, H, W, C) cut and resized as the run's data section
  says, when they are not already of `shape`."""
  if images.shape[1:] == tuple(shape):
    return images
  crop = int(data.get("crop", 0))
  fitted = np.array([datasets._square(x, crop, shape[0])  # pylint: disable=protected-access
                     for x in images], np.uint8)
  return datasets._with_channels(fitted, shape[2])  # pylint: disable=protected-access


def labelled_sets(config, shape, npz_path=None):
  """((train images in [-1, 1], labels), (test …), classes, name) of the
  run's dataset, at the networks' input `shape`."""
  train, test = datasets.load_classification(
      semisup.labelled_data(config, npz_path))
  unit = lambda x: np.asarray(datasets.to_unit_range(
      jnp.asarray(_fit_to(x, shape, config.data))))
  return ((unit(train.images), train.labels), (unit(test.images),
                                               test.labels),
          train.num_classes, train.name)


def fresh_params(module, shape, seed):
  """Freshly initialised parameters of `module` on (H, W, C) inputs."""
  return module.init(jax.random.PRNGKey(seed),
                     jnp.zeros((1, *shape), jnp.float32))["params"]


def semisup_subject(workdir, round_index=None, random_init=False, seed=0,
                    npz_path=None, only=None):
  """(config, Subject) for the semisup evaluator: the saved networks (the
  names `only`, if given), or fresh ones of their architectures, and the
  run's labelled dataset."""
  config, networks, shape, _ = saved.load_networks(workdir, round_index)
  if only:
    missing = [n for n in only if n not in networks]
    if missing:
      raise UserError(f"{workdir} has no network {missing[0]!r}; it has "
                      f"{', '.join(networks)}.")
    networks = {n: networks[n] for n in only}
  if random_init:
    networks = {f"random_init:{name}": (module, fresh_params(module, shape,
                                                             seed))
                for name, (module, _) in networks.items()}
  train_set, test_set, classes, name = labelled_sets(config, shape, npz_path)
  return config, evaluators.Subject(
      networks=networks, train_set=train_set, test_set=test_set,
      num_classes=classes, dataset=name)


def _judge_set(model, size, key):
  """(images in [-1, 1], labels, classes, name) the kid/precision_recall
  judge learns when no Inception weights are given."""
  data = model.config.data
  channels = model.canvas_shape[2]
  if hasattr(data, "texture"):   # a texture: which bundled one a patch is
    patches = []
    for i, texture in enumerate(_TEXTURES):
      image = image_data.load_image(texture, size=data.image_size,
                                    channels=channels, min_side=size)
      canvas = jnp.asarray(image_data.texture_canvas(image, 0))[None]
      origins = anysize.random_origins(jax.random.fold_in(key, i), 1,
                                       _TEXTURE_PATCHES, image.shape[:2],
                                       size)[0]
      patches.append(np.asarray(anysize.crop(
          canvas, jnp.zeros(_TEXTURE_PATCHES, jnp.int32), origins, size)))
    labels = np.repeat(np.arange(len(_TEXTURES)), _TEXTURE_PATCHES)
    return np.concatenate(patches), labels, len(_TEXTURES), "textures"
  if data.source == "lfw_subset":   # faces against the set's non-faces
    import skimage.data  # pylint: disable=g-import-not-at-top
    every = np.round(skimage.data.lfw_subset() * 255).astype(np.uint8)[..., None]
    images = _fit_to(every, (size, size, channels), data)
    labels = (np.arange(len(every)) >= datasets.LFW_SUBSET_FACES).astype(
        np.int32)
    return (np.asarray(datasets.to_unit_range(jnp.asarray(images))), labels,
            2, "lfw_subset")
  (images, labels), _, classes, name = labelled_sets(
      model.config, (size, size, channels))
  return images, labels, classes, name


def sample_subject(workdir, num, size=None, seed=0, with_judge_set=True):
  """(config, Subject): `num` new samples of a generating workdir, drawn
  from p0 through its cascade, against real images of their size."""
  model, cascade, _ = saved.load_model(workdir, with_data=True)
  size = size or model.patch
  key = jax.random.PRNGKey(seed)
  images, _ = model.generate(cascade, num, size, key)
  subject = dataclasses.replace(model.evaluation_subject(images),
                                generated_pad=0,
                                key=jax.random.fold_in(key, 1))
  if with_judge_set:
    images_, labels, classes, name = _judge_set(model, size, key)
    subject = dataclasses.replace(subject, train_set=(images_, labels),
                                  num_classes=classes, dataset=name)
  return model.config, subject


def evaluate(workdir, names, round_index=None, random_init=False, seed=0,
             labelled=None, heldout=None, svms=None, npz_path=None,
             num_images=500, size=None, inception_weights=None,
             selection_draws=None, only=None, jobs=None):
  """{metric: value} of the evaluators `names` on `workdir`."""
  names = [n.strip() for n in names if n.strip()]
  unknown = [n for n in names if n not in evaluators._REGISTRY]  # pylint: disable=protected-access
  if unknown or not names:
    raise ConfigError(f"--eval names {', '.join(unknown) or 'nothing'}; the "
                      f"evaluators are "
                      f"{', '.join(sorted(evaluators._REGISTRY))}.")  # pylint: disable=protected-access
  results = {}
  if "semisup" in names:
    config, subject = semisup_subject(workdir, round_index, random_init,
                                      seed, npz_path, only)
    config = eval_config(config, seed, labelled, heldout, svms,
                         selection_draws=selection_draws, jobs=jobs)
    results.update(evaluators.run("semisup", subject, config))
  others = [n for n in names if n != "semisup"]
  if others:
    config, subject = sample_subject(workdir, num_images, size, seed,
                                     with_judge_set=not inception_weights)
    config = eval_config(config, seed, inception_weights=inception_weights)
    for name in others:
      results.update(evaluators.run(name, subject, config))
  return results


def after_run(config, workdir):
  """The evaluators of `config`'s eval.final that read the saved run
  (semisup), run on `workdir` as its training ends: their metrics go into
  results.json beside the member's own and are logged. {} when none is
  named."""
  names = evaluators.after_run_names(config)
  if not names:
    return {}
  logging.info("Evaluating the saved run: %s.", ", ".join(names))
  results = evaluate(workdir, names, seed=int(config.get("seed", 0)))
  path = os.path.join(workdir, "results.json")
  saved_results = (json.loads(paths.read_text(path)) if paths.exists(path)
                   else {})
  saved_results.update({k: harness.jsonable(v) for k, v in results.items()})
  paths.write_text(path, json.dumps(saved_results, indent=2))
  for key, value in results.items():
    logging.info("%s: %s", key, f"{value:.6g}" if isinstance(value, float)
                 else value)
  return results


def main(argv):
  del argv
  results = evaluate(_WORKDIR.value, _EVAL.value, _ROUND.value,
                     _RANDOM.value, _SEED.value, _LABELLED.value,
                     _HELDOUT.value, _SVMS.value, _NPZ.value, _NUM.value,
                     _SIZE.value, _WEIGHTS.value, _DRAWS.value,
                     _NETWORKS.value, _JOBS.value)
  for key, value in results.items():
    print(f"{key}: {value:.6g}" if isinstance(value, float)
          else f"{key}: {value}")
  out = _OUT.value or os.path.join(
      _WORKDIR.value, "evaluation_random_init.json" if _RANDOM.value
      else "evaluation.json")
  paths.write_text(out, json.dumps(
      {k: harness.jsonable(v) for k, v in results.items()}, indent=1))
  logging.info("Wrote %s", out)


def run(argv=None):
  cli.run_with_own_flags(main, _FLAGS, argv)


if __name__ == "__main__":
  run()
