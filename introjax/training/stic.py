"""STIC: Synthesize-It-Classifier (Pal et al.), a classifier with a fake
class that synthesises its own pseudo-negatives pass after pass.

A round of the harness is a pass τ = 1..T (STIC §3–4):

  fit         `stic.steps_per_pass` Adam steps (paper: 5k, batch 50) of the
              vrm loss (objectives/vrm.py) on batches of B real images,
              B mixup images of those and B fakes: at τ = 1 blank images
              (every pixel at the maximum), later uniform draws from the
              chains the previous pass synthesised
  synthesise  every persistent chain (data/pool.py's persistent policy:
              restarted from p0 = U[−1, 1] with probability
              `stic.restart_probability`, all of them after pass 1) runs
              `synthesis.max_steps` GRMALA steps (sampling/steps.py "grmala"
              on sampling/scores.py's gram_regularised score), and the pool
              keeps the chains' new states

Chains are class-conditioned (`stic.chains_per_class` per class; chain s
is of class s mod K) or mixup-conditioned (`stic.mixup_chains`: target
λ·y_i + (1 − λ)·y_j of two random training images). Each chain keeps its
conditioning — data rows (first, second) and λ — until it restarts; its
Gram reference is the same mix of the two images (a class chain: one real
image of its class, λ = 1).

The variants train from the same initial weights on the same real batches:

  erm       the baseline: cross-entropy over the K real classes only (the
            network's fake output is unused); no synthesis
  stic_erm  STIC without VRM: real + fakes, class chains only
  stic      STIC: real + mixup + fakes, class and mixup chains
  score_stic      Score-STIC (§5): stic on a network whose input-shaped
                  output s(x) is a learned score, with the score-matching
                  regulariser; chains move along s(x) + ∇u(x)
  attentive_stic  Attentive-STIC (§5): stic on a DRAW reader + LSTM
                  encoder's features; GRMALA runs on the features and a
                  DCGAN decoder draws the images

(training/stic_networks.py: the network each variant trains. The two §5
variants have their own networks, so they share the batches and chains'
draws but not the initial weights of the first three.)

`stic.sampler="sgld"` swaps GRMALA for JEM's SGLD on the class-conditional
energy f(x)[y] (step 1, noise 0.01, no Gram term) on the same chains, so
the two samplers are compared on the same classifier and data.

Reading of the paper where it is loose (docs: README "STIC"): the three
groups of eq. 5 are each averaged and summed; the Gram term is a descent
step on Σ_L ‖G^L − A^L‖² / ‖A^L‖² (scores.gram_regularised); MALA-approx takes
every proposal, `synthesis.metropolis=True` adds the Metropolis–Hastings
test for the target exp(β·u), β = 2ε1/ε3².
"""
import functools
import os
import time
from typing import Any

from absl import logging
from flax import struct
import jax
import jax.numpy as jnp
import numpy as np

from introjax import compiled
from introjax import config_utils
from introjax import objectives
from introjax import optim
from introjax import parallel
from introjax.data import datasets
from introjax.data import pool as pool_lib
from introjax.errors import ConfigError, NonFiniteError
from introjax.eval import evaluators
from introjax.eval import robustness
from introjax.eval.images import center_crop, readable_scale, save_grid
from introjax.models import classifiers
from introjax.objectives import score_matching
from introjax.objectives import vrm
from introjax.sampling import p0 as p0_lib
from introjax.sampling import stopping
from introjax.sampling.ascent import AscentSettings, ascend, summarize
from introjax.training import fit
from introjax.training import harness
from introjax.training import stic_networks

VARIANTS = ("erm", "stic_erm", "stic", "score_stic", "attentive_stic")
SAMPLERS = ("grmala", "sgld")
_EVAL_STREAM = 0xE7A1
_INTERPOLATION_STREAM = 0x1E2B

# Beyond model.* and data.*: what sizes the chains and the optimiser state.
STATE_KEYS = ("stic.variants", "stic.chains_per_class", "stic.mixup_chains",
              "stic.references_per_class", "train.optimizer",
              "train.weight_decay")
# ... and Attentive-STIC's network shape, when it is one of the variants.
ATTENTIVE_KEYS = ("stic.attentive.glimpse", "stic.attentive.glimpses",
                  "stic.attentive.hidden", "stic.attentive.decoder_features")


