"""FID, Inception score, and the FID Inception network (no real weights)."""
import importlib.util
import os
import pathlib
import sys
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import scipy.linalg

from conftest import load_config
from introjax import parallel
from introjax.errors import ConfigError, UserError
from introjax.eval import evaluators
from introjax.eval import fid
from introjax.eval import inception
from introjax.training.igm import TextureIGM


def _load_reference():
  """tests/data/make_inception_reference.py: the recorded reference's inputs
  and PyTorch definitions (only its torch_* functions need PyTorch)."""
  path = pathlib.Path(__file__).parent / "data"
  path /= "make_inception_reference.py"
  spec = importlib.util.spec_from_file_location("make_inception_reference",
                                                path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


reference = _load_reference()


def _torch():
  # Only the live comparisons need it; the recorded ones check the same.
  return pytest.importorskip(
      "torch", reason="a live comparison with PyTorch (the optional [bench] "
      "extra); its recorded counterpart runs without")


# Fréchet distance -------------------------------------------------------------


def _reference_fid(mu1, s1, mu2, s2):
  """pytorch-fid's calculate_frechet_distance: scipy's general sqrtm."""
  covmean = scipy.linalg.sqrtm(s1 @ s2)
  if np.iscomplexobj(covmean):
    assert np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3)
    covmean = covmean.real
  diff = mu1 - mu2
  return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


def _features(seed, n, d, shift=0.0):
  rng = np.random.default_rng(seed)
  mix = rng.normal(size=(d, d)) / np.sqrt(d)
  return rng.normal(size=(n, d)) @ mix + shift


def test_frechet_distance_equals_scipy_sqrtm_reference():
  a, b = _features(0, 200, 16), _features(1, 150, 16, shift=0.3)
  stats_a, stats_b = fid.gaussian_stats(a), fid.gaussian_stats(b)
  np.testing.assert_allclose(stats_a[1], np.cov(a.T), rtol=1e-12)
  got = fid.frechet_distance(*stats_a, *stats_b)
  assert got == pytest.approx(_reference_fid(*stats_a, *stats_b), rel=1e-9)
  # Rank-deficient covariances (fewer samples than dimensions), as a round
  # of a few dozen negatives gives against 2048 features.
  # fid_from_features takes its low-rank route here.
  a, b = _features(2, 10, 32), _features(3, 12, 32, shift=0.1)
  stats_a, stats_b = fid.gaussian_stats(a), fid.gaussian_stats(b)
  want = _reference_fid(*stats_a, *stats_b)
  assert fid.fid_from_features(a, b) == pytest.approx(want, rel=1e-6)
  assert fid.frechet_distance(*stats_a, *stats_b) == pytest.approx(
      want, rel=1e-6)
  assert fid.fid_from_features(a, a) == pytest.approx(0, abs=1e-9)


def test_frechet_distance_is_zero_for_equal_stats_and_grows_with_shift():
  mu, sigma = fid.gaussian_stats(_features(4, 100, 12))
  assert abs(fid.frechet_distance(mu, sigma, mu, sigma)) < 1e-9
  direction = np.random.default_rng(5).normal(size=12)
  distances = [fid.frechet_distance(mu, sigma, mu + t * direction, sigma)
               for t in (0.5, 1.0, 2.0)]
  # Equal covariances: exactly the squared mean shift.
  np.testing.assert_allclose(
      distances, [t * t * direction @ direction for t in (0.5, 1.0, 2.0)],
      rtol=1e-9)


def test_frechet_distance_refuses_mismatched_shapes():
  with pytest.raises(ConfigError, match="means"):
    fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# Inception score --------------------------------------------------------------


