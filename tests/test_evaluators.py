"""Evaluators chosen by name (eval.per_round, eval.final) for any member:
what each computes against an explicit reference, and the sentences that
refuse a name a member cannot serve."""
import dataclasses

import jax
import numpy as np
import pytest

from conftest import load_config
from introjax import parallel
from introjax.data import datasets
from introjax.errors import ConfigError
from introjax.eval import evaluators
from introjax.eval import robustness
from introjax.eval.swd import sliced_wasserstein
from introjax.training.icl import IntrospectiveClassifier
from introjax.training.igm import TextureIGM


def test_swd_crops_the_largest_power_of_two_and_uses_the_key():
  rng = np.random.default_rng(0)
  generated = rng.uniform(-1, 1, (6, 40, 40, 3)).astype(np.float32)
  bank = rng.uniform(-1, 1, (6, 64, 64, 3)).astype(np.float32)
  asked = []

  def real(key, n, size):
    asked.append((n, size))
    return bank[:n, :size, :size]

  key = jax.random.PRNGKey(3)
  subject = evaluators.Subject(generated=generated, real=real, real_side=64,
                               key=key)
  got = evaluators.run("swd", subject)
  # 40 px fits 32 = 16·2¹: the central 32×32 (offset 4) of each image.
  assert asked == [(6, 32)]
  want = sliced_wasserstein(bank[:, :32, :32], generated[:, 4:36, 4:36],
                            jax.random.split(key)[1])
  assert got == {f"swd_{k}": v for k, v in want.items()}
  assert set(got) == {"swd_32", "swd_16", "swd_mean"}


def test_test_error_names_each_classifier_when_there_are_several():
  w = np.float32([[1, -1], [-1, 1]])
  logits = lambda params, x: x.reshape(x.shape[0], -1)[:, :2] @ params
  images = np.float32([[1, 0], [0, 1], [1, 0], [0, 1]]).reshape(4, 1, 2, 1)
  labels = np.int32([0, 1, 1, 1])
  one = evaluators.Subject(classifiers={"a": (logits, w)},
                           test_set=(images, labels), batch_size=2)
  assert evaluators.run("test_error", one) == {"test_error": 0.25}
  two = dataclasses.replace(one, classifiers={"a": (logits, w),
                                              "b": (logits, -w)})
  got = evaluators.run("test_error", two)
  assert got == {"test_error/a": 0.25, "test_error/b": 0.75}
  assert evaluators.per_classifier(got, "test_error", ["a", "b"]) == {
      "a": 0.25, "b": 0.75}
  assert robustness.test_error(logits, -w, images, labels, 4) == 0.75


def test_names_a_member_cannot_serve_are_refused_before_training():
  config = load_config("igm_texture.py:tiny")
  config.eval.per_round = "test_error"
  with pytest.raises(ConfigError, match=r"'test_error', which needs a "
                     r"classifier and a labelled test set; IGM has none"):
    TextureIGM(config, parallel.make_mesh())
  config.eval.per_round = "swd,fidd"
  with pytest.raises(ConfigError, match=r"'fidd'; the evaluators are cls_g, "
                     r"cls_r, fgsm, fid, kid, ms_ssim, precision_recall, semisup, swd, "
                     r"test_error"):
    TextureIGM(config, parallel.make_mesh())
  # SWD's one level of 7×7 descriptors needs at least 8×8 images (the
  # digits' size).
  config = load_config("icl_digits.py:tiny")
  config.eval.per_round = "swd"
  with pytest.raises(ConfigError, match="at least 8×8, but they are 4×4"):
    evaluators.check(config, "a member", {"generated": True, "real": True,
                                          "generated_side": 4})
  # The baseline alone makes no images to score.
  config = load_config("icl_digits.py:tiny")
  config.icl.variants = ("baseline",)
  config.eval.final = "test_error,fid"
  with pytest.raises(ConfigError, match="needs generated images and real "
                     "images to compare them with"):
    IntrospectiveClassifier(config, parallel.make_mesh())


def test_every_rounds_and_the_last():
  config = load_config("winn_texture.py:tiny")   # 3 rounds
  config.eval.every_rounds = 2
  assert [evaluators.due(config, t) for t in (1, 2, 3)] == [False, True,
                                                             True]


def _doubled(dataset):
  """8×8 digits at 16×16 (each pixel 2×2), so SWD's 16×16 level fits."""
  return dataclasses.replace(
      dataset, images=dataset.images.repeat(2, axis=1).repeat(2, axis=2))


def test_a_classifier_run_scores_its_negatives_with_swd():
  """Image metrics are not only the generators': ICL's pseudo-negatives
  against its training images, in the variants (and rounds) that make
  them."""
  config = load_config("icl_digits.py:tiny")
  config.icl.variants = ("baseline", "icl")
  config.eval.per_round = "test_error,swd"
  train, test = datasets.load_classification(config.data)
  run = IntrospectiveClassifier(config, parallel.make_mesh(),
                                _doubled(train), _doubled(test))
  state = run.init_state()
  state, first = run.run_round(state, 1)
  state, second = run.run_round(state, 2)
  assert not any("swd" in k for k in first)          # round 1 makes none
  assert not any(k.startswith("baseline/swd") for k in second)
  assert {"baseline/test_error", "icl/test_error"} <= set(first)
  # The round's negatives are the pool's newest block.
  pool = state["icl"].pool
  newest = pool.images[pool.rounds == 2]
  subject = run.evaluation_subject({"icl": state["icl"].params}, newest)
  want = evaluators.run("swd", subject)
  assert second["icl/swd_mean"] == pytest.approx(want["swd_mean"], rel=1e-6)
  assert {"icl/swd_16", "icl/swd_mean"} <= set(second)
  # Its real images are training rows at [-1, 1].
  real = subject.real(jax.random.PRNGKey(0), 5, 16)
  rows = np.asarray(datasets.to_unit_range(run.images))
  for image in real:
    assert np.any(np.all(rows == image, axis=(1, 2, 3)))
