"""IntroVAE (Huang et al., NeurIPS 2018) on the harness: the encoder E is
the critic, the generator G the sampler, and a round is
`train.epochs_per_round` epochs of Algorithm 1.

One iteration, one compiled program (the round is a `lax.scan` over them):

    X ← batch; Z ← Enc(X); Z_p ~ N(0, I); X_r ← G(Z), X_p ← G(Z_p)
    E update:  L_E = L_REG(Z) + α Σ_s [m − L_REG(Enc(ng(X_s)))]⁺ + β L_AE
    G update:  L_G = α Σ_s L_REG(Enc'(X_s)) + β L_AE     (Enc': the updated E)

with one Adam per network (`optim.make_optimizer` on `train`). The first
`introvae.pretrain_rounds` rounds are the plain VAE (α = 0; §4.1), the same
program with α a traced 0; after them the run logs the margin it suggests
(a little above the KL of real and generated images the VAE reached, App.
D) and `introvae.margin="auto"` uses it. `introvae.objective="soft_introvae"`
trains the same networks with Soft-IntroVAE's losses instead.

Per round it records the losses and the three KLs, the share of steps in
which the real images' KL ran far above m (`introvae.runaway_factor`·m: a
KL runaway), the reconstruction error of held-out images, the evaluators
of `eval.per_round` on samples from a fixed z (swd, ms_ssim, fid), and
flags collapse when the samples' mean pairwise MS-SSIM passes
`introvae.collapse_ms_ssim`. NaN or Inf in any term stops the run naming
the term, before that round's checkpoint, so the last one stays intact.

The images live on the devices as uint8 split over the mesh's data axis
(as the other image members); batches are uniform draws with replacement,
an epoch being count/batch_size steps.
"""
import functools
import os
import time
from typing import NamedTuple

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from introjax import checkpoint as ckpt_lib
from introjax import compiled
from introjax import optim
from introjax import parallel
from introjax.data import datasets
from introjax.errors import ConfigError, DataError, NonFiniteError, UserError
from introjax.eval import evaluators
from introjax.eval import msssim
from introjax.eval.images import grid, save_grid, save_png
from introjax.models import introvae as nets
from introjax.models.layers import compute_dtype
from introjax.objectives import introvae as losses
from introjax.training import harness

# The per-step terms, in the order a NaN is blamed on, with their names.
TERMS = {"l_ae": "reconstruction term L_AE",
         "kl_real": "KL of real images L_REG(Z)",
         "kl_rec": "KL of reconstructions L_REG(Z_r)",
         "kl_fake": "KL of prior samples L_REG(Z_pp)",
         "loss_e": "encoder loss L_E",
         "loss_g": "generator loss L_G"}
_EVAL_STREAM = 7919   # the fixed key of the samples that are shown/measured


class IntroVAEState(NamedTuple):
  encoder: object
  generator: object
  opt_e: object
  opt_g: object
  margin: jax.Array   # float32 scalar; 0 until "auto" knows it


def parse_margin(value):
  """(margin or None for "auto") from `introvae.margin` (a number, or a
  string holding one or "auto")."""
  if isinstance(value, str):
    if value.strip().lower() == "auto":
      return None
    try:
      value = float(value)
    except ValueError:
      raise ConfigError(f"introvae.margin={value!r} is neither a number nor "
                        "'auto'; give the margin m (e.g. 110) or 'auto'.") \
          from None
  if not value > 0:
    raise ConfigError(f"introvae.margin={value} must be > 0: it is the KL "
                      "the encoder pushes generated images up to (§4.1: 90 "
                      "to 120), or 'auto'.")
  return float(value)