@struct.dataclass
class Chains:
  """Persistent chains and their conditioning, one slot each."""
  pool: pool_lib.NegativePool   # the chains' states; rounds: pass written
  first: jax.Array              # (C,) data row of the first image
  second: jax.Array             # (C,) data row of the second (= first for
  lam: jax.Array                # (C,) λ                     class chains)


@struct.dataclass
class VariantState:
  params: Any
  opt_state: Any
  chains: Chains        # never run for erm


def uses_mixup(variant):
  return variant in ("stic", "score_stic", "attentive_stic")


def synthesises(variant):
  return variant != "erm"


class SynthesizeItClassifier:
  """The compiled parts of STIC for one config, dataset and device mesh."""

  def __init__(self, config, mesh, train_set=None, test_set=None,
               shapes=None, abstract=False):
    """`shapes` (a checkpoint's): a saved model, no data (introjax.sample);
    `abstract`: the data only as shapes, never read (`compiled_steps`)."""
    self.config = config
    self.mesh = mesh
    self.abstract = abstract
    stic = config.stic
    self.variants = config_utils.check_variants(stic.variants, VARIANTS,
                                                 "stic.variants")
    _check_settings(config)
    if abstract:
      train_set, test_set = datasets.classification_shapes(config.data)
    elif shapes is None and train_set is None:
      train_set, test_set = datasets.load_classification(
          config.data, train_rows=lambda n: parallel.process_rows(n, mesh))
    if shapes is not None:   # a saved model: no data (introjax.sample)
      self.image_shape, self.k = tuple(shapes["image"]), shapes["classes"]
    else:
      self.image_shape = train_set.images.shape[1:]
      self.k = train_set.num_classes
    self.sampler = stic.sampler
    kinds = {stic_networks.NETWORK_OF[v] for v in self.variants}
    built = {kind: stic_networks.build(kind, config, self.k, self.image_shape)
             for kind in sorted(kinds)}
    self.networks = {v: built[stic_networks.NETWORK_OF[v]]
                     for v in self.variants}
    self.num_chains = {v: self._chain_count(v) for v in self.variants}
    # PNGs show small images (the 8×8 digits) enlarged to 32 pixels.
    self.display_scale = readable_scale(min(self.image_shape[:2]))
    self._batch = parallel.batch_sharding(mesh)
    self._replicated = parallel.replicated(mesh)
    self.settings = AscentSettings.from_config(config.synthesis)
    self.rule = stopping.build_stop_rule(config.synthesis)
    self.p0 = p0_lib.build(config.p0.name, field="p0.name",
                           std=config.p0.get("std", 0.3))
    self.base_key = jax.random.PRNGKey(config.seed)
    self._refine = jax.jit(self._refine_fn,
                           static_argnames=("max_steps", "variant"))
    self.tx = optim.make_optimizer(config.train)
    if shapes is not None:
      return
    self.dataset_name = train_set.name
    self.num_train = train_set.num_rows
    self._check(mesh)
    has = {"classifiers": True, "test_set": True}
    if any(synthesises(v) for v in self.variants):
      has.update(generated=True, real=True, generated_labels=True,
                 train_set=True, generated_side=min(self.image_shape[:2]))
    evaluators.check(config, "this STIC run", has)

    (self.images, self.labels, self.test_images,
     self.test_labels) = datasets.place_classification(
         train_set, test_set, mesh, abstract=abstract)
    self.class_index, self.class_counts = datasets.place_class_table(
        self.labels, self.num_train, self.k, mesh, abstract)

    self.references = self._reference_bank(stic.references_per_class)
    self.loss = objectives.build_loss("vrm", num_classes=self.k)
    self.blank = p0_lib.build("blank")
    self._train = jax.jit(self._train_fn, donate_argnums=(0, 1),
                          static_argnames=("variant",))
    self._synthesize = jax.jit(self._synthesize_fn, donate_argnums=(1,),
                               static_argnames=("variant",))

  def _reference_bank(self, per_class):
    """(K, per_class, H, W, C) real images in [-1, 1], the first of each
    class, saved with every checkpoint: the Gram references of
    `introjax.sample`, which never reads the training data."""
    if per_class < 1:
      raise ConfigError(f"stic.references_per_class={per_class} must be ≥ 1 "
                        "(real images per class kept for sampling).")
    if self.abstract:
      return jax.ShapeDtypeStruct((self.k, per_class, *self.image_shape),
                                  jnp.float32, sharding=self._replicated)
    rows = jnp.take_along_axis(
        self.class_index,
        jnp.arange(per_class)[None] % self.class_counts[:, None], axis=1)
    return jax.device_put(datasets.to_unit_range(self.images[rows]),
                          self._replicated)

  def _chain_count(self, variant):
    stic = self.config.stic
    mixup = stic.mixup_chains if uses_mixup(variant) else 0
    return self.k * stic.chains_per_class + mixup

  def _check(self, mesh):
    batch = self.config.train.batch_size
    parallel.check_divisible("train.batch_size", batch, mesh)
    for variant, n in self.num_chains.items():
      parallel.check_divisible(f"the chains of {variant} (classes × "
                               "stic.chains_per_class + stic.mixup_chains)",
                               n, mesh)

  # State ----------------------------------------------------------------

  def _empty_chains(self, variant):
    n = self.num_chains[variant]
    return Chains(pool=pool_lib.empty_pool(n, self.image_shape),
                  first=jnp.zeros((n,), jnp.int32),
                  second=jnp.zeros((n,), jnp.int32),
                  lam=jnp.ones((n,), jnp.float32))

  def _chains_sharding(self):
    rep, batch = self._replicated, self._batch
    return Chains(pool=pool_lib.NegativePool(images=batch, rounds=batch,
                                             cursor=rep),
                  first=batch, second=batch, lam=batch)

  @property
  def state_keys(self):
    return STATE_KEYS + (ATTENTIVE_KEYS if "attentive_stic" in self.variants
                         else ())

  def init_state(self):
    """Variants on the same network start from the same weights."""
    key = jax.random.fold_in(self.base_key, 0)
    initial = {}
    for v in self.variants:
      kind = stic_networks.NETWORK_OF[v]
      if kind not in initial:
        initial[kind] = jax.device_put(self.networks[v].init(key),
                                       self._replicated)
    fresh = lambda tree: jax.tree.map(jnp.copy, tree)
    params = {v: initial[stic_networks.NETWORK_OF[v]] for v in self.variants}
    return {v: VariantState(
        params=fresh(params[v]),
        opt_state=jax.device_put(self.tx.init(fresh(params[v])),
                                 self._replicated),
        chains=jax.device_put(self._empty_chains(v), self._chains_sharding()))
            for v in self.variants}

  # Classification step ----------------------------------------------------

  def real_logits(self, variant):
    """`params, x ->` the K real classes' logits of `variant`'s network:
    prediction, test error and FGSM."""
    network = self.networks[variant]
    return lambda params, x: network.logits(params, x)[:, :self.k]

  def _batch_of(self, variant, train_data, chains, key):
    """STIC eq. 5's batch {x, targets, weight, labels}: B real images, for
    stic B mixup images of them, and unless erm B fakes."""
    train_images, train_labels = train_data
    b = self.config.train.batch_size
    k_rows, k_augment, k_mix, k_fake = jax.random.split(key, 4)
    rows = jax.random.randint(k_rows, (b,), 0, self.num_train)
    real = datasets.to_unit_range(train_images[rows])
    if self.config.data.augment:
      real = datasets.augment_pad_crop_flip(k_augment, real)
    labels = train_labels[rows]
    width = self.k if variant == "erm" else self.k + 1
    targets = jax.nn.one_hot(labels, width)
    xs, ts, hard, sizes = [real], [targets], [labels], [b]
    if uses_mixup(variant):
      mixed, mixed_targets, _ = vrm.mixup(k_mix, real, targets,
                                          self.config.stic.mixup_alpha)
      xs.append(mixed), ts.append(mixed_targets)
      hard.append(jnp.full((b,), -1)), sizes.append(b)
    if synthesises(variant):
      # Pass 1: blank fakes; later the previous pass's chains, uniformly.
      pool = chains.pool
      slots = jax.random.randint(k_fake, (b,), 0, pool.images.shape[0])
      have = jnp.any(pool.rounds >= 0)
      fakes = jnp.where(have, pool.images[slots].astype(real.dtype),
                        self.blank(None, b, self.image_shape))
      xs.append(fakes), ts.append(jax.nn.one_hot(jnp.full((b,), self.k),
                                                 width))
      hard.append(jnp.full((b,), -1)), sizes.append(b)
    x = jax.lax.with_sharding_constraint(jnp.concatenate(xs), self._batch)
    return {"x": x, "targets": jnp.concatenate(ts),
            "weight": vrm.group_weights(sizes, [True] * len(sizes)),
            "labels": jnp.concatenate(hard)}

  def _train_fn(self, params, opt_state, chains, train_data, key, variant):
    """`stic.steps_per_pass` steps of the fit loop; returns the parameters,
    optimiser state and the steps' mean loss, accuracy and fake detection."""

    network = self.networks[variant]
    b = self.config.train.batch_size

    def step_loss(params, key):
      k_batch, k_reg = jax.random.split(key)
      batch = self._batch_of(variant, train_data, chains, k_batch)
      loss, aux = self.loss(functools.partial(network.logits, params), batch,
                            k_batch)
      # The first B rows are the real images: the variant's regulariser.
      extra, extra_aux = network.regulariser(
          params, batch["x"][:b], batch["targets"][:b], k_reg)
      return loss + extra, {**aux, **extra_aux}

    params, opt_state, run = fit.fit(step_loss, self.tx, params, opt_state,
                                     key, self.config.stic.steps_per_pass)
    means = {f"train_{k}": v for k, v in run["mean"].items()}
    return params, opt_state, dict(means, train_finite=run["finite"])

  # Synthesis ----------------------------------------------------------------

  def targets_and_references(self, first, second, lam, train_data=None):
    """Each chain's soft target over K + 1 classes (0 on the fake class)
    and its Gram reference image λ·x_first + (1 − λ)·x_second, from
    `train_data` (the split training images and labels; default: this
    run's)."""
    train_images, train_labels = train_data or (self.images, self.labels)
    images = lambda rows: datasets.to_unit_range(train_images[rows])
    lam_x = lam.reshape((-1,) + (1,) * len(self.image_shape))
    references = lam_x * images(first) + (1 - lam_x) * images(second)
    onehot = lambda rows: jax.nn.one_hot(train_labels[rows], self.k + 1)
    targets = (lam[:, None] * onehot(first) +
               (1 - lam[:, None]) * onehot(second))
    return targets, references

  def score_function(self, params, targets, references, variant="stic"):
    """What `variant`'s chains climb, in its network's space
    (stic_networks: gram_regularised log p(y|x), JEM's f(x)[y] for sampler
    "sgld", plus the learned score for score_stic)."""
    return self.networks[variant].score_function(params, targets, references)

  def _run_chains(self, params, x0, targets, references, key, settings,
                  variant):
    """The sampler from images x0 in `variant`'s space: encode, ascend,
    decode (pixels for the image classifiers: both are the identity)."""
    network = self.networks[variant]
    z, stats = ascend(self.score_function(params, targets, references,
                                          variant),
                      network.encode(params, x0), key, self.rule, settings)
    return network.decode(params, z), stats

  def _fresh_conditioning(self, key, n, class_index, class_counts):
    """New (first, second, λ) for every slot: slot s < K·chains_per_class is
    a class chain of class s mod K (one random image of it, λ = 1), the
    rest mixup chains of two random images, λ ~ Beta(α, α)."""
    stic = self.config.stic
    k_row, k_a, k_b, k_lam = jax.random.split(key, 4)
    slot = jnp.arange(n)
    cls = slot % self.k
    pick = jax.random.randint(k_row, (n,), 0, class_counts[cls])
    of_class = class_index[cls, pick]
    is_class = slot < self.k * stic.chains_per_class
    a = jax.random.randint(k_a, (n,), 0, self.num_train)
    b = jax.random.randint(k_b, (n,), 0, self.num_train)
    lam = jax.random.beta(k_lam, stic.mixup_alpha, stic.mixup_alpha, (n,))
    return (jnp.where(is_class, of_class, a), jnp.where(is_class, of_class, b),
            jnp.where(is_class, 1.0, lam))

  def _synthesize_fn(self, params, chains, key, pass_index, train_data,
                     class_index, class_counts, variant):
    """Every chain restarts from p0 (and new conditioning) with probability
    p, then all run the sampler; returns the new chains and the stats. The
    data are arguments: a jitted function closing over them would bake the
    training set into its program (and a multi-host array cannot be a
    constant)."""
    n = chains.pool.images.shape[0]
    k_draw, k_cond, k_p0, k_run = jax.random.split(key, 4)
    slots, restart = pool_lib.draw_persistent(
        chains.pool, k_draw, None, self.config.stic.restart_probability)
    first, second, lam = self._fresh_conditioning(k_cond, n, class_index,
                                                  class_counts)
    first = jnp.where(restart, first, chains.first)
    second = jnp.where(restart, second, chains.second)
    lam = jnp.where(restart, lam, chains.lam)
    x0 = jnp.where(restart[:, None, None, None],
                   self.p0(k_p0, n, self.image_shape),
                   chains.pool.images)
    x0 = jax.lax.with_sharding_constraint(x0, self._batch)
    targets, references = self.targets_and_references(first, second, lam,
                                                      train_data)
    x, stats = self._run_chains(params, x0, targets, references, k_run,
                                self.settings, variant)
    pool = pool_lib.write_back(chains.pool, slots, x, pass_index)
    return Chains(pool=pool, first=first, second=second, lam=lam), stats

  def _refine_fn(self, params, x0, targets, references, key, max_steps=None,
                 variant="stic"):
    """The sampler from x0 toward `targets` (the interpolation grid and
    introjax.sample), for `max_steps` (default synthesis.max_steps)."""
    settings = self.settings if max_steps is None else (
        self.settings.replace(max_steps=max_steps))
    return self._run_chains(params, x0, targets, references, key, settings,
                            variant)

  def sample_classes(self, params, references, classes, per_class, steps,
                     key, variant="stic"):
    """`per_class` new samples of each class in `classes` from p0, each
    with a random reference image of its class from `references` (the
    checkpoint's bank): (images (len(classes)·per_class, …), labels)."""
    classes = jnp.repeat(jnp.asarray(classes, jnp.int32), per_class)
    n = classes.shape[0]
    k_p0, k_ref, k_run = jax.random.split(key, 3)
    pick = jax.random.randint(k_ref, (n,), 0, references.shape[1])
    x0 = self.p0(k_p0, n, self.image_shape)
    targets = jax.nn.one_hot(classes, self.k + 1)
    x, _ = self._refine(params, x0, targets, references[classes, pick], k_run,
                        max_steps=steps, variant=variant)
    return parallel.to_host(x), np.asarray(classes)

  def interpolation(self, state, variant, classes, steps, key):
    """STIC Fig. 4: the linear path between the first chains of two
    classes, raw and refined by the sampler toward the mixed target."""
    s = state[variant]
    c1, c2 = classes
    t = jnp.linspace(0.0, 1.0, steps)
    pool = s.chains.pool.images
    x = (1 - t)[:, None, None, None] * pool[c1] + t[:, None, None, None] * (
        pool[c2])
    t1 = jnp.full((steps,), 1.0)
    targets_1, ref_1 = self.targets_and_references(
        jnp.full((steps,), s.chains.first[c1]),
        jnp.full((steps,), s.chains.second[c1]), t1 * s.chains.lam[c1])
    targets_2, ref_2 = self.targets_and_references(
        jnp.full((steps,), s.chains.first[c2]),
        jnp.full((steps,), s.chains.second[c2]), t1 * s.chains.lam[c2])
    mix = lambda a, b, shape: ((1 - t).reshape(shape) * a +
                               t.reshape(shape) * b)
    targets = mix(targets_1, targets_2, (-1, 1))
    references = mix(ref_1, ref_2, (-1, 1, 1, 1))
    refined, _ = self._refine(s.params, x, targets, references, key,
                              variant=variant)
    return parallel.to_host(x), parallel.to_host(refined)

  def compiled_steps(self):
    """Each variant's fit and synthesis calls and the evaluation, with
    abstract arguments placed as `run_round` places them
    (introjax/compiled.py)."""
    targets = self.restore_targets(None)
    rep = self._replicated
    key, t = compiled.key(rep), compiled.scalar(jnp.int32, rep)
    train_data = (self.images, self.labels)
    resident = (targets, train_data, self.test_images, self.test_labels,
                self.class_index, self.class_counts)
    steps = []
    for v, s in targets["variants"].items():
      watch = {"pool": s["chains"].pool.images, "dataset": self.images}
      steps.append(compiled.Step(
          f"classification ({v})", self._train,
          (s["params"], s["opt_state"], s["chains"], train_data, key),
          kwargs={"variant": v}, iterations=self.config.stic.steps_per_pass,
          watch=watch, resident=resident))
      if synthesises(v):
        steps.append(compiled.Step(
            f"synthesis ({v}: {self.num_chains[v]} chains)", self._synthesize,
            (s["params"], s["chains"], key, t, train_data, self.class_index,
             self.class_counts), kwargs={"variant": v},
            iterations=self.settings.max_steps,
            watch=watch, resident=resident))
    first, variant = next(iter(targets["variants"].items()))
    return steps + robustness.evaluation_steps(
        self.real_logits(first), variant["params"], self.image_shape,
        self.config.eval.batch_size, self.mesh,
        "fgsm" in evaluators.names(self.config, "final"), resident)

  # Evaluation -------------------------------------------------------------

  def class_samples(self, state, variant):
    """(images, labels) of `variant`'s class chains, host arrays."""
    n = self.k * self.config.stic.chains_per_class
    images = parallel.to_host(state[variant].chains.pool.images)[:n]
    return images, np.arange(n) % self.k

  def _subject(self, classifiers_=None, samples=None):
    def real(key, n, size):
      rows = jax.random.randint(key, (n,), 0, self.num_train)
      images = parallel.to_host(datasets.to_unit_range(self.images[rows]))
      return center_crop(images, size)

    generated, labels = samples if samples is not None else (None, None)
    train = None
    if samples is not None:
      train = (parallel.to_host(datasets.to_unit_range(self.images))[
          :self.num_train], parallel.to_host(self.labels)[:self.num_train])
    return evaluators.Subject(
        generated=generated, generated_labels=labels,
        real=real, real_side=min(self.image_shape[:2]),
        classifiers={n: (self.real_logits(n), p)
                     for n, p in (classifiers_ or {}).items()},
        test_set=(self.test_images, self.test_labels),
        train_set=train, num_classes=self.k,
        batch_size=robustness.batch_size_on(self.mesh,
                                            self.config.eval.batch_size),
        sharding=self._batch,
        key=jax.random.fold_in(self.base_key, _EVAL_STREAM))

  def evaluate(self, state):
    """eval.final: the classifiers' test errors and FGSM table, and each
    synthesising variant's sample metrics (swd, cls_r, cls_g) under
    "samples"."""
    final = evaluators.final_by_classifier(
        self.config, self._subject({n: s.params for n, s in state.items()}),
        list(state))
    samples = {}
    for v in state:
      if synthesises(v):
        m = evaluators.evaluate(self.config, "final", self._subject(
            samples=self.class_samples(state, v)))
        if m:
          samples[v] = m
    if samples:
      final["samples"] = samples
    return final

  # Harness hooks ------------------------------------------------------------

  def checkpoint_items(self, state):
    return {"variants": {v: {"params": s.params, "opt_state": s.opt_state,
                             "chains": s.chains}
                         for v, s in state.items()},
            "references": {"images": self.references}}

  def restore_targets(self, meta):
    del meta
    shapes = jax.eval_shape(self.init_state)

    def placed(tree, sharding):
      return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(
          s.shape, s.dtype, sharding=sh), tree, sharding)

    rep = lambda tree: jax.tree.map(lambda _: self._replicated, tree)
    bank = jax.ShapeDtypeStruct(
        (self.k, self.config.stic.references_per_class, *self.image_shape),
        jnp.float32, sharding=self._replicated)
    return {"variants": {
        v: {"params": placed(s.params, rep(s.params)),
            "opt_state": placed(s.opt_state, rep(s.opt_state)),
            "chains": placed(s.chains, self._chains_sharding())}
        for v, s in shapes.items()},
            "references": {"images": bank}}

  def from_items(self, items):
    return {v: VariantState(**s) for v, s in items["variants"].items()}

  def checkpoint_meta(self, state):
    del state
    return {"shapes": {"image": list(self.image_shape), "classes": self.k}}

  def write_samples(self, state, round_index, folder):
    """Per pass and synthesising variant: the class chains (a row per
    class) and the mixup chains; after the last pass the class
    interpolation grid."""
    shown = min(self.config.stic.chains_per_class,
                self.config.log.num_samples)
    n_class = self.k * self.config.stic.chains_per_class
    for v, s in state.items():
      if not synthesises(v):
        continue
      images = parallel.to_host(s.chains.pool.images)
      by_class = images[:n_class].reshape(-1, self.k, *self.image_shape)
      grid = by_class[:shown].transpose(1, 0, 2, 3, 4).reshape(
          -1, *self.image_shape)
      save_grid(os.path.join(folder, f"{v}_classes_pass_{round_index:03d}.png"),
                grid, columns=shown, scale=self.display_scale)
      mixup = images[n_class:][:self.k * shown]
      if len(mixup):
        save_grid(os.path.join(folder, f"{v}_mixup_pass_{round_index:03d}.png"),
                  mixup, columns=shown, scale=self.display_scale)
      if round_index == self.config.rounds:
        self.write_interpolation(state, v, folder)

  def write_interpolation(self, state, variant, folder, classes=None,
                          steps=None, key=None):
    classes = tuple(classes or self.config.log.interpolate_classes)
    steps = steps or self.config.log.interpolation_steps
    key = key if key is not None else jax.random.fold_in(
        self.base_key, _INTERPOLATION_STREAM)
    for c in classes:
      if not 0 <= c < self.k:
        raise ConfigError(f"log.interpolate_classes={classes} must name two "
                          f"classes of 0 … {self.k - 1}.")
    raw, refined = self.interpolation(state, variant, classes, steps, key)
    path = os.path.join(folder, f"{variant}_interpolation_{classes[0]}_to_"
                        f"{classes[1]}.png")
    save_grid(path, np.concatenate([raw, refined]), columns=steps,
              scale=self.display_scale)
    return path

  def progress(self, round_index, rounds, metrics, seconds):
    parts = [f"pass {round_index}/{rounds}"]
    for v in self.variants:
      m = {k.split("/", 1)[1]: val for k, val in metrics.items()
           if k.startswith(v + "/")}
      text = (f"{v}: loss {m['train_loss']:.3f}, train acc "
              f"{100 * m['train_accuracy']:.1f}%")
      if "train_fake_detected" in m and synthesises(v):
        text += f", fakes caught {100 * m['train_fake_detected']:.0f}%"
      if "test_error" in m:
        text += f", test error {100 * m['test_error']:.2f}%"
      if "synthesis_logit_start" in m:
        text += (f", chains log p {m['synthesis_logit_start']:.2f}→"
                 f"{m['synthesis_logit_end']:.2f}")
      if "synthesis_acceptance" in m:
        text += f" (accepted {100 * m['synthesis_acceptance']:.0f}%)"
      parts.append(text)
    parts.append(f"{seconds:.1f} s")
    return " | ".join(parts)

  # One pass ----------------------------------------------------------------

  def run_round(self, state, round_index):
    """Fit, then synthesise (stic, stic_erm), for every variant."""
    key = jax.random.fold_in(self.base_key, round_index)
    k_train, k_syn = jax.random.split(key)
    metrics, new_state = {}, {}
    for v in self.variants:
      s = state[v]
      params, opt_state, train_metrics = self._train(
          s.params, s.opt_state, s.chains, (self.images, self.labels),
          k_train, variant=v)
      train_metrics = parallel.to_host(train_metrics)
      if not train_metrics.pop("train_finite"):
        raise NonFiniteError(
            f"NaN or Inf in the {v} classifier's loss or weights in pass "
            f"{round_index}; lower train.learning_rate (now "
            f"{self.config.train.learning_rate}) and resume: the last "
            "checkpoint is intact.")
      m = {k: float(val) for k, val in train_metrics.items()}
      chains = s.chains
      if synthesises(v):
        chains, stats = self._synthesize(
            params, chains, k_syn, round_index, (self.images, self.labels),
            self.class_index, self.class_counts, variant=v)
        m.update(self._synthesis_metrics(stats, v, round_index))
      if evaluators.due(self.config, round_index):
        m.update(evaluators.evaluate(self.config, "per_round",
                                     self._subject({v: params})))
      metrics.update({f"{v}/{k}": val for k, val in m.items()})
      new_state[v] = VariantState(params=params, opt_state=opt_state,
                                  chains=chains)
    return new_state, metrics

  def _synthesis_metrics(self, stats, variant, round_index):
    metrics = summarize(stats)
    if metrics.pop("synthesis_nonfinite"):
      raise NonFiniteError(
          f"NaN or Inf in {variant}'s chains (their log p(y|x), Gram loss or "
          f"input gradients) in pass {round_index}; lower "
          f"synthesis.learning_rate (now {self.settings.learning_rate}) or "
          "stic.gram_weight and resume: the last checkpoint is intact.")
    if self.settings.metropolis:
      accepted = parallel.to_host(stats.step_state)
      metrics["synthesis_acceptance"] = float(
          accepted.sum() / max(1, parallel.to_host(stats.steps).sum()))
    return metrics


