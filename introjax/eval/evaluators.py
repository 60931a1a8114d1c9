"""Evaluators chosen by name from the config, for any member.

    eval.per_round   "swd"            names run on every `eval.every_rounds`-th
                                      round (and the last), into metrics.jsonl
    eval.final       "test_error,fgsm"  names run once after training, into
                                      the member's results

  swd         sliced Wasserstein distance (×10³, PGGAN) between the generated
              images and as many real ones                 (eval/swd.py)
  fid         FID and Inception score of the generated images against as many
              real ones; needs eval.inception_weights      (eval/fid.py)
  test_error  each classifier's error on the test set       (eval/robustness.py)
  fgsm        WINN Table 3's two-way FGSM table over the classifiers, with
              step eval.fgsm_eps on [-1, 1]                 (eval/robustness.py)
  cls_r       STIC's Cls_R: an independent judge trained on real images
              classifies the labelled generated ones        (eval/judge.py)
  cls_g       STIC's Cls_G: a judge trained on the labelled generated images
              classifies the real test set                  (eval/judge.py)
  ms_ssim     sample diversity: the mean MS-SSIM over pairs of generated
              images (lower: more diverse; near 1: collapse) (eval/msssim.py)
  kid         kernel Inception distance with its deviation over subsets,
  precision_recall  and k-NN precision and recall (Kynkäänniemi et al.),
              of the generated images against as many real ones, on
              Inception features when eval.inception_weights is set, else
              on a judge classifier's trained on the labelled training set;
              keys name the network: kid[inception], recall[judge:digits]
                                                           (eval/features.py)
  semisup     IGM §4.5's semi-supervised protocol: L2-SVMs on 1,000
              labelled examples of each network's last three
              convolutions' features, test error mean ± std over 100
              (eval/semisup.py)

A member describes what it has to show as a `Subject`; each evaluator says
what it needs from one (`needs`), so a name a member cannot serve is refused
before training with a sentence, not half-way through a run.
"""
import dataclasses
from typing import Callable, Dict, Optional, Tuple

import jax
import numpy as np

from introjax.errors import ConfigError
from introjax.eval import features
from introjax.eval import fid as fid_lib
from introjax.eval import judge
from introjax.eval import msssim
from introjax.eval import robustness
from introjax.eval import semisup
from introjax.eval.images import center_crop
from introjax.eval.swd import sliced_wasserstein


@dataclasses.dataclass
class Subject:
  """What a member shows its evaluators.

  generated: host images (N, H, W, C) in [-1, 1], the round's negatives or
    the final samples; `generated_pad` rows/columns of each border are
    working margin, not content.
  real: (key, n, size) -> n host images of size×size from the positives;
    sizes up to `real_side`.
  classifiers: name -> (logits_fn, params).
  test_set: (images, labels); batch_size and sharding of the test passes.
  key: the evaluation key, the same every round (the same real crops and
    projections), so rounds differ only by what they made.
  generated_labels: (N,) the class each generated image was made for.
  train_set: (images in [-1, 1], labels) of the real training data;
    num_classes their class count; dataset its name (for the judge's key).
  networks: name -> (flax module, params) whose convolutions the semisup
    evaluator reads (a critic or a classifier).
  """
  generated: Optional[np.ndarray] = None
  generated_pad: int = 0
  real: Optional[Callable] = None
  real_side: int = 0
  classifiers: Dict[str, Tuple[Callable, object]] = dataclasses.field(
      default_factory=dict)
  test_set: Optional[Tuple[np.ndarray, np.ndarray]] = None
  batch_size: int = 500
  sharding: object = None
  key: object = None
  generated_labels: Optional[np.ndarray] = None
  train_set: Optional[Tuple[np.ndarray, np.ndarray]] = None
  num_classes: int = 0
  dataset: str = ""
  networks: Dict[str, Tuple[object, object]] = dataclasses.field(
      default_factory=dict)


