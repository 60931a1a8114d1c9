"""FID, KID, precision/recall and IGM §4.5's semi-supervised protocol
against direct NumPy / SciPy / scikit-learn references, and
`introjax.evaluate` end to end on a tiny saved workdir."""
import dataclasses
import itertools
import json
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import scipy.linalg
from sklearn.svm import LinearSVC

from conftest import load_config
from introjax import evaluate as evaluate_lib
from introjax.errors import ConfigError
from introjax.eval import evaluators
from introjax.eval import features
from introjax.eval import fid
from introjax.eval import inception
from introjax.eval import semisup
from introjax.models import critics
from introjax.training import icl


# FID -------------------------------------------------------------------------


def _closed_form_fid(mu1, s1, mu2, s2):
  covmean = scipy.linalg.sqrtm(s1 @ s2).real
  return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_fid_of_samples_of_known_gaussians_approaches_the_closed_form():
  rng = np.random.default_rng(0)
  d = 4
  a1, a2 = rng.normal(size=(d, d)), rng.normal(size=(d, d))
  s1, s2 = a1 @ a1.T + np.eye(d), a2 @ a2.T + 0.5 * np.eye(d)
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  exact = _closed_form_fid(mu1, s1, mu2, s2)
  np.testing.assert_allclose(fid.frechet_distance(mu1, s1, mu2, s2), exact,
                             rtol=1e-9)
  x = rng.multivariate_normal(mu1, s1, 200_000)
  y = rng.multivariate_normal(mu2, s2, 200_000)
  np.testing.assert_allclose(fid.fid_from_features(x, y), exact, rtol=0.02)


def test_fid_from_few_samples_equals_the_full_covariance_formula():
  # n < d takes the n×n SVD route; it must equal the D×D one exactly.
  rng = np.random.default_rng(1)
  x, y = rng.normal(size=(12, 40)), rng.normal(1.0, 2.0, size=(15, 40))
  full = fid.frechet_distance(*fid.gaussian_stats(x), *fid.gaussian_stats(y))
  np.testing.assert_allclose(fid.fid_from_features(x, y), full, rtol=1e-8)


def test_inception_inputs_are_quantised_as_pytorch_fid_sees_png_files():
  x = np.random.default_rng(2).uniform(-1, 1, (3, 5, 5, 3)).astype(np.float32)
  q = inception.quantize_uint8(x)
  # torchvision's save_image: (x+1)/2·255 + 0.5, clamped, truncated.
  levels = np.clip((x + 1) / 2 * 255 + 0.5, 0, 255).astype(np.uint8)
  np.testing.assert_allclose(q, levels / 255.0 * 2 - 1, atol=1e-6)
  np.testing.assert_array_equal(inception.quantize_uint8(q), q)


# KID -------------------------------------------------------------------------


def _direct_mmd2(x, y):
  """The unbiased MMD², one kernel evaluation at a time."""
  k = lambda a, b: (sum(ai * bi for ai, bi in zip(a, b)) / len(a) + 1) ** 3
  m, n = len(x), len(y)
  xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
  yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j)
  xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n))
  return xx / (m * (m - 1)) + yy / (n * (n - 1)) - 2 * xy / (m * n)


def test_kid_equals_a_direct_quadratic_sum():
  rng = np.random.default_rng(3)
  x, y = rng.normal(size=(20, 6)), rng.normal(0.5, 1.2, size=(20, 6))
  np.testing.assert_allclose(features.mmd2_unbiased(x, y),
                             _direct_mmd2(x, y), rtol=1e-10)
  # Subsets of every row would all be the whole-set estimate (deviation 0):
  # a subset is at most half the set, so the ± says something.
  halves = features.kid(x, y, subsets=5, subset_size=20, seed=1)
  rng_halves = np.random.default_rng(1)
  direct = [_direct_mmd2(x[rng_halves.choice(20, 10, replace=False)],
                         y[rng_halves.choice(20, 10, replace=False)])
            for _ in range(5)]
  np.testing.assert_allclose([halves["kid"], halves["kid_std"]],
                             [np.mean(direct), np.std(direct)], rtol=1e-9)
  assert halves["kid_std"] > 0
  # Subsets: the mean and deviation of direct sums on the same draws.
  rng_draws = np.random.default_rng(7)
  direct = [_direct_mmd2(x[rng_draws.choice(20, 8, replace=False)],
                         y[rng_draws.choice(20, 8, replace=False)])
            for _ in range(5)]
  got = features.kid(x, y, subsets=5, subset_size=8, seed=7)
  np.testing.assert_allclose([got["kid"], got["kid_std"]],
                             [np.mean(direct), np.std(direct)], rtol=1e-9)


def test_kid_is_unbiased_near_zero_for_one_distribution_and_grows_apart():
  rng = np.random.default_rng(4)
  same = features.kid(rng.normal(size=(400, 8)), rng.normal(size=(400, 8)),
                      subsets=20, subset_size=200)
  apart = features.kid(rng.normal(size=(400, 8)),
                       rng.normal(0.5, 1, size=(400, 8)),
                       subsets=20, subset_size=200)
  assert abs(same["kid"]) < 3 * same["kid_std"] + 1e-3
  assert apart["kid"] > 10 * same["kid_std"]


