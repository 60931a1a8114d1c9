"""FID, Inception score, and the FID Inception network (no real weights)."""
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import scipy.linalg

from conftest import load_config
from introjax import parallel
from introjax.errors import ConfigError, UserError
from introjax.eval import fid
from introjax.eval import inception
from introjax.training.igm import TextureIGM


def _torch():
  # Only the tests against PyTorch need it; the metrics run without.
  return pytest.importorskip("torch")


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
  return inception.random_params(0)


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


def _state_dict(params):
  """pytorch-fid's names and layouts for our `params`, as torch tensors
  (with the step counters a saved BatchNorm carries)."""
  torch = _torch()
  state = {}
  for path, value in inception.flatten_params(params).items():
    state[inception.torch_name(path)] = torch.from_numpy(
        np.ascontiguousarray(inception.to_torch_layout(path, value)))
    if path.endswith("bn/var"):
      state[inception.torch_name(path).replace(
          "running_var", "num_batches_tracked")] = torch.tensor(0)
  return state


def _assert_trees_equal(a, b):
  flat_a, flat_b = inception.flatten_params(a), inception.flatten_params(b)
  assert flat_a.keys() == flat_b.keys()
  for k in flat_a:
    np.testing.assert_array_equal(flat_a[k], flat_b[k], err_msg=k)


def test_pth_to_npz_round_trip(params, tmp_path):
  torch = _torch()
  pth, npz = str(tmp_path / "w.pth"), str(tmp_path / "w.npz")
  torch.save(_state_dict(params), pth)
  _assert_trees_equal(inception.load_params(pth), params)
  assert inception.main(["--convert", pth, npz]) == 0
  _assert_trees_equal(inception.load_params(npz), params)


def test_converter_command_line_reports_errors(tmp_path, capsys):
  # A missing file is one sentence on stderr and exit status 1.
  assert inception.main(["--convert", str(tmp_path / "absent.pth"),
                         str(tmp_path / "out.npz")]) == 1
  err = capsys.readouterr().err
  assert "absent.pth' does not exist" in err and "download" in err
  assert not os.path.exists(tmp_path / "out.npz")


def test_refuses_missing_unexpected_and_misshapen(params, tmp_path):
  _torch()
  good = _state_dict(params)
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