# What each need means, for the sentence that refuses an evaluator.
_NEEDS = {"generated": "generated images",
          "real": "real images to compare them with",
          "classifiers": "a classifier",
          "test_set": "a labelled test set",
          "generated_labels": "labelled generated images",
          "train_set": "a labelled training set",
          "networks": "a convolutional network to read features from"}


@dataclasses.dataclass(frozen=True)
class Evaluator:
  name: str
  needs: Tuple[str, ...]
  run: Callable           # (subject, config) -> {metric: value}
  check: Callable = lambda config, has: None   # before training
  # Served when the run ends, from the saved workdir (introjax.evaluate):
  # eval.final only, whatever the member's own subject holds.
  after_run: bool = False


_REGISTRY: Dict[str, Evaluator] = {}


def register(name, needs, check=None, after_run=False):
  def wrap(fn):
    _REGISTRY[name] = Evaluator(name, tuple(needs), fn,
                                check or (lambda config, has: None),
                                after_run)
    return fn
  return wrap


def after_run_names(config):
  """The evaluators of eval.final that read the saved run when it ends."""
  return tuple(n for n in names(config, "final")
               if n in _REGISTRY and _REGISTRY[n].after_run)


def names(config, stage):
  """The evaluator names of `eval.<stage>` ("per_round" or "final"), a
  comma-separated string."""
  text = (config.get("eval") or {}).get(stage, "")
  return tuple(n.strip() for n in str(text).split(",") if n.strip())


def check(config, member, has, stages=("per_round", "final")):
  """Refuses, before training, an evaluator that `member` (its name in the
  sentence) cannot serve. `has`:
  a dict of the Subject fields it provides (True), with `generated_side`
  (the smallest side of what it generates) when it generates. Also refuses
  Inception weights set with no evaluator that uses them."""
  chosen = set()
  for stage in stages:
    for name in names(config, stage):
      if name not in _REGISTRY:
        raise ConfigError(
            f"eval.{stage} names {name!r}; the evaluators are "
            f"{', '.join(sorted(_REGISTRY))}.")
      ev = _REGISTRY[name]
      if ev.after_run:
        if stage != "final":
          raise ConfigError(
              f"eval.{stage} names {name!r}, which reads the saved networks "
              "once the run ends; name it in eval.final instead.")
        ev.check(config, has)
        chosen.add(name)
        continue
      missing = [n for n in ev.needs if n not in has]
      if missing:
        raise ConfigError(
            f"eval.{stage} names {name!r}, which needs "
            f"{' and '.join(_NEEDS[n] for n in missing)}; {member} has none. "
            f"Remove it from eval.{stage}.")
      ev.check(config, has)
      chosen.add(name)
  weights = (config.get("eval") or {}).get("inception_weights", "")
  if weights and not chosen & {"fid", "kid", "precision_recall"}:
    raise ConfigError(
        "eval.inception_weights is set but no eval stage names 'fid', 'kid' "
        "or 'precision_recall'; add one, e.g. --config.eval.per_round=swd,fid.")
  if "generated" in has and "fid" not in chosen:
    fid_lib.log_how_to_enable()


def _serves(subject, need):
  value = getattr(subject, need)
  return value is not None and (not isinstance(value, dict) or bool(value))


def due(config, round_index):
  """Whether round `round_index` runs the per-round evaluators."""
  every = (config.get("eval") or {}).get("every_rounds", 1)
  return round_index % every == 0 or round_index == config.rounds


def evaluate(config, stage, subject):
  """{metric: value} of every evaluator named in `eval.<stage>` that
  `subject` can serve."""
  metrics = {}
  for name in names(config, stage):
    ev = _REGISTRY[name]
    if ev.after_run:
      continue   # introjax.evaluate.after_run, from the saved workdir
    # A subject without what it needs (ICL's baseline, or round 1, makes no
    # negatives) reports nothing for it; `check` refused members that never
    # have it.
    if all(_serves(subject, need) for need in ev.needs):
      metrics.update(ev.run(subject, config))
  return metrics