def check_config(config):
  """Every bad setting, one sentence each, before any data is read."""
  iv, model = config.introvae, config.model
  nets.check(config.data.image_size, tuple(model.channels), model.latent_dim)
  if iv.objective not in losses.OBJECTIVES:
    raise ConfigError(f"Unknown introvae.objective={iv.objective!r}; use "
                      f"{' or '.join(map(repr, losses.OBJECTIVES))}.")
  if iv.alpha < 0:
    raise ConfigError(f"introvae.alpha={iv.alpha} must be ≥ 0 (0: the plain "
                      "VAE; Appendix D: 0.1 to 0.5).")
  if iv.beta <= 0:
    raise ConfigError(f"introvae.beta={iv.beta} must be > 0: it weights the "
                      "reconstruction term.")
  margin = parse_margin(iv.margin)
  if iv.pretrain_rounds < 0 or iv.pretrain_rounds > config.rounds:
    raise ConfigError(f"introvae.pretrain_rounds={iv.pretrain_rounds} must be"
                      f" in 0 … rounds={config.rounds}.")
  if margin is None and iv.objective == "introvae" and not iv.pretrain_rounds:
    raise ConfigError("introvae.margin='auto' needs VAE pre-training to "
                      "measure the KL; set introvae.pretrain_rounds ≥ 1 or "
                      "give the margin.")
  if config.train.batch_size < 1 or config.train.epochs_per_round < 1:
    raise ConfigError("train.batch_size and train.epochs_per_round must be "
                      "≥ 1.")


def _heldout_config(data):
  """The data section that reads the held-out images (npz/TFDS: the first
  `data.holdout` of `data.eval_split`)."""
  held = ml_collections.ConfigDict(data.to_dict())
  held.split, held.max_images = data.eval_split, data.holdout
  return held


def load_data(config, mesh, train=True):
  """(training rows of this process or None, their count over every
  process, held-out images as uint8, a description). The bundled faces
  hold out their last `data.holdout` faces; npz and TFDS read
  `data.eval_split`."""
  data = config.data
  if data.holdout < 2:
    raise ConfigError(f"data.holdout={data.holdout}; hold out at least 2 "
                      "images to measure reconstructions and SWD.")
  if data.source == "lfw_subset":
    images, name, total = datasets.load_images(data)
    if total - data.holdout < 1:
      raise DataError(f"{name} has {total} images, too few to hold out "
                      f"data.holdout={data.holdout}; lower data.holdout.")
    held, rows = images[total - data.holdout:], images[:total - data.holdout]
    count = len(rows)
    local = rows[slice(*parallel.process_rows(count, mesh))] if train else None
  else:
    held, _, _ = datasets.load_images(_heldout_config(data))
    local, count, name = None, 0, data.source
    if train:
      local, name, count = datasets.load_images(
          data, rows=lambda n: parallel.process_rows(n, mesh))
  describe = (f"{name} ({count} training images of {held.shape[1]}×"
              f"{held.shape[2]}×{held.shape[3]}, {len(held)} held out)")
  return local, count, held, describe