def _reference_is(logits, splits):
  """The original code's loop (softmax, then per part exp(mean KL))."""
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  n, scores = len(p), []
  for i in range(splits):
    part = p[i * n // splits:(i + 1) * n // splits]
    py = part.mean(0, keepdims=True)
    kl = np.sum(part * (np.log(part) - np.log(py)), axis=1)
    scores.append(np.exp(kl.mean()))
  return np.mean(scores), np.std(scores)


def test_inception_score_equals_reference():
  logits = np.random.default_rng(6).normal(0, 3, (53, 20))
  for splits in (1, 4, 10):
    np.testing.assert_allclose(fid.inception_score(logits, splits),
                               _reference_is(logits, splits), rtol=1e-10)


def test_inception_score_limits():
  assert fid.inception_score(np.zeros((30, 1008)), 10) == pytest.approx(
      (1.0, 0.0))
  # Confident and distinct within each part of 5: the score is 5.
  logits = np.full((50, 1008), -1e4)
  logits[np.arange(50), np.arange(50) % 5 + 7 * (np.arange(50) // 5)] = 0
  mean, std = fid.inception_score(logits, 10)
  assert mean == pytest.approx(5.0, rel=1e-9) and std < 1e-9
  with pytest.raises(ConfigError, match="splits"):
    fid.inception_score(np.zeros((4, 10)), 10)


# The network ------------------------------------------------------------------


@pytest.fixture(scope="module")
def params():
  return inception.random_params(reference.PARAMS_SEED)


def test_network_shapes(params):
  images = np.random.default_rng(7).uniform(-1, 1, (2, 24, 24, 1))
  features, logits = inception.inception_features(params, images, batch=2,
                                                  resize_to=75)
  assert features.shape == (2, inception.FEATURES)
  assert logits.shape == (2, inception.CLASSES)
  assert features.dtype == np.float64 and np.all(np.isfinite(logits))
  assert np.all(features >= 0)   # the mean of ReLU outputs
  assert not np.allclose(features[0], features[1])


def test_parameter_names_match_pytorch_fid():
  shapes = {inception.torch_name(p): inception.torch_shape(p, s)
            for p, s in inception.param_shapes().items()}
  # torchvision's BasicConv2d layers (94) with four tensors of BatchNorm
  # each, plus the final layer.
  assert len(shapes) == 94 * 5 + 2
  assert shapes["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
  assert shapes["Conv2d_1a_3x3.bn.running_var"] == (32,)
  assert shapes["Mixed_5b.branch_pool.conv.weight"] == (32, 192, 1, 1)
  assert shapes["Mixed_6b.branch7x7_2.conv.weight"] == (128, 128, 1, 7)
  assert shapes["Mixed_6e.branch7x7dbl_2.conv.weight"] == (192, 192, 7, 1)
  assert shapes["Mixed_7a.branch7x7x3_4.conv.weight"] == (192, 192, 3, 3)
  assert shapes["Mixed_7c.branch3x3dbl_3b.conv.weight"] == (384, 384, 3, 1)
  assert shapes["Mixed_7c.branch_pool.conv.weight"] == (192, 2048, 1, 1)
  assert shapes["fc.weight"] == (1008, 2048)


def _assert_trees_equal(a, b):
  flat_a, flat_b = inception.flatten_params(a), inception.flatten_params(b)
  assert flat_a.keys() == flat_b.keys()
  for k in flat_a:
    np.testing.assert_array_equal(flat_a[k], flat_b[k], err_msg=k)


def _stand_in_torch(monkeypatch, load):
  """`import torch` gives a module whose only function is `load`."""
  monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(load=load))


def test_pth_to_npz_round_trip_without_pytorch(params, tmp_path, monkeypatch):
  """The .pth reader and the converter on the state dict that torch.load
  gives (its names and layouts: the recorded test below), torch.load
  stood in for."""
  state = reference.numpy_state_dict(params)
  pth, npz = str(tmp_path / "w.pth"), str(tmp_path / "w.npz")
  with open(pth, "wb") as f:
    f.write(b"read by the stand-in")
  calls = []

  def load(path, **kw):
    calls.append((path, kw))
    return dict(state)

  def refuse(path, **kw):
    raise RuntimeError("Invalid magic number; corrupt file?")

  _stand_in_torch(monkeypatch, load)
  _assert_trees_equal(inception.load_params(pth), params)
  assert inception.main(["--convert", pth, npz]) == 0
  # On the CPU, without unpickling code.
  assert calls == [(pth, dict(map_location="cpu", weights_only=True))] * 2
  monkeypatch.setitem(sys.modules, "torch", None)   # the .npz needs none
  _assert_trees_equal(inception.load_params(npz), params)
  # What torch.load refuses, or a file that holds no state dict.
  _stand_in_torch(monkeypatch, refuse)
  with pytest.raises(ConfigError, match=r"not a readable PyTorch file "
                     r"\(RuntimeError: Invalid magic"):
    inception.load_params(pth)
  _stand_in_torch(monkeypatch, lambda path, **kw: [state])
  with pytest.raises(ConfigError, match="holds a list, not a state dict"):
    inception.load_params(pth)


def test_converter_command_line_reports_errors(tmp_path, capsys):
  # A missing file is one sentence on stderr and exit status 1.
  assert inception.main(["--convert", str(tmp_path / "absent.pth"),
                         str(tmp_path / "out.npz")]) == 1
  err = capsys.readouterr().err
  assert "absent.pth' does not exist" in err and "download" in err
  assert not os.path.exists(tmp_path / "out.npz")


def test_refuses_missing_unexpected_and_misshapen(params, tmp_path):
  good = reference.numpy_state_dict(params)
  missing = dict(good)
  del missing["Mixed_6c.branch7x7_3.bn.running_mean"]
  with pytest.raises(ConfigError,
                     match=r"lacks .*'Mixed_6c.branch7x7_3.bn.running_mean'"):
    inception.params_from_state_dict(missing)
  extra = dict(good, **{"AuxLogits.fc.weight": good["fc.weight"]})
  with pytest.raises(ConfigError, match=r"'AuxLogits.fc.weight'"):
    inception.params_from_state_dict(extra)
  bad = dict(good)
  bad["fc.weight"] = bad["fc.weight"][:1000]   # torchvision's 1000 classes
  with pytest.raises(ConfigError,
                     match=r"'fc.weight' the shape \(1000, 2048\)"):
    inception.params_from_state_dict(bad)
  # Our .npz is checked the same way, and a foreign .npz is refused by name.
  npz = str(tmp_path / "w.npz")
  flat = inception.flatten_params(params)
  del flat["Mixed_5d/branch1x1/bn/scale"]
  np.savez(npz, __format__=np.array(inception.NPZ_FORMAT), **flat)
  with pytest.raises(ConfigError, match="'Mixed_5d/branch1x1/bn/scale'"):
    inception.load_params(npz)
  np.savez(npz, x=np.zeros(3))
  with pytest.raises(ConfigError, match="not one written by this library"):
    inception.load_params(npz)


# Against PyTorch ops with the same weights ------------------------------------
# Recorded once with PyTorch (tests/data/make_inception_reference.py), so
# checked without it; the live comparisons after them need PyTorch.

# XLA's CPU convolutions are float32 throughout (they differ from PyTorch's
# by 1.5e-6 of the largest output); GPUs and TPUs run float32 convolutions
# in TF32 or bf16 passes by default.
_TOL = 1e-5 if jax.default_backend() == "cpu" else 2e-3


def _assert_close(got, want, tol=_TOL):
  np.testing.assert_allclose(got, want, rtol=tol,
                             atol=tol * np.abs(want).max())


@pytest.fixture(scope="module")
def recorded(params):
  """The recorded PyTorch outputs, once the weights and inputs drawn here
  are checked to be those they were recorded for."""
  with np.load(reference.PATH) as f:
    rec = {k: f[k] for k in f.files}
  redo = (" than the recorded reference was made with; rerun "
          "tests/data/make_inception_reference.py where PyTorch is installed")
  np.testing.assert_allclose(
      reference.params_sums(inception.flatten_params(params)),
      rec["params_sums"], rtol=1e-6, atol=1e-9,
      err_msg="random_params draws other weights" + redo)
  np.testing.assert_allclose(reference.input_sums(), rec["input_sums"],
                             rtol=1e-6, err_msg="NumPy draws other inputs"
                             + redo)
  return rec


def _our_network(params):
  """Ours on the reference's images: one input shape in all these tests
  (and test_network_shapes'), one compilation."""
  return inception.inception_features(params, reference.network_images(),
                                      batch=2, resize_to=reference.RESIZE_TO,
                                      quantize=False)


_e2_block = jax.jit(inception.FIDInceptionE("max").apply)


def _our_e2(params, x):
  """Mixed_7c alone, at 3×3 (all border), where its max pool and the other
  blocks' average pools differ most."""
  return np.asarray(_e2_block({"params": params["Mixed_7c"]},
                              jnp.asarray(x)))


def test_network_equals_recorded_pytorch_ops(params, recorded):
  features, logits = _our_network(params)
  _assert_close(features, recorded["network_features"])
  _assert_close(logits, recorded["network_logits"])


def test_inception_e2_block_equals_recorded_pytorch_ops(params, recorded):
  _assert_close(_our_e2(params, reference.e2_input()), recorded["e2_output"])


# One compilation per size instead of one per operation.
_resize = jax.jit(inception.resize_bilinear, static_argnums=1)


def test_resize_equals_recorded_torch_interpolate(recorded):
  for (size_in, size_out), x in zip(reference.RESIZE_CASES,
                                    reference.resize_inputs()):
    ours = np.asarray(_resize(jnp.asarray(x), size_out))
    if size_in == size_out:
      # torch's is the identity, to within the recorded difference.
      diff = float(recorded["resize_identity_max_diff"])
      assert diff < 1e-6
      np.testing.assert_allclose(ours, x, atol=1e-5 - diff)
    else:
      np.testing.assert_allclose(
          ours, recorded[f"resize_{size_in}_{size_out}"], atol=1e-5)


def test_pytorch_layout_equals_the_recorded_pth(params, recorded):
  """Our state dict has the names, shapes and values (so the layouts) of the
  one PyTorch saved, loaded back and ran the recorded network with."""
  state = reference.numpy_state_dict(params)
  np.testing.assert_array_equal(reference.tensor_list(state),
                                recorded["pth_tensors"])
  np.testing.assert_allclose(reference.layout_fingerprint(state),
                             recorded["pth_fingerprint"], rtol=1e-9)


def test_pth_to_npz_round_trip(params, tmp_path):
  torch = _torch()
  pth, npz = str(tmp_path / "w.pth"), str(tmp_path / "w.npz")
  torch.save(reference.torch_state_dict(params), pth)
  _assert_trees_equal(inception.load_params(pth), params)
  assert inception.main(["--convert", pth, npz]) == 0
  _assert_trees_equal(inception.load_params(npz), params)


def test_network_equals_pytorch_ops(params):
  _torch()
  theirs = reference.torch_network_outputs(
      reference.torch_state_dict(params), reference.network_images())
  for got, want in zip(_our_network(params), theirs):
    _assert_close(got, want)


def test_inception_e2_block_equals_pytorch_ops(params):
  _torch()
  x = reference.e2_input()
  _assert_close(_our_e2(params, x), reference.torch_e2_block(
      reference.torch_state_dict(params), x))


def test_resize_equals_torch_interpolate():
  _torch()
  for (_, size_out), x in zip(reference.RESIZE_CASES,
                              reference.resize_inputs()):
    ours = np.asarray(_resize(jnp.asarray(x), size_out))
    np.testing.assert_allclose(ours, reference.torch_resize(x, size_out),
                               atol=1e-5)


# The per-round hook ----------------------------------------------------------


def test_fid_is_off_until_named_and_says_how(monkeypatch):
  """A generating run without `fid` in eval.per_round logs once how to turn
  it on; weights without `fid`, or `fid` without weights, are refused."""
  config = load_config("winn_texture.py:tiny")
  fid._told.discard(fid.HOW_TO_ENABLE)
  # Recorded at the call: whether absl's records reach pytest's capture
  # depends on what earlier tests did to absl's handler.
  logged = []
  monkeypatch.setattr(fid.logging, "info", lambda fmt, *a: logged.append(
      fmt % a))
  has = {"generated": True, "real": True, "generated_side": 16}
  evaluators.check(config, "WINN", has)
  evaluators.check(config, "WINN", has)
  assert logged == [fid.HOW_TO_ENABLE]
  assert "inception_weights" in fid.HOW_TO_ENABLE
  assert "eval.per_round" in fid.HOW_TO_ENABLE
  config.eval.inception_weights = "w.npz"
  with pytest.raises(ConfigError, match="no eval stage names 'fid'"):
    evaluators.check(config, "WINN", has)
  config.eval.inception_weights, config.eval.per_round = "", "swd,fid"
  with pytest.raises(ConfigError, match="needs eval.inception_weights"):
    evaluators.check(config, "WINN", has)
  with pytest.raises(ConfigError, match="add 'fid' to eval.per_round"):
    fid.round_metrics(config, None, None)


def test_round_metrics_with_weights(params, tmp_path, monkeypatch):
  npz = str(tmp_path / "w.npz")
  inception.save_npz(params, npz)
  config = ml_collections.ConfigDict({"eval": {
      "inception_weights": npz, "inception_splits": 10,
      "inception_batch": 2}})
  # The network at 75×75 keeps the test quick; the metric code is the same.
  real_forward = inception.inception_features
  monkeypatch.setattr(inception, "inception_features",
                      lambda p, x, b: real_forward(p, x, b, resize_to=75))
  rng = np.random.default_rng(11)
  fake = rng.uniform(-1, 1, (6, 24, 24, 1))
  real = rng.uniform(-1, 1, (5, 24, 24, 1))
  got = fid.round_metrics(config, fake, real)
  f_fake, l_fake = real_forward(params, fake, 2, resize_to=75)
  f_real, _ = real_forward(params, real, 2, resize_to=75)
  assert got["fid"] == pytest.approx(fid.fid_from_features(f_fake, f_real))
  # splits capped at the 6 samples: one sample per part scores exactly 1.
  assert got["inception_score"] == pytest.approx(1.0)
  assert fid.round_metrics(config, real, real)["fid"] == pytest.approx(
      0.0, abs=1e-6 * got["fid"])


def test_texture_trainer_reports_fid_of_its_crops(params, tmp_path,
                                                  monkeypatch):
  """The texture trainers' call: the negatives' unpadded centres against
  as many random crops of the texture, the same crops every round."""
  npz = str(tmp_path / "w.npz")
  inception.save_npz(params, npz)
  real_forward = inception.inception_features
  monkeypatch.setattr(inception, "inception_features",
                      lambda p, x, b: real_forward(p, x, b, resize_to=75))
  config = load_config("igm_texture.py:tiny")
  assert config.eval.inception_weights == ""
  config.eval.inception_weights, config.eval.inception_batch = npz, 2
  config.eval.per_round = "fid"
  model = TextureIGM(config, parallel.make_mesh())
  # IGM's negatives are canvases: a 24×24 texture with 4 pixels of padding.
  negatives = np.random.default_rng(12).uniform(
      -1, 1, (4,) + model.negative_shape).astype(np.float32)
  subject = model.evaluation_subject(negatives)
  got = evaluators.evaluate(config, "per_round", subject)
  assert evaluators.evaluate(config, "per_round", subject) == got
  real = np.asarray(model.positive_patches(
      jax.random.fold_in(model.base_key, 0x5D0), 4, 24))
  fake = negatives[:, 4:28, 4:28]
  # Each real crop is a 24×24 window of the padded texture canvas.
  canvas = np.asarray(model.positive[0])
  windows = np.lib.stride_tricks.sliding_window_view(
      canvas, (24, 24), axis=(0, 1)).transpose(0, 1, 3, 4, 2)
  assert real.shape == fake.shape
  for crop in real:
    assert np.any(np.all(windows == crop, axis=(2, 3, 4)))
  assert got == pytest.approx(fid.round_metrics(config, fake, real))
  assert got["fid"] > 0 and got["inception_score"] >= 1


def test_missing_file_or_pytorch_is_one_sentence(tmp_path, monkeypatch):
  # Before training: the run's check reads the weights it names.
  config = load_config("winn_texture.py:tiny")
  config.eval.per_round = "swd,fid"
  config.eval.inception_weights = str(tmp_path / "absent.pth")
  with pytest.raises(ConfigError, match="does not exist; download https://"):
    evaluators.check(config, "WINN", {"generated": True, "real": True})
  pth = tmp_path / "w.pth"
  pth.write_bytes(b"not read")
  monkeypatch.setitem(sys.modules, "torch", None)   # import torch fails
  with pytest.raises(UserError, match=r"needs PyTorch.*--convert in.pth "
                     r"out.npz"):
    inception.load_params(str(pth))