def run(name, subject, config=None):
  """The metrics of evaluator `name` on `subject` (config: for evaluators
  with settings, fid and fgsm)."""
  return _REGISTRY[name].run(subject, config)


def final_by_classifier(config, subject, names_):
  """eval.final on `subject`, its per-classifier test errors gathered as
  {"test_error": {name: error}} (the other metrics as they are)."""
  final = evaluate(config, "final", subject)
  errors = per_classifier(final, "test_error", list(names_))
  if errors:
    final = {"test_error": errors,
             **{k: v for k, v in final.items()
                if not k.startswith("test_error")}}
  return final


def per_classifier(metrics, metric, names_):
  """{classifier name: value} of `metric` in `metrics` (as the evaluators
  key it: bare for one classifier, "<metric>/<name>" for several); {} if
  absent."""
  if len(names_) == 1:
    return {names_[0]: metrics[metric]} if metric in metrics else {}
  return {n: metrics[f"{metric}/{n}"] for n in names_
          if f"{metric}/{n}" in metrics}


# The evaluators -------------------------------------------------------------


def _check_swd(config, has):
  side = has.get("generated_side", 16)
  if side < 8:
    raise ConfigError(
        f"swd needs generated images of at least 8×8, but they are "
        f"{side}×{side}; remove 'swd' from eval.per_round.")