def _check_settings(config):
  stic = config.stic
  if not stic.mixup_alpha > 0:
    raise ConfigError(f"stic.mixup_alpha={stic.mixup_alpha!r} must be > 0: "
                      "mixup draws λ ~ Beta(α, α).")
  if not 0 <= stic.restart_probability <= 1:
    raise ConfigError(
        f"stic.restart_probability={stic.restart_probability!r} is not a "
        "probability; use a value in [0, 1] (STIC §4: 0.5).")
  if stic.sampler not in SAMPLERS:
    raise ConfigError(f"Unknown stic.sampler={stic.sampler!r}; use "
                      f"{' or '.join(map(repr, SAMPLERS))}.")
  if stic.chains_per_class < 1 or stic.mixup_chains < 0:
    raise ConfigError("stic.chains_per_class must be ≥ 1 and "
                      "stic.mixup_chains ≥ 0.")
  if stic.steps_per_pass < 1:
    raise ConfigError(f"stic.steps_per_pass={stic.steps_per_pass} must be "
                      "≥ 1 (STIC §4: 5,000).")
  if stic.gram_weight < 0:
    raise ConfigError(f"stic.gram_weight={stic.gram_weight!r} must be ≥ 0 "
                      "(0: no Gram term).")
  if "score_stic" in stic.variants:
    s = stic.score
    if s.trace not in score_matching.TRACES:
      raise ConfigError(f"Unknown stic.score.trace={s.trace!r}; use "
                        f"{' or '.join(map(repr, score_matching.TRACES))}.")
    classifiers.check_score_head(stic_networks.score_head(config),
                                 "stic.score.head")
    if s.projections < 1 or min(s.weight, s.data_noise, s.guidance) < 0:
      raise ConfigError(
          f"stic.score.projections={s.projections} must be ≥ 1 and "
          f"stic.score.weight={s.weight!r}, data_noise={s.data_noise!r} and "
          f"guidance={s.guidance!r} ≥ 0.")
    if config.synthesis.metropolis:
      raise ConfigError(
          "score_stic cannot take synthesis.metropolis=True: its chains "
          "follow a learned score s(x) that has no log-density for the "
          "Metropolis–Hastings test.")
  if "attentive_stic" in stic.variants:
    a = stic.attentive
    if a.reconstruction_weight < 0 or a.gram_weight < 0:
      raise ConfigError(
          f"stic.attentive.reconstruction_weight={a.reconstruction_weight!r} "
          f"and stic.attentive.gram_weight={a.gram_weight!r} must be ≥ 0.")
  if config.synthesis.optimizer != "grmala":
    raise ConfigError(
        f"STIC samples with synthesis.optimizer='grmala' (also for "
        f"stic.sampler='sgld'), not {config.synthesis.optimizer!r}.")