# Precision and recall --------------------------------------------------------


def test_precision_recall_on_hand_made_point_sets():
  real = np.array([[0.], [1.], [2.], [3.], [4.]])
  # Real radii (3rd neighbour): 3, 2, 2, 2, 3. -3 lies on 0's ball's
  # edge and 6 within 4's; 7.5 and -3.5 lie outside every ball.
  fake = np.array([[6.], [7.5], [-3.], [-3.5]])
  np.testing.assert_allclose(features.knn_radii(real, 3),
                             np.array([3., 2., 2., 2., 3.]) ** 2)
  result = features.precision_recall(real, fake, k=3)
  assert result == {"precision": 0.5, "recall": 1.0}
  # Generated points clustered far away: nothing inside either way.
  far = np.array([[100.], [101.], [102.], [103.]])
  assert features.precision_recall(real, far, k=3) == {"precision": 0.0,
                                                      "recall": 0.0}
  with pytest.raises(ConfigError, match="more than 3"):
    features.precision_recall(real, fake[:3], k=3)


def test_kid_and_precision_recall_evaluators_on_a_judge_name_it():
  from introjax.data import datasets
  train, _ = datasets.load_classification(ml_collections.ConfigDict(
      {"source": "digits", "num_classes": 10}))
  images = np.asarray(datasets.to_unit_range(jnp.asarray(train.images)))
  config = ml_collections.ConfigDict({"seed": 0, "eval": {
      "judge_steps": 60, "judge_features": (8, 16), "kid_subsets": 5,
      "kid_subset_size": 100,
      "pr_k": 3}})
  rng = np.random.default_rng(0)
  real = lambda key, n, size: images[rng.choice(len(images), n)]
  subject = lambda generated: evaluators.Subject(
      generated=generated, real=real, real_side=8, key=jax.random.PRNGKey(0),
      train_set=(images, train.labels), num_classes=10, dataset="digits")
  good = {**evaluators.run("kid", subject(images[:150]), config),
          **evaluators.run("precision_recall", subject(images[:150]), config)}
  noise = rng.uniform(-1, 1, images[:150].shape).astype(np.float32)
  bad = {**evaluators.run("kid", subject(noise), config),
         **evaluators.run("precision_recall", subject(noise), config)}
  assert set(good) == {"kid[judge:digits]", "kid_std[judge:digits]",
                       "precision[judge:digits]", "recall[judge:digits]"}
  assert bad["kid[judge:digits]"] > 10 * max(good["kid[judge:digits]"], 1e-4)
  assert good["precision[judge:digits]"] > 0.8 > bad["precision[judge:digits]"]
  with pytest.raises(ConfigError, match="labelled training set"):
    evaluators.check(ml_collections.ConfigDict({"eval": {"final": "kid"}}),
                     "this run", {"generated": True, "real": True})


# The semi-supervised protocol ------------------------------------------------


def test_adaptive_max_pool_equals_a_numpy_loop():
  x = np.random.default_rng(5).normal(size=(2, 7, 7, 3)).astype(np.float32)
  got = np.asarray(semisup._adaptive_max_pool(jnp.asarray(x), 4))
  want = np.zeros((2, 4, 4, 3), np.float32)
  for i, j in itertools.product(range(4), range(4)):
    r0, r1 = (i * 7) // 4, -(-((i + 1) * 7) // 4)
    c0, c1 = (j * 7) // 4, -(-((j + 1) * 7) // 4)
    want[:, i, j] = x[:, r0:r1, c0:c1].max(axis=(1, 2))
  np.testing.assert_array_equal(got, want)


def test_igm_svhn_critic_gives_section_4_5s_14336_dimensions():
  critic = critics.build_critic(ml_collections.ConfigDict(
      {"name": "dcgan", "features": (64, 128, 256, 512), "kernel_size": 5,
       "norm": "layer"}))
  assert semisup.conv_layers(critic, (64, 64, 3)) == ("conv1", "conv2",
                                                      "conv3")
  params = jax.eval_shape(lambda: critics.init_critic(
      critic, jax.random.PRNGKey(0), (64, 64, 3)))
  out = jax.eval_shape(semisup.feature_fn(critic, (64, 64, 3)), params,
                       jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32))
  assert out.shape == (2, 14336)