@register("swd", needs=("generated", "real"), check=_check_swd)
def _swd(subject, config):
  """PGGAN's SWD between the generated images' central S×S crops and as
  many real S×S images, S the largest 16·2^j that fits both (8 for images
  under 16×16, e.g. the 8×8 digits: one pyramid level, 7×7 descriptors)."""
  images = subject.generated
  side = min(*images.shape[1:3], subject.real_side)
  size = 8 if side < 16 else 16 * 2 ** int(np.log2(side // 16))
  k_real, k_swd = jax.random.split(subject.key)
  real = subject.real(k_real, images.shape[0], size)
  result = sliced_wasserstein(real, center_crop(images, size), k_swd,
                              min_resolution=min(size, 16))
  return {f"swd_{k}": v for k, v in result.items()}


def _check_fid(config, has):
  if not (config.get("eval") or {}).get("inception_weights", ""):
    raise ConfigError(
        "eval names 'fid', which needs eval.inception_weights: "
        + fid_lib.HOW_TO_ENABLE)
  fid_lib.inception_params(config.eval.inception_weights)  # a bad file: now


@register("fid", needs=("generated", "real"), check=_check_fid)
def _fid(subject, config):
  """FID and Inception score of the generated images' content (without
  their working margin) against as many real images of that size."""
  images = subject.generated
  size = min(images.shape[1:3]) - 2 * subject.generated_pad
  real = subject.real(subject.key, images.shape[0], size)
  return fid_lib.round_metrics(config, center_crop(images, size), real)


@register("test_error", needs=("classifiers", "test_set"))
def _test_error(subject, config):
  """{"test_error": e} for one classifier, {"test_error/<name>": e} for
  several."""
  images, labels = subject.test_set
  errors = {name: robustness.test_error(fn, params, images, labels,
                                        subject.batch_size, subject.sharding)
            for name, (fn, params) in subject.classifiers.items()}
  if len(errors) == 1:
    return {"test_error": next(iter(errors.values()))}
  return {f"test_error/{name}": e for name, e in errors.items()}


def _check_fgsm(config, has):
  robustness.check_epsilon(config.eval.fgsm_eps, -1.0, 1.0)


@register("fgsm", needs=("classifiers", "test_set"), check=_check_fgsm)
def _fgsm(subject, config):
  """{"robustness": RobustnessResult} over every classifier."""
  images, labels = subject.test_set
  return {"robustness": robustness.robustness_table(
      subject.classifiers, images, labels, config.eval.fgsm_eps,
      subject.batch_size, sharding=subject.sharding)}


register("cls_r", needs=("generated", "generated_labels", "train_set",
                         "test_set"))(judge.cls_r)
register("cls_g", needs=("generated", "generated_labels", "test_set"))(
    judge.cls_g)


@register("ms_ssim", needs=("generated",))
def _ms_ssim(subject, config):
  """{"ms_ssim": the mean MS-SSIM over pairs of the generated images'
  content}."""
  images = subject.generated
  size = min(images.shape[1:3]) - 2 * subject.generated_pad
  return {"ms_ssim": msssim.diversity(center_crop(images, size))}


def _check_feature_net(config, has):
  weights = (config.get("eval") or {}).get("inception_weights", "")
  if weights:
    fid_lib.inception_params(weights)   # a bad file: now
  elif "train_set" not in has:
    raise ConfigError(
        "kid and precision_recall compare features of a network, and this "
        "member has no labelled training set to train a judge on; set "
        "--config.eval.inception_weights to pytorch-fid's "
        f"pt_inception-2015-12-05-6726825d.pth ({fid_lib.inception.WEIGHTS_URL})"
        " or an .npz converted from it.")


def feature_net(subject, config):
  """The network kid and precision_recall compare features of: Inception
  with eval.inception_weights, else a judge trained on the subject's
  labelled training set."""
  section = config.get("eval") or {}
  if section.get("inception_weights", ""):
    return features.inception_net(
        fid_lib.inception_params(section.inception_weights),
        section.get("inception_batch", 50))
  if subject.train_set is None:
    _check_feature_net(config, {})
  images, labels = subject.train_set
  return features.judge_net(subject.dataset or "data", images, labels,
                            subject.num_classes, config)


def _feature_sets(subject, config):
  """(network name, real features, generated features): the generated
  images' content against as many real images of its size."""
  net = feature_net(subject, config)
  images = subject.generated
  size = min(images.shape[1:3]) - 2 * subject.generated_pad
  real = subject.real(subject.key, images.shape[0], size)
  return (net.name, net.features(np.asarray(real)),
          net.features(center_crop(images, size)))


@register("kid", needs=("generated", "real"), check=_check_feature_net)
def _kid(subject, config):
  """{"kid[<net>]": the unbiased MMD², "kid_std[<net>]": its deviation over
  eval.kid_subsets subsets of eval.kid_subset_size rows (at most half
  the smaller set)}."""
  section = config.get("eval") or {}
  name, real, fake = _feature_sets(subject, config)
  return features.tagged(features.kid(
      real, fake, int(section.get("kid_subsets", 100)),
      int(section.get("kid_subset_size", 1000))), name)


@register("precision_recall", needs=("generated", "real"),
          check=_check_feature_net)
def _precision_recall(subject, config):
  """{"precision[<net>]", "recall[<net>]"} with eval.pr_k neighbours."""
  name, real, fake = _feature_sets(subject, config)
  k = int((config.get("eval") or {}).get("pr_k", 3))
  return features.tagged(features.precision_recall(real, fake, k), name)


def _check_semisup(config, has):
  if config.get("trainer") == "introvae":
    raise ConfigError("eval.final names 'semisup', which reads a critic's or "
                      "classifier's convolutions; IntroVAE has neither. "
                      "Remove it from eval.final.")
  semisup.labelled_data(config)   # refuses a run on unlabelled images


@register("semisup", needs=("networks", "train_set", "test_set"),
          check=_check_semisup, after_run=True)
def _semisup(subject, config):
  """{"semisup_error[<network>]" (%), "semisup_error_std[<network>]",
  "semisup_c[<network>]"} for every network of the subject."""
  settings = semisup.Settings.from_config(config)
  metrics = {}
  for name, (module, params) in subject.networks.items():
    result = semisup.evaluate(module, params, subject.train_set,
                              subject.test_set, settings, subject.batch_size)
    metrics.update({f"semisup_error[{name}]": result["error"],
                    f"semisup_error_std[{name}]": result["error_std"],
                    f"semisup_c[{name}]": result["C"]})
  return metrics