def _torch_network(state, x, resize_to):
  """pytorch-fid's forward (torchvision's Inception3 with the FID blocks),
  in torch.nn.functional over a state dict, NCHW in [−1, 1]."""
  torch = _torch()
  F = torch.nn.functional

  def conv(name, x, stride=1, padding=0):
    x = F.conv2d(x, state[f"{name}.conv.weight"], stride=stride,
                 padding=padding)
    x = F.batch_norm(x, state[f"{name}.bn.running_mean"],
                     state[f"{name}.bn.running_var"],
                     state[f"{name}.bn.weight"], state[f"{name}.bn.bias"],
                     training=False, eps=0.001)
    return F.relu(x)

  def avg(x):
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)

  def block_a(n, x):
    b5 = conv(f"{n}.branch5x5_2", conv(f"{n}.branch5x5_1", x), padding=2)
    b3 = conv(f"{n}.branch3x3dbl_1", x)
    b3 = conv(f"{n}.branch3x3dbl_2", b3, padding=1)
    b3 = conv(f"{n}.branch3x3dbl_3", b3, padding=1)
    return torch.cat([conv(f"{n}.branch1x1", x), b5, b3,
                      conv(f"{n}.branch_pool", avg(x))], 1)

  def block_b(n, x):
    b3 = conv(f"{n}.branch3x3", x, stride=2)
    bd = conv(f"{n}.branch3x3dbl_1", x)
    bd = conv(f"{n}.branch3x3dbl_2", bd, padding=1)
    bd = conv(f"{n}.branch3x3dbl_3", bd, stride=2)
    return torch.cat([b3, bd, F.max_pool2d(x, 3, 2)], 1)

  def block_c(n, x):
    r, c = (0, 3), (3, 0)
    b7 = conv(f"{n}.branch7x7_1", x)
    b7 = conv(f"{n}.branch7x7_3", conv(f"{n}.branch7x7_2", b7, padding=r),
              padding=c)
    bd = conv(f"{n}.branch7x7dbl_1", x)
    for i, pad in zip(range(2, 6), (c, r, c, r)):
      bd = conv(f"{n}.branch7x7dbl_{i}", bd, padding=pad)
    return torch.cat([conv(f"{n}.branch1x1", x), b7, bd,
                      conv(f"{n}.branch_pool", avg(x))], 1)

  def block_d(n, x):
    b3 = conv(f"{n}.branch3x3_2", conv(f"{n}.branch3x3_1", x), stride=2)
    b7 = conv(f"{n}.branch7x7x3_1", x)
    b7 = conv(f"{n}.branch7x7x3_2", b7, padding=(0, 3))
    b7 = conv(f"{n}.branch7x7x3_3", b7, padding=(3, 0))
    b7 = conv(f"{n}.branch7x7x3_4", b7, stride=2)
    return torch.cat([b3, b7, F.max_pool2d(x, 3, 2)], 1)

  def block_e(n, x, pool):
    b3 = conv(f"{n}.branch3x3_1", x)
    b3 = torch.cat([conv(f"{n}.branch3x3_2a", b3, padding=(0, 1)),
                    conv(f"{n}.branch3x3_2b", b3, padding=(1, 0))], 1)
    bd = conv(f"{n}.branch3x3dbl_2", conv(f"{n}.branch3x3dbl_1", x),
              padding=1)
    bd = torch.cat([conv(f"{n}.branch3x3dbl_3a", bd, padding=(0, 1)),
                    conv(f"{n}.branch3x3dbl_3b", bd, padding=(1, 0))], 1)
    pooled = F.max_pool2d(x, 3, 1, 1) if pool == "max" else avg(x)
    return torch.cat([conv(f"{n}.branch1x1", x), b3, bd,
                      conv(f"{n}.branch_pool", pooled)], 1)

  x = F.interpolate(x, size=(resize_to, resize_to), mode="bilinear",
                    align_corners=False)
  x = conv("Conv2d_1a_3x3", x, stride=2)
  x = conv("Conv2d_2a_3x3", x)
  x = F.max_pool2d(conv("Conv2d_2b_3x3", x, padding=1), 3, 2)
  x = conv("Conv2d_4a_3x3", conv("Conv2d_3b_1x1", x))
  x = F.max_pool2d(x, 3, 2)
  for n in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
    x = block_a(n, x)
  x = block_b("Mixed_6a", x)
  for n in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
    x = block_c(n, x)
  x = block_e("Mixed_7b", block_d("Mixed_7a", x), "avg")
  x = block_e("Mixed_7c", x, "max")
  features = x.mean(dim=(2, 3))
  return features, F.linear(features, state["fc.weight"], state["fc.bias"])


def test_network_equals_pytorch_ops(params):
  torch = _torch()
  # 24×24 up to 75×75, the smallest input: the odd grid sizes make every
  # pool's border matter (the 3×3 grid after Mixed_6a is all border). One
  # input shape in all these tests: one compilation.
  images = np.random.default_rng(8).uniform(-1, 1, (2, 24, 24, 3))
  ours = inception.inception_features(params, images, batch=2, resize_to=75)
  with torch.no_grad():
    theirs = _torch_network(
        _state_dict(params),
        torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32)), 75)
  for got, want in zip(ours, theirs):
    want = want.numpy()
    np.testing.assert_allclose(got, want, rtol=2e-3,
                               atol=2e-3 * np.abs(want).max())