def test_protocol_equals_a_direct_scikit_learn_loop():
  rng = np.random.default_rng(6)
  labels = rng.integers(0, 3, 260)
  train = rng.normal(size=(260, 10)) + labels[:, None] * 0.6
  test_labels = rng.integers(0, 3, 90)
  test = rng.normal(size=(90, 10)) + test_labels[:, None] * 0.6
  settings = semisup.Settings(labelled=40, heldout=80, svms=4,
                              selection_draws=2, c_grid=(0.01, 1.0), seed=3)
  got = semisup.protocol(train, labels, test, test_labels, settings)

  heldout, selection, draws = semisup.plan(260, settings)
  assert not set(heldout) & set(np.concatenate(selection + draws))
  mean, std = train[heldout].mean(0), train[heldout].std(0) + 1e-6
  z = lambda f: ((f - mean) / std).astype(np.float32)

  def err(c, rows, x, y, seed):
    svm = LinearSVC(C=c, loss="squared_hinge", dual=True, max_iter=2000,
                    random_state=seed).fit(z(train[rows]), labels[rows])
    return 100 * np.mean(svm.predict(z(x)) != y)

  validation = {c: np.mean([err(c, r, train[heldout], labels[heldout], i)
                            for i, r in enumerate(selection)])
                for c in settings.c_grid}
  best = min(validation, key=validation.get)
  errors = [err(best, r, test, test_labels, i) for i, r in enumerate(draws)]
  assert got["C"] == best
  np.testing.assert_allclose(got["errors"], errors)
  np.testing.assert_allclose([got["error"], got["error_std"]],
                             [np.mean(errors), np.std(errors)])
  # Features of only the rows the protocol reads give the same numbers.
  rows = semisup.rows_used(260, settings)
  assert semisup.protocol(train[rows], labels, test, test_labels, settings,
                          rows=rows)["errors"] == got["errors"]
  # Fitted one at a time or four at once (threads), the same SVMs.
  for jobs in (1, 4):
    assert semisup.protocol(train, labels, test, test_labels,
                            dataclasses.replace(settings, jobs=jobs)) == got
  with pytest.raises(ConfigError, match="the training set has 260.*lower "
                     "--heldout"):
    semisup.split(260, semisup.Settings(labelled=100, heldout=200))


# introjax.evaluate on a saved workdir ----------------------------------------


@pytest.fixture(scope="module")
def icl_workdir(tmp_path_factory):
  config = load_config("icl_digits.py:tiny")
  config.icl.variants = ("baseline", "icl")
  # semisup picked by config: run on the saved networks as training ends.
  config.eval.final = "test_error,semisup"
  config.eval.semisup_labelled = 150
  config.eval.semisup_heldout = 300
  config.eval.semisup_svms = 3
  config.eval.semisup_selection_draws = 2
  workdir = str(tmp_path_factory.mktemp("evaluate") / "icl")
  icl.train_and_evaluate(config, workdir)
  return workdir


def test_semisup_by_config_is_refused_where_it_cannot_run():
  per_round = load_config("icl_digits.py:tiny")
  per_round.eval.per_round = "semisup"
  with pytest.raises(ConfigError, match="reads the saved networks once the "
                     "run ends; name it in eval.final"):
    evaluators.check(per_round, "this classifier run", {})
  texture = load_config("igm_texture.py:tiny")
  texture.eval.final = "semisup"
  with pytest.raises(ConfigError, match="have no labels; the semi-supervised"
                     " protocol needs a labelled dataset"):
    evaluators.check(texture, "IGM", {})
  introvae = load_config("introvae_faces.py:tiny")
  introvae.eval.final = "semisup"
  with pytest.raises(ConfigError, match="IntroVAE has neither"):
    evaluators.check(introvae, "IntroVAE", {"generated": True, "real": True})


def test_evaluate_semisup_on_a_saved_classifier_and_its_floor(
    icl_workdir, tmp_path):
  # The command line prints every metric and writes the JSON.
  out = tmp_path / "e.json"
  with pytest.raises(SystemExit) as done:
    evaluate_lib.run(["evaluate", f"--workdir={icl_workdir}",
                      "--eval=semisup", "--labelled=150", "--heldout=300",
                      "--svms=3", f"--out={out}"])
  assert done.value.code in (0, None)
  trained = json.loads(out.read_text())
  assert set(trained) == {f"semisup_{m}[{v}]" for m in ("error", "error_std",
                                                         "c")
                          for v in ("baseline", "icl")}
  # The run measured the same when it ended (eval.final's semisup, the same
  # settings and seed), beside its test errors in results.json.
  results = json.loads((pathlib.Path(icl_workdir) / "results.json")
                       .read_text())
  assert "test_error" in results
  assert {k: results[k] for k in trained} == trained
  floor = evaluate_lib.evaluate(icl_workdir, ["semisup"], random_init=True,
                                only=["icl"], labelled=150, heldout=300,
                                svms=3)
  assert set(floor) == {f"semisup_{m}[random_init:icl]"
                        for m in ("error", "error_std", "c")}
  # Far from chance (90 %) both; on 8×8 digits random convolutions are
  # already a strong feature set, so the two are not ordered here.
  assert trained["semisup_error[icl]"] < 30
  assert floor["semisup_error[random_init:icl]"] < 40
  assert floor["semisup_error[random_init:icl]"] != trained[
      "semisup_error[icl]"]