class IntroVAETrainer:
  """IntroVAE / Soft-IntroVAE on a dataset of images (module docstring)."""

  state_keys = ("train.optimizer", "introvae.objective")

  def __init__(self, config, mesh=None, with_data=True, image_shape=None,
               abstract=False, images=None):
    """`with_data=False` with `image_shape`: a saved model; `abstract`: the
    training images only as shapes, never read (`compiled_steps`).
    `images`: (N, S, S, C) uint8 to train on in place of `config.data` (the
    speed benchmark; nothing is held out)."""
    check_config(config)
    self.config = config
    self.mesh = mesh or parallel.make_mesh()
    iv, model = config.introvae, config.model
    self.iv = iv
    self.latent_dim = model.latent_dim
    self.batch_size = config.train.batch_size
    parallel.check_divisible("train.batch_size", self.batch_size, self.mesh)
    self.base_key = jax.random.PRNGKey(config.seed)
    self.count = 0
    self.images = None
    self.heldout = None
    if abstract:
      image_shape, name, self.count = datasets.image_shapes(config.data)
      if config.data.source == "lfw_subset":   # the last faces are held out
        self.count -= config.data.holdout
      self.data_description = f"{name} ({self.count} training images)"
      self.images = parallel.abstract_rows(self.count, image_shape, jnp.uint8,
                                           self.mesh)
    elif images is not None:
      images = np.asarray(images, np.uint8)
      self.count, image_shape = len(images), images.shape[1:]
      self.data_description = f"{self.count} given images"
      self.images = parallel.global_rows(
          images[slice(*parallel.process_rows(self.count, self.mesh))],
          self.count, self.mesh)
    elif with_data:
      local, self.count, held, self.data_description = load_data(
          config, self.mesh, train=True)
      if self.count < self.batch_size:
        raise DataError(
            f"The training set has {self.count} images, fewer than one batch "
            f"(train.batch_size={self.batch_size}); lower the batch size or "
            "use more images.")
      self.images = parallel.global_rows(local, self.count, self.mesh)
      self.heldout = datasets.to_unit_range(held)
      self.heldout = np.asarray(self.heldout)
      image_shape = held.shape[1:]
    if image_shape is None:
      raise ValueError("IntroVAETrainer needs the data or image_shape.")
    self.image_shape = tuple(int(s) for s in image_shape)
    if self.image_shape[0] != config.data.image_size:
      raise DataError(f"The images are {self.image_shape[0]} pixels wide, not "
                      f"data.image_size={config.data.image_size}.")
    dtype = compute_dtype(config.dtype)
    self.encoder = nets.Encoder(tuple(model.channels), model.latent_dim, dtype)
    self.generator = nets.Generator(tuple(model.channels),
                                    self.image_shape[2], dtype)
    self.tx_e = optim.make_optimizer(config.train)
    self.tx_g = optim.make_optimizer(config.train)
    self.steps_per_epoch = max(1, self.count // self.batch_size)
    self.steps_per_round = self.steps_per_epoch * config.train.epochs_per_round
    self.soft = iv.objective == "soft_introvae"
    # Soft-IntroVAE's scale: its losses are per pixel-dimension.
    self.scale = 1.0 / float(np.prod(self.image_shape))
    self._batch = parallel.batch_sharding(self.mesh)
    self._replicated = parallel.replicated(self.mesh)
    self._round = jax.jit(self.round_fn, donate_argnums=(0,))
    self._decode = jax.jit(self.generator.apply)
    self._encode = jax.jit(self.encoder.apply)
    self.margin_fixed = parse_margin(iv.margin)
    self._real_ms_ssim = None

  def describe(self):
    kind = "Soft-IntroVAE" if self.soft else "IntroVAE"
    return (f"{kind} at {self.image_shape[0]}² (latent {self.latent_dim}, "
            f"channels {tuple(self.config.model.channels)}; "
            f"{self.steps_per_round} iterations of batch {self.batch_size} "
            "per round)")

  # State ---------------------------------------------------------------------

  def _init_params(self, key):
    k_e, k_g = jax.random.split(key)
    enc = self.encoder.init(k_e, jnp.zeros((1,) + self.image_shape))
    dec = self.generator.init(k_g, jnp.zeros((1, self.latent_dim)))
    return enc, dec

  def init_state(self):
    enc, dec = self._init_params(jax.random.fold_in(self.base_key, 0))
    state = IntroVAEState(enc, dec, self.tx_e.init(enc), self.tx_g.init(dec),
                          jnp.float32(self.margin_fixed or 0.0))
    return jax.device_put(state, self._replicated)

  def _abstract(self):
    shapes = jax.eval_shape(self.init_state)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(
        s.shape, s.dtype, sharding=self._replicated), shapes)

  def checkpoint_items(self, state):
    """The networks apart from the rest, so sampling restores only them."""
    return {"networks": {"encoder": state.encoder,
                         "generator": state.generator},
            "state": {"opt_e": state.opt_e, "opt_g": state.opt_g,
                      "margin": state.margin}}

  def restore_targets(self, meta=None, only_networks=False):
    a = self._abstract()
    targets = {"networks": {"encoder": a.encoder, "generator": a.generator}}
    if not only_networks:
      targets["state"] = {"opt_e": a.opt_e, "opt_g": a.opt_g,
                          "margin": a.margin}
    return targets

  def from_items(self, items):
    nets_, rest = items["networks"], items["state"]
    return IntroVAEState(nets_["encoder"], nets_["generator"], rest["opt_e"],
                         rest["opt_g"], rest["margin"])

  def checkpoint_meta(self, state):
    return {"image_shape": list(self.image_shape),
            "margin": float(state.margin)}

  # One iteration ---------------------------------------------------------------

  def _draw(self, images, key):
    k_index, k_flip = jax.random.split(key)
    index = jax.random.randint(k_index, (self.batch_size,), 0, self.count)
    x = datasets.to_unit_range(images[index])
    if self.config.data.get("flip", False):
      mirrored = jax.random.bernoulli(k_flip, 0.5, (self.batch_size,))
      x = jnp.where(mirrored[:, None, None, None], x[:, :, ::-1], x)
    return jax.lax.with_sharding_constraint(x, self._batch)

  def _kl(self, enc, x):
    mu, logvar = self.encoder.apply(enc, x)
    return losses.kl_per_image(mu, logvar), mu, logvar

  def encoder_loss(self, enc, dec, x, z_p, key, alpha, margin):
    """Algorithm 1 lines 3–9 as a function of the encoder's parameters:
    (L_E, (Z drawn for the batch, the batch's terms)). The generated images
    enter the adversarial terms through ng (stop-gradient)."""
    iv, ng = self.iv, jax.lax.stop_gradient
    k_eps, k_r, k_f = jax.random.split(key, 3)
    kl_real, mu, logvar = self._kl(enc, x)
    z = nets.reparameterize(k_eps, mu, logvar)
    x_r = self.generator.apply(dec, z)
    x_p = self.generator.apply(dec, z_p)
    err = losses.squared_error(x, x_r)
    l_ae = 0.5 * jnp.mean(err)
    kl_rec, mu_r, lv_r = self._kl(enc, ng(x_r))
    kl_fake, mu_f, lv_f = self._kl(enc, ng(x_p))
    if self.soft:
      rr = self.generator.apply(dec, nets.reparameterize(k_r, mu_r, lv_r))
      rf = self.generator.apply(dec, nets.reparameterize(k_f, mu_f, lv_f))
      loss = losses.soft_encoder_loss(
          err, kl_real, losses.squared_error(ng(x_r), rr), kl_rec,
          losses.squared_error(ng(x_p), rf), kl_fake, iv.beta_rec,
          iv.beta_kl, iv.beta_neg, self.scale, (alpha > 0).astype(jnp.float32))
    else:
      loss = losses.introvae_encoder_loss(kl_real, kl_rec, kl_fake, l_ae,
                                          alpha, margin, iv.beta)
    terms = {"l_ae": l_ae, "kl_real": jnp.mean(kl_real),
             "kl_rec": jnp.mean(kl_rec), "kl_fake": jnp.mean(kl_fake)}
    return loss, (ng(z), terms)

  def generator_loss(self, dec, enc, x, z, z_p, key, alpha):
    """Algorithm 1 lines 10–12 as a function of the generator's parameters,
    with `enc` the encoder after its update: L_G = α Σ_s L_REG(Enc(X_s)) +
    β L_AE, the gradient flowing through Enc into G."""
    iv, ng = self.iv, jax.lax.stop_gradient
    _, k_r, k_f = jax.random.split(key, 3)
    x_r = self.generator.apply(dec, z)
    x_p = self.generator.apply(dec, z_p)
    err = losses.squared_error(x, x_r)
    l_ae = 0.5 * jnp.mean(err)
    kl_rec, mu_r, lv_r = self._kl(enc, x_r)
    kl_fake, mu_f, lv_f = self._kl(enc, x_p)
    if self.soft:
      rr = self.generator.apply(
          dec, ng(nets.reparameterize(k_r, mu_r, lv_r)))
      rf = self.generator.apply(
          dec, ng(nets.reparameterize(k_f, mu_f, lv_f)))
      return losses.soft_generator_loss(
          err, kl_rec, kl_fake, losses.squared_error(ng(x_r), rr),
          losses.squared_error(ng(x_p), rf), iv.beta_rec, iv.beta_kl,
          self.scale, iv.gamma_r, (alpha > 0).astype(jnp.float32))
    return losses.introvae_generator_loss(kl_rec, kl_fake, l_ae, alpha,
                                          iv.beta)

  def step(self, carry, key, images, alpha, margin):
    """One iteration of Algorithm 1: the E update, then the G update with
    the updated E. `alpha` 0 is the VAE (adversarial terms off)."""
    enc, dec, opt_e, opt_g = carry
    k_batch, k_prior, k_loss = jax.random.split(key, 3)
    x = self._draw(images, k_batch)
    z_p = jax.lax.with_sharding_constraint(
        jax.random.normal(k_prior, (self.batch_size, self.latent_dim)),
        self._batch)
    (loss_e, (z, terms)), grads = jax.value_and_grad(
        self.encoder_loss, has_aux=True)(enc, dec, x, z_p, k_loss, alpha,
                                         margin)
    updates, opt_e = self.tx_e.update(grads, opt_e, enc)
    enc = optax.apply_updates(enc, updates)
    loss_g, grads = jax.value_and_grad(self.generator_loss)(
        dec, enc, x, z, z_p, k_loss, alpha)
    updates, opt_g = self.tx_g.update(grads, opt_g, dec)
    dec = optax.apply_updates(dec, updates)
    finite = jnp.stack([jnp.isfinite(p).all() for p in
                        jax.tree.leaves((enc, dec))]).all()
    return (enc, dec, opt_e, opt_g), {**terms, "loss_e": loss_e,
                                      "loss_g": loss_g,
                                      "params_finite": finite}

  def round_fn(self, state, images, key, alpha, margin):
    """One round, `steps_per_round` iterations as one `scan`, uncompiled
    (the trainer compiles it with the state donated; the speed benchmark
    compiles it without)."""
    keys = jax.random.split(key, self.steps_per_round)
    carry = (state.encoder, state.generator, state.opt_e, state.opt_g)
    carry, per_step = jax.lax.scan(
        lambda c, k: self.step(c, k, images, alpha, margin), carry, keys)
    return IntroVAEState(*carry, margin), per_step

  def compiled_steps(self):
    """A round's program and the evaluation's encode/decode calls, with
    abstract arguments placed as `run_round` and `evaluate` place them
    (introjax/compiled.py)."""
    state, rep = self._abstract(), self._replicated
    f32 = compiled.scalar(jnp.float32, rep)
    # evaluate() encodes and decodes in eval batches split over the devices.
    batch = parallel.padded_rows(self.config.eval.batch_size, self.mesh)
    heldout = compiled.array((batch, *self.image_shape), jnp.float32,
                             self._batch)
    latents = compiled.array((batch, self.latent_dim), jnp.float32,
                             self._batch)
    common = dict(watch={"dataset": self.images},
                  resident=(state, self.images))
    return [
        compiled.Step("training (E then G)", self._round,
                      (state, self.images, compiled.key(rep), f32, f32),
                      iterations=self.steps_per_round, **common),
        compiled.Step("evaluation (encode a batch)", self._encode,
                      (state.encoder, heldout), **common),
        compiled.Step("evaluation (decode a batch)", self._decode,
                      (state.generator, latents), **common),
    ]

  # Generation ------------------------------------------------------------------

  # Every encode and decode runs in eval.batch_size batches split over the
  # devices: 1,000 held-out 1024² images in one call would not fit a chip.
  def encode(self, state, images):
    """(μ, log σ²) of host `images`, host numpy."""
    return parallel.map_batches(
        functools.partial(self._encode, state.encoder), images,
        self.config.eval.batch_size, self.mesh)

  def decode(self, state, z):
    """G(z) of host latents `z`, host numpy."""
    return parallel.map_batches(
        functools.partial(self._decode, state.generator), z,
        self.config.eval.batch_size, self.mesh)

  def sample(self, state, num, key):
    """`num` images G(z), z ~ N(0, I) from `key`, host numpy."""
    return self.decode(state, np.asarray(
        jax.random.normal(key, (num, self.latent_dim))))

  def reconstruct(self, state, images):
    """G(μ(x)): the posterior mean's image (no sampling noise)."""
    return self.decode(state, self.encode(state, images)[0])

  def interpolate(self, state, a, b, steps):
    """(len(a), steps) images G((1−t)μ(a) + tμ(b)), t from 0 to 1 (Fig. 6)."""
    mu_a, mu_b = self.encode(state, a)[0], self.encode(state, b)[0]
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[None, :, None]
    z = (1 - t) * mu_a[:, None] + t * mu_b[:, None]
    images = self.decode(state, z.reshape(-1, self.latent_dim))
    return images.reshape((len(a), steps) + self.image_shape)

  def eval_key(self):
    return jax.random.fold_in(self.base_key, _EVAL_STREAM)

  def evaluate(self, state, stage="per_round"):
    """Held-out reconstruction error, the evaluators of `eval.<stage>` on
    samples of a fixed z against held-out images, and the samples' mean
    pairwise MS-SSIM (collapse)."""
    n = min(self.config.eval.num_images, len(self.heldout))
    real = self.heldout[:n]
    recon = self.reconstruct(state, self.heldout)
    metrics = {"recon_mse": float(np.mean((recon - self.heldout) ** 2) / 4)}
    samples = self.sample(state, n, self.eval_key())
    subject = evaluators.Subject(
        generated=samples, real=lambda key, num, size: _center(real[:num],
                                                               size),
        real_side=self.image_shape[0], key=self.eval_key())
    metrics.update(evaluators.evaluate(self.config, stage, subject))
    if "ms_ssim" not in metrics:
      metrics["ms_ssim"] = msssim.diversity(samples)
    if self._real_ms_ssim is None:
      self._real_ms_ssim = msssim.diversity(real)
    metrics["ms_ssim_real"] = self._real_ms_ssim
    return metrics, samples

  # Harness hooks ---------------------------------------------------------------

  def run_round(self, state, round_index):
    t = round_index
    pretraining = t <= self.iv.pretrain_rounds
    alpha = 0.0 if pretraining else float(self.iv.alpha)
    if self.soft:
      alpha = 0.0 if pretraining else 1.0   # only switches the fakes' term
    began = time.perf_counter()
    state, per_step = self._round(state, self.images,
                                  jax.random.fold_in(self.base_key, t),
                                  jnp.float32(alpha), state.margin)
    per_step = jax.tree.map(np.asarray, parallel.to_host(per_step))
    seconds = time.perf_counter() - began
    self._check_finite(per_step, t)
    margin = float(state.margin)
    metrics = {name: float(np.mean(per_step[name])) for name in TERMS}
    metrics.update(alpha=alpha, images_per_second=(
        self.steps_per_round * self.batch_size / seconds),
        pretraining=float(pretraining))
    if pretraining:
      suggested = suggest_margin(per_step)
      metrics["suggested_margin"] = suggested
      if t == self.iv.pretrain_rounds:
        logging.info(
            "VAE pre-training done: KL real %.1f (90th percentile %.1f), "
            "reconstructions %.1f, samples %.1f; suggested margin m = %.0f "
            "(%s).", metrics["kl_real"], np.percentile(per_step["kl_real"],
                                                       90),
            metrics["kl_rec"], metrics["kl_fake"], suggested,
            "used: introvae.margin='auto'" if self.margin_fixed is None
            else f"the run keeps introvae.margin={margin:g}")
        if self.margin_fixed is None:
          margin = suggested
          state = state._replace(margin=jax.device_put(
              jnp.float32(margin), self._replicated))
    if not self.soft:
      metrics["margin"] = margin
    if not pretraining and not self.soft and margin > 0:
      runaway = float(np.mean(per_step["kl_real"]
                              > self.iv.runaway_factor * margin))
      metrics["kl_runaway_fraction"] = runaway
      metrics["kl_runaway"] = float(runaway > 0.5)
    if evaluators.due(self.config, t):
      evaluated, _ = self.evaluate(state)
      metrics.update(evaluated)
      metrics["collapse"] = float(
          metrics["ms_ssim"] > self.iv.collapse_ms_ssim)
    return state, metrics

  def _check_finite(self, per_step, t):
    bad = [~np.isfinite(per_step[name]) for name in TERMS]
    bad.append(~per_step["params_finite"])
    any_bad = np.any(bad, axis=0)
    if not any_bad.any():
      return
    step = int(np.argmax(any_bad))
    names = [TERMS[n] for n in TERMS if not np.isfinite(per_step[n][step])]
    what = names[0] if names else "network parameters"
    raise NonFiniteError(
        f"NaN or Inf in the {what} at iteration {step + 1} of round {t} "
        f"(train.learning_rate={self.config.train.learning_rate}, "
        f"introvae.beta={self.iv.beta}); lower the learning rate or β (or "
        "raise m) and resume: the last checkpoint is intact.")

  def write_samples(self, state, round_index, folder):
    n = self.config.log.num_samples
    prefix = os.path.join(folder, f"round_{round_index:03d}")
    write_grids(self, state, prefix, n, self.eval_key())

  def progress(self, t, rounds, m, seconds):
    phase = "VAE" if m.get("pretraining") or not m.get("alpha") else (
        "Soft-IntroVAE" if self.soft else "IntroVAE")
    line = (f"round {t}/{rounds} [{phase}] L_E {m['loss_e']:.4g} L_G "
            f"{m['loss_g']:.4g} | KL real {m['kl_real']:.1f} rec "
            f"{m['kl_rec']:.1f} fake {m['kl_fake']:.1f}")
    if "margin" in m and not m.get("pretraining"):
      line += f" (m {m['margin']:.0f})"
    line += f" | L_AE {m['l_ae']:.2f}"
    if "recon_mse" in m:
      line += f" | recon MSE {m['recon_mse']:.4f}"
    if "swd_mean" in m:
      line += f" | SWD {m['swd_mean']:.1f}"
    if "ms_ssim" in m:
      line += f" | MS-SSIM {m['ms_ssim']:.3f} (real {m['ms_ssim_real']:.3f})"
    if "suggested_margin" in m:
      line += f" | suggested m {m['suggested_margin']:.0f}"
    line += f" | {m['images_per_second']:.0f} img/s, {seconds:.1f} s"
    if m.get("kl_runaway"):
      line += (f" | WARNING KL runaway: L_REG(real) > "
               f"{self.iv.runaway_factor:g}·m in "
               f"{100 * m['kl_runaway_fraction']:.0f}% of iterations (raise m "
               "or lower α; README)")
    if m.get("collapse"):
      line += (f" | WARNING collapse: samples' MS-SSIM {m['ms_ssim']:.2f} > "
               f"{self.iv.collapse_ms_ssim:g} (lower β or m; README)")
    return line