def results_markdown(config, dataset_name, final):
  lines = [f"# STIC results: {dataset_name}, sampler {config.stic.sampler}, "
           f"seed {config.seed}, {config.rounds} passes", ""]
  lines += robustness.classifier_results_lines(final, config.eval.fgsm_eps)
  if "samples" in final:
    names = sorted({k for m in final["samples"].values() for k in m})
    lines += ["## Class-conditional samples (the class chains after the "
              "last pass)", "",
              "| model | " + " | ".join(names) + " |",
              "| --- |" + " --- |" * len(names)]
    for v, m in final["samples"].items():
      lines.append(f"| {v} | " + " | ".join(
          f"{m[n]:.4g}" if n in m else "" for n in names) + " |")
    lines.append("")
  return "\n".join(lines)


@harness.reports
def train_and_evaluate(config, workdir):
  """Trains every variant of `config.stic.variants`, resuming from
  `workdir`, then writes results.json / results.md there; returns (state,
  results)."""
  mesh = parallel.make_mesh()
  run = SynthesizeItClassifier(config, mesh)
  logging.info(
      "STIC on %s: %d training images %s, %d classes + fake, variants %s, "
      "%d passes of %d steps, sampler %s (%d steps per pass), %d devices; "
      "writing to %s", run.dataset_name, run.num_train,
      "×".join(map(str, run.image_shape)), run.k, ", ".join(run.variants),
      config.rounds, config.stic.steps_per_pass, run.sampler,
      run.settings.max_steps, mesh.size, workdir)
  state = harness.run_rounds(run, config, workdir)
  began = time.perf_counter()
  final = run.evaluate(state)
  results = {"dataset": run.dataset_name, "sampler": config.stic.sampler,
             "seed": config.seed, "passes": config.rounds,
             "fgsm_eps": config.eval.fgsm_eps,
             **{k: harness.jsonable(v) for k, v in final.items()}}
  logging.info("Evaluated in %.1f s", time.perf_counter() - began)
  harness.write_results(workdir, results,
                        results_markdown(config, run.dataset_name, final))
  return state, results