def test_inception_e2_block_equals_pytorch_ops(params):
  """Mixed_7c alone, at 3×3 (all border), where its max pool and the other
  blocks' average pools differ most."""
  torch = _torch()
  full = params
  block = {"params": full["Mixed_7c"]}
  x = np.random.default_rng(9).normal(size=(2, 3, 3, 2048)).astype(np.float32)
  ours = np.asarray(inception.FIDInceptionE("max").apply(block, jnp.asarray(x)))
  state = {k[len("Mixed_7c."):]: v for k, v in _state_dict(full).items()
           if k.startswith("Mixed_7c.")}
  F = torch.nn.functional

  def conv(name, x, padding=0):
    x = F.conv2d(x, state[f"{name}.conv.weight"], padding=padding)
    return F.relu(F.batch_norm(
        x, state[f"{name}.bn.running_mean"], state[f"{name}.bn.running_var"],
        state[f"{name}.bn.weight"], state[f"{name}.bn.bias"], False,
        eps=0.001))

  t = torch.from_numpy(x.transpose(0, 3, 1, 2))
  with torch.no_grad():
    b3 = conv("branch3x3_1", t)
    bd = conv("branch3x3dbl_2", conv("branch3x3dbl_1", t), 1)
    want = torch.cat([
        conv("branch1x1", t),
        conv("branch3x3_2a", b3, (0, 1)), conv("branch3x3_2b", b3, (1, 0)),
        conv("branch3x3dbl_3a", bd, (0, 1)),
        conv("branch3x3dbl_3b", bd, (1, 0)),
        conv("branch_pool", F.max_pool2d(t, 3, 1, 1))], 1)
  want = want.numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(ours, want, rtol=1e-4,
                             atol=1e-4 * np.abs(want).max())


def test_resize_equals_torch_interpolate():
  torch = _torch()
  rng = np.random.default_rng(10)
  for size_in, size_out in ((32, 75), (120, 75), (299, 299)):
    x = rng.uniform(-1, 1, (1, size_in, size_in, 3)).astype(np.float32)
    ours = np.asarray(inception.resize_bilinear(jnp.asarray(x), size_out))
    want = torch.nn.functional.interpolate(
        torch.from_numpy(x.transpose(0, 3, 1, 2)), size=(size_out, size_out),
        mode="bilinear", align_corners=False).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(ours, want, atol=1e-5)


# The per-round hook ----------------------------------------------------------


def test_round_metrics_skip_when_no_weights(monkeypatch):
  config = ml_collections.ConfigDict({"eval": {"inception_weights": ""}})
  fid._told.discard(fid.HOW_TO_ENABLE)
  # Recorded at the call: whether absl's records reach pytest's capture
  # depends on what earlier tests did to absl's handler.
  logged = []
  monkeypatch.setattr(fid.logging, "info", lambda fmt, *a: logged.append(
      fmt % a))
  assert fid.round_metrics(config, None, None) == {}
  assert fid.round_metrics(config, None, None) == {}
  assert logged == [fid.HOW_TO_ENABLE]
  assert "inception_weights" in fid.HOW_TO_ENABLE


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
  model = TextureIGM(config, parallel.make_mesh())
  # IGM's negatives are canvases: a 24×24 texture with 4 pixels of padding.
  negatives = np.random.default_rng(12).uniform(
      -1, 1, (4,) + model.negative_shape).astype(np.float32)
  got = model.inception_metrics(negatives)
  assert model.inception_metrics(negatives) == got
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
  config = ml_collections.ConfigDict({"eval": {
      "inception_weights": str(tmp_path / "absent.pth")}})
  with pytest.raises(ConfigError, match="does not exist; download https://"):
    fid.enabled(config)
  pth = tmp_path / "w.pth"
  pth.write_bytes(b"not read")
  monkeypatch.setitem(sys.modules, "torch", None)   # import torch fails
  with pytest.raises(UserError, match=r"needs PyTorch.*--convert in.pth "
                     r"out.npz"):
    inception.load_params(str(pth))
