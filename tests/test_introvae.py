"""IntroVAE: the losses against float64 numpy, the stop-gradient and the
E-then-G order of Algorithm 1, a tiny training run that resumes exactly,
sampling a saved model in a fresh process, NaN stops, and bad input."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from introjax import checkpoint as ckpt_lib
from introjax.errors import ConfigError, DataError, NonFiniteError
from introjax.eval import evaluators
from introjax.eval import msssim
from introjax.objectives import introvae as losses
from introjax.training import introvae

from conftest import load_config, subprocess_env

RNG = np.random.default_rng(0)


def _kl64(mu, logvar):
  mu, logvar = np.float64(mu), np.float64(logvar)
  return 0.5 * np.sum(mu ** 2 + np.exp(logvar) - logvar - 1, axis=-1)


def _err64(x, xr):
  d = (np.float64(xr) - np.float64(x)) / 2
  return np.sum(d.reshape(len(d), -1) ** 2, axis=-1)


# The losses ------------------------------------------------------------------


def test_kl_and_reconstruction_match_float64():
  mu = RNG.normal(size=(5, 7)).astype(np.float32)
  logvar = RNG.normal(size=(5, 7)).astype(np.float32)
  x = RNG.uniform(-1, 1, (5, 4, 4, 3)).astype(np.float32)
  xr = RNG.uniform(-1, 1, (5, 4, 4, 3)).astype(np.float32)
  np.testing.assert_allclose(losses.kl_per_image(mu, logvar),
                             _kl64(mu, logvar), rtol=1e-5)
  # The KL of N(0, I) to itself is 0; of a shifted mean, ½|μ|².
  assert float(losses.kl_per_image(np.zeros((1, 3)), np.zeros((1, 3)))[0]) == 0
  np.testing.assert_allclose(
      losses.kl_per_image(np.full((1, 4), 2.0), np.zeros((1, 4))), [8.0])
  np.testing.assert_allclose(losses.squared_error(x, xr), _err64(x, xr),
                             rtol=1e-5)
  np.testing.assert_allclose(losses.reconstruction_loss(x, xr),
                             0.5 * _err64(x, xr).mean(), rtol=1e-5)


@pytest.mark.parametrize("margin", [0.5, 30.0])
def test_introvae_losses_match_eqs_11_and_12(margin):
  kl_real, kl_rec, kl_fake = (RNG.uniform(0, 20, 6) for _ in range(3))
  l_ae, alpha, beta = 3.7, 0.25, 0.5
  want_e = (kl_real.mean() + alpha * (max(0, margin - kl_rec.mean())
                                      + max(0, margin - kl_fake.mean()))
            + beta * l_ae)
  want_g = alpha * (kl_rec.mean() + kl_fake.mean()) + beta * l_ae
  got_e = losses.introvae_encoder_loss(*(np.float32(v) for v in (
      kl_real, kl_rec, kl_fake)), l_ae, alpha, margin, beta)
  got_g = losses.introvae_generator_loss(np.float32(kl_rec),
                                         np.float32(kl_fake), l_ae, alpha,
                                         beta)
  np.testing.assert_allclose(got_e, want_e, rtol=1e-5)
  np.testing.assert_allclose(got_g, want_g, rtol=1e-5)


def test_soft_introvae_losses_match_float64():
  e_real, e_rec, e_fake = (RNG.uniform(0, 50, 6) for _ in range(3))
  k_real, k_rec, k_fake = (RNG.uniform(0, 30, 6) for _ in range(3))
  b_rec, b_kl, b_neg, scale, gamma = 0.5, 1.0, 256.0, 1 / 768, 1e-8
  want_e = (scale * (b_rec * e_real.mean() + b_kl * k_real.mean())
            + 0.25 * (np.exp(-2 * scale * (b_rec * e_rec + b_neg * k_rec)).mean()
                      + np.exp(-2 * scale * (b_rec * e_fake
                                             + b_neg * k_fake)).mean()))
  want_g = scale * (b_rec * e_real.mean()
                    + 0.5 * b_kl * (k_rec.mean() + k_fake.mean())
                    + gamma * 0.5 * b_rec * (e_rec.mean() + e_fake.mean()))
  f = np.float32
  got_e = losses.soft_encoder_loss(f(e_real), f(k_real), f(e_rec), f(k_rec),
                                   f(e_fake), f(k_fake), b_rec, b_kl, b_neg,
                                   scale)
  got_g = losses.soft_generator_loss(f(e_real), f(k_rec), f(k_fake), f(e_rec),
                                     f(e_fake), b_rec, b_kl, scale, gamma)
  np.testing.assert_allclose(got_e, want_e, rtol=1e-5)
  np.testing.assert_allclose(got_g, want_g, rtol=1e-5)


# Networks, ng and the order of the updates -----------------------------------


@pytest.fixture(scope="module")
def small():
  """A tiny trainer on the faces with a large margin (hinges active), its
  initial state and one batch."""
  config = load_config("introvae_faces.py:tiny")
  config.introvae.margin = "1000"
  # 8×8 and one stage: the smallest network, compiled fastest.
  config.data.image_size, config.model.channels = 8, (4,)
  config.model.latent_dim = 4
  # Plain SGD: an update is −lr·gradient, so updates tell gradients apart
  # (Adam's first step is lr·sign(gradient)).
  config.train.optimizer = "sgd"
  # A small β and a large step, so that the adversarial terms dominate and
  # the E update moves E enough to change G's gradient.
  config.introvae.beta, config.train.learning_rate = 0.01, 0.2
  trainer = introvae.IntroVAETrainer(config)
  state = trainer.init_state()
  key = jax.random.PRNGKey(1)
  x = trainer._draw(trainer.images, key)
  z_p = jax.random.normal(jax.random.PRNGKey(2), (trainer.batch_size,
                                                  trainer.latent_dim))
  return trainer, state, x, z_p


def test_encoder_loss_stops_gradients_at_the_generated_images(small):
  """∇_E L_E equals the gradient with X_r, X_p as constant inputs (ng):
  the adversarial terms reach E only through Enc(X_s)."""
  trainer, state, x, z_p = small
  key, alpha, margin = jax.random.PRNGKey(3), 0.25, 1000.0
  beta = trainer.iv.beta
  ours = lambda e: trainer.encoder_loss(e, state.generator, x, z_p, key,
                                        alpha, margin)[0]

  k_eps = jax.random.split(key, 3)[0]
  mu, logvar = trainer.encoder.apply(state.encoder, x)
  z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(k_eps, mu.shape)
  x_r = trainer.generator.apply(state.generator, z)   # constants below
  x_p = trainer.generator.apply(state.generator, z_p)

  def by_hand(e):
    mu, logvar = trainer.encoder.apply(e, x)
    z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(k_eps, mu.shape)
    l_ae = 0.5 * jnp.mean(losses.squared_error(
        x, trainer.generator.apply(state.generator, z)))
    kl = lambda im: jnp.mean(losses.kl_per_image(*trainer.encoder.apply(e, im)))
    return (jnp.mean(losses.kl_per_image(mu, logvar))
            + alpha * (jax.nn.relu(margin - kl(x_r))
                       + jax.nn.relu(margin - kl(x_p))) + beta * l_ae)

  # Without ng the hinge's gradient through G(z(E)) would add to it.
  def no_ng(e):
    mu, logvar = trainer.encoder.apply(e, x)
    z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(k_eps, mu.shape)
    xr = trainer.generator.apply(state.generator, z)
    kl = lambda im: jnp.mean(losses.kl_per_image(*trainer.encoder.apply(e, im)))
    return by_hand(e) - alpha * jax.nn.relu(margin - kl(x_r)) + alpha * \
        jax.nn.relu(margin - kl(xr))
  leaves = lambda t: np.concatenate([np.ravel(a) for a in jax.tree.leaves(t)])
  grad, want, without = jax.jit(lambda e: tuple(
      jax.grad(f)(e) for f in (ours, by_hand, no_ng)))(state.encoder)
  np.testing.assert_allclose(leaves(grad), leaves(want), rtol=2e-4, atol=1e-6)
  assert not np.allclose(leaves(without), leaves(want),
                         rtol=2e-4, atol=1e-6)


def test_generator_is_trained_through_the_encoder_after_its_update(small):
  """One step = the E update, then G's gradient of eq. 12 through the
  *updated* E (Algorithm 1 lines 9–12)."""
  trainer, state, x, z_p = small
  images = trainer.images
  alpha, margin = jnp.float32(0.25), jnp.float32(1000.0)
  key = jax.random.PRNGKey(5)
  carry = (state.encoder, state.generator, state.opt_e, state.opt_g)
  (enc1, dec1, _, _), _ = jax.jit(trainer.step)(carry, key, images, alpha,
                                                margin)
  k_batch, k_prior, k_loss = jax.random.split(key, 3)
  xb = trainer._draw(images, k_batch)
  zp = jax.random.normal(k_prior, (trainer.batch_size, trainer.latent_dim))
  _, (z, _) = jax.jit(trainer.encoder_loss)(state.encoder, state.generator,
                                            xb, zp, k_loss, alpha, margin)

  @jax.jit
  def dec_after(enc):
    g = jax.grad(trainer.generator_loss)(state.generator, enc, xb, z, zp,
                                         k_loss, alpha)
    updates, _ = trainer.tx_g.update(g, state.opt_g, state.generator)
    return jax.tree.map(jnp.add, state.generator, updates)

  leaves = lambda t: np.concatenate([np.ravel(a) for a in jax.tree.leaves(t)])
  dec0 = leaves(state.generator)
  moved = leaves(dec1) - dec0
  np.testing.assert_allclose(moved, leaves(dec_after(enc1)) - dec0,
                             rtol=1e-3, atol=1e-3 * np.abs(moved).max())
  stale = leaves(dec_after(state.encoder)) - dec0
  assert np.abs(stale - moved).max() > 3e-3 * np.abs(moved).max()
  # G's adversarial gradient (β tiny) reaches G through Enc: not zero.
  g = jax.jit(jax.grad(lambda d: losses.introvae_generator_loss(
      losses.kl_per_image(*trainer.encoder.apply(
          enc1, trainer.generator.apply(d, zp))), jnp.zeros(1), 0.0, 0.25,
      0.0)))(state.generator)
  assert np.abs(leaves(g)).max() > 0


# A tiny run: metrics, PNGs, resume, sampling in a fresh process --------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """The tiny faces config trained 3 rounds straight, and a copy with round
  3 removed, then resumed to round 3."""
  import shutil
  base = tmp_path_factory.mktemp("introvae")
  config = load_config("introvae_faces.py:tiny")
  straight = str(base / "straight")
  trainer = introvae.IntroVAETrainer(config)
  introvae.train_and_evaluate(config, straight, trainer)
  resumed = str(base / "resumed")
  shutil.copytree(straight, resumed)
  shutil.rmtree(os.path.join(resumed, "checkpoints", "3"))
  with open(os.path.join(resumed, "metrics.jsonl")) as f:
    first_two = f.readlines()[:2]
  with open(os.path.join(resumed, "metrics.jsonl"), "w") as f:
    f.writelines(first_two)
  introvae.train_and_evaluate(config, resumed, trainer)
  return config, straight, resumed, trainer


def _metrics(workdir):
  import json
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_tiny_run_writes_metrics_pngs_and_results(tiny_run):
  config, straight, _, _ = tiny_run
  rows = _metrics(straight)
  assert [r["round"] for r in rows] == [1, 2, 3]
  for key in ("loss_e", "loss_g", "kl_real", "kl_rec", "kl_fake", "l_ae",
              "recon_mse", "swd_mean", "ms_ssim", "ms_ssim_real", "collapse"):
    assert all(np.isfinite(r[key]) for r in rows), key
  assert rows[0]["pretraining"] == 1 and rows[1]["pretraining"] == 0
  # margin="auto": the pre-training's suggestion is the margin used after.
  assert rows[1]["margin"] == rows[0]["suggested_margin"] > 0
  assert rows[1]["alpha"] == 0.25 and rows[0]["alpha"] == 0
  names = set(os.listdir(os.path.join(straight, "samples")))
  for t in (1, 2, 3):
    for kind in ("reconstructions", "samples", "interpolations"):
      assert f"round_{t:03d}_{kind}.png" in names
  assert os.path.exists(os.path.join(straight, "results.json"))


def test_one_program_for_every_round(tiny_run):
  """VAE and IntroVAE rounds, before and after margin=auto, and the resumed
  run share one compiled round (α and m are arguments, not constants)."""
  trainer = tiny_run[3]
  assert trainer._round._cache_size() == 1


def test_resume_continues_exactly(tiny_run):
  _, straight, resumed, _ = tiny_run
  a, b = _metrics(straight), _metrics(resumed)
  assert [r["round"] for r in b] == [1, 2, 3]
  for key in ("loss_e", "loss_g", "kl_real", "recon_mse"):
    np.testing.assert_allclose(a[2][key], b[2][key], rtol=1e-4)


def test_tiny_run_learns_faces_not_noise(tiny_run):
  """Reconstructions beat the mean face and samples differ from each other
  but are not noise (smoother than random pixels)."""
  config, straight, _, _ = tiny_run
  trainer, state, _ = introvae.load_saved(straight)
  held = trainer.heldout
  recon = trainer.reconstruct(state, held)
  mean_face = held.mean(axis=0, keepdims=True)
  assert np.mean((recon - held) ** 2) < np.mean((mean_face - held) ** 2)
  samples = trainer.sample(state, 8, jax.random.PRNGKey(0))
  assert samples.std(axis=0).mean() > 0.01              # not one image
  roughness = lambda im: np.abs(np.diff(im, axis=1)).mean()
  noise = np.random.default_rng(0).uniform(-1, 1, samples.shape)
  assert roughness(samples) < 0.5 * roughness(noise)    # not noise


def test_saved_model_samples_the_same_images_in_a_fresh_process(tiny_run,
                                                                tmp_path):
  _, straight, _, _ = tiny_run
  trainer, state, _ = introvae.load_saved(straight)
  here = introvae.write_grids(trainer, state, str(tmp_path / "here"), 8,
                              jax.random.PRNGKey(4))
  subprocess.run([sys.executable, "-m", "introjax.sample",
                  f"--workdir={straight}", "--seed=4", "--num_images=8",
                  f"--out={tmp_path / 'fresh'}"], check=True,
                 env=subprocess_env(), capture_output=True, timeout=120)
  from PIL import Image
  for kind, path in here.items():
    fresh = np.asarray(Image.open(str(tmp_path / f"fresh_{kind}.png")))
    mine = np.asarray(Image.open(path))
    assert fresh.shape == mine.shape
    assert np.abs(fresh.astype(int) - mine.astype(int)).max() <= 1, kind


# Stability ---------------------------------------------------------------------


def test_nan_stops_naming_the_term_and_keeps_the_checkpoint(tiny_run,
                                                            tmp_path):
  config, straight, _, trainer = tiny_run
  per_step = {name: np.ones(4, np.float32) for name in introvae.TERMS}
  per_step["params_finite"] = np.ones(4, bool)
  per_step["kl_fake"][2] = np.inf
  per_step["loss_e"][2:] = np.nan
  with pytest.raises(NonFiniteError, match="KL of prior samples"):
    trainer._check_finite(per_step, 7)
  # End to end: weights that overflow stop round 4; round 3 stays the latest.
  import shutil
  workdir = str(tmp_path / "nan")
  shutil.copytree(straight, workdir)
  four = load_config("introvae_faces.py:tiny")
  four.rounds = 4
  restore = trainer.from_items
  def overflowing(items):
    state = restore(items)
    return state._replace(encoder=jax.tree.map(lambda p: p * 1e30,
                                               state.encoder))
  trainer.from_items = overflowing
  try:
    with pytest.raises(NonFiniteError, match=r"NaN or Inf in the .* round 4"):
      introvae.train_and_evaluate(four, workdir, trainer)
  finally:
    trainer.from_items = restore
  checkpoints = ckpt_lib.Checkpointer(workdir)
  try:
    assert checkpoints.latest_round() == 3
  finally:
    checkpoints.close()


def test_runaway_and_collapse_are_flagged_in_the_progress_line(small):
  trainer = small[0]
  metrics = {"loss_e": 1, "loss_g": 1, "kl_real": 300, "kl_rec": 1,
             "kl_fake": 1, "margin": 100, "l_ae": 1, "images_per_second": 1,
             "kl_runaway": 1.0, "kl_runaway_fraction": 0.8, "collapse": 1.0,
             "ms_ssim": 0.97, "ms_ssim_real": 0.3}
  line = trainer.progress(4, 9, metrics, 1.0)
  assert "KL runaway" in line and "80%" in line and "collapse" in line
  per_step = {"kl_real": np.arange(1, 11.0), "kl_rec": np.full(10, 2.0),
              "kl_fake": np.full(10, 3.0)}
  assert introvae.suggest_margin(per_step) == np.ceil(1.1 * np.percentile(
      np.arange(1, 11.0), 90))


# MS-SSIM -------------------------------------------------------------------------


def test_ms_ssim_single_scale_matches_skimage():
  from skimage.metrics import structural_similarity
  a = RNG.uniform(-1, 1, (2, 16, 16, 1)).astype(np.float32)
  b = np.clip(a + RNG.normal(0, 0.3, a.shape), -1, 1).astype(np.float32)
  assert msssim.num_scales(16) == 1 and msssim.num_scales(64) == 3
  got = msssim.ms_ssim(a, b)
  for i in range(2):
    want = structural_similarity(
        (a[i, ..., 0] + 1) / 2, (b[i, ..., 0] + 1) / 2, data_range=1.0,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    np.testing.assert_allclose(got[i], want, rtol=2e-3)
  np.testing.assert_allclose(msssim.ms_ssim(a, a), 1.0, rtol=1e-5)


def test_ms_ssim_evaluator_sees_collapse():
  faces = RNG.uniform(-1, 1, (8, 32, 32, 1)).astype(np.float32)
  same = np.repeat(faces[:1], 8, axis=0)
  diverse = evaluators.run("ms_ssim", evaluators.Subject(generated=faces))
  collapsed = evaluators.run("ms_ssim", evaluators.Subject(generated=same))
  assert collapsed["ms_ssim"] > 0.99 > 0.5 > diverse["ms_ssim"]


# Bad input -----------------------------------------------------------------------


@pytest.mark.parametrize("field,value,match", [
    ("data.image_size", 24, "not a resolution of the IntroVAE network"),
    ("model.latent_dim", 0, "latent code needs at least one dimension"),
    ("introvae.margin", "-5", "must be > 0"),
    ("introvae.margin", "big", "neither a number nor 'auto'"),
    ("introvae.alpha", -0.1, "must be ≥ 0"),
])
def test_bad_settings_are_refused_in_one_sentence(field, value, match):
  config = load_config("introvae_faces.py:tiny")
  section, key = field.split(".")
  config[section][key] = value
  with pytest.raises(ConfigError, match=match) as error:
    introvae.check_config(config)
  import re
  assert not re.search(r"\.\s+[A-Z]", str(error.value))   # one sentence


def test_dataset_smaller_than_a_batch_is_refused():
  config = load_config("introvae_faces.py:tiny")
  config.data.max_images = 12   # 4 left after holding out 8; batch 8
  with pytest.raises(DataError, match="fewer than one batch"):
    introvae.IntroVAETrainer(config)