def suggest_margin(per_step):
  """App. D's "a little larger than the training KL of VAEs": 1.1 × the
  largest of the real images' 90th-percentile KL and the mean KL of the
  reconstructions and of the prior samples, rounded up."""
  level = max(np.percentile(per_step["kl_real"], 90),
              np.mean(per_step["kl_rec"]), np.mean(per_step["kl_fake"]))
  return float(np.ceil(1.1 * level))


def _center(images, size):
  h = images.shape[1]
  top = (h - size) // 2
  return images[:, top:top + size, top:top + size]


def write_grids(trainer, state, prefix, num, key):
  """<prefix>_reconstructions.png (rows of held-out originals over their
  reconstructions), _samples.png, _interpolations.png (each row: a real
  image, G of the interpolated means, the other real image); returns the
  paths."""
  held = trainer.heldout
  n = min(num, len(held))
  columns = min(8, n)
  originals = held[:n]
  recon = np.clip(trainer.reconstruct(state, originals), -1, 1)
  rows = []
  for start in range(0, n, columns):
    rows += [originals[start:start + columns], recon[start:start + columns]]
  paired = np.concatenate([np.pad(r, ((0, columns - len(r)),) + ((0, 0),) * 3,
                                  constant_values=1.0) for r in rows])
  paths = {"reconstructions": prefix + "_reconstructions.png",
           "samples": prefix + "_samples.png",
           "interpolations": prefix + "_interpolations.png"}
  save_grid(paths["reconstructions"], paired, columns)
  save_grid(paths["samples"], np.clip(trainer.sample(state, num, key), -1, 1))
  pairs = max(1, min(4, len(held) // 2))
  a, b = held[:pairs], held[len(held) - pairs:][::-1]
  steps = 8
  path = np.clip(trainer.interpolate(state, a, b, steps), -1, 1)
  rows = np.concatenate([a[:, None], path, b[:, None]], axis=1)
  save_png(paths["interpolations"],
           grid(rows.reshape((-1,) + trainer.image_shape), steps + 2))
  return paths


@harness.reports
def train_and_evaluate(config, workdir, trainer=None):
  """Trains IntroVAE (or Soft-IntroVAE) per `config`, resuming from
  `workdir`; writes results.json with the final evaluation. `trainer`: one
  already built for `config` (its compiled programs are reused)."""
  trainer = trainer or IntroVAETrainer(config)
  evaluators.check(config, "IntroVAE", {"generated": True, "real": True,
                                        "generated_side":
                                            trainer.image_shape[0]})
  logging.info("%s on %s, %d rounds (%d of VAE pre-training), %d devices; "
               "writing to %s", trainer.describe(), trainer.data_description,
               config.rounds, config.introvae.pretrain_rounds,
               trainer.mesh.size, workdir)
  state = harness.run_rounds(trainer, config, workdir)
  final, _ = trainer.evaluate(state, "final" if evaluators.names(
      config, "final") else "per_round")
  harness.write_results(workdir, {"round": config.rounds,
                                  "margin": float(state.margin), **final})
  return state


# Drawing from a saved workdir (introjax.sample) ------------------------------


def load_saved(workdir, round_index=None):
  """(trainer with its held-out images, state with the saved networks,
  round) from `workdir`'s checkpoints; reads only the held-out images."""
  checkpoints = ckpt_lib.Checkpointer(workdir)
  try:
    latest = checkpoints.latest_round()
    if latest is None:
      raise UserError(f"No checkpoint in {checkpoints.directory}; train first"
                      f" with python -m introjax.main --workdir={workdir} "
                      "--config=...")
    round_index = latest if round_index is None else round_index
    if round_index not in checkpoints.all_rounds():
      raise UserError(
          f"No checkpoint of round {round_index} in {checkpoints.directory}; "
          f"it holds rounds {checkpoints.all_rounds()}.")
    meta = checkpoints.restore_meta(round_index)
    config = ml_collections.ConfigDict(meta["config"])
    trainer = IntroVAETrainer(config, with_data=False,
                              image_shape=meta["image_shape"])
    _, _, held, _ = load_data(config, trainer.mesh, train=False)
    trainer.heldout = np.asarray(datasets.to_unit_range(held))
    items = checkpoints.restore(round_index,
                                trainer.restore_targets(only_networks=True))
  finally:
    checkpoints.close()
  networks = items["networks"]
  state = IntroVAEState(networks["encoder"], networks["generator"], None,
                        None, jnp.float32(meta.get("margin", 0.0)))
  return trainer, state, round_index


def sample_workdir(workdir, round_index, num_images, seed, out_prefix=None):
  """Writes samples, reconstructions and interpolations of the saved model;
  returns the paths."""
  trainer, state, round_index = load_saved(workdir, round_index)
  prefix = out_prefix or os.path.join(harness.samples_dir(workdir),
                                      f"sample_seed{seed}")
  paths = write_grids(trainer, state, prefix, num_images,
                      jax.random.PRNGKey(seed))
  logging.info("Drew %d images, reconstructions and interpolations with "
               "round %d's IntroVAE: %s", num_images, round_index,
               ", ".join(paths.values()))
  return paths
