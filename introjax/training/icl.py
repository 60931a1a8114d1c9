"""ICL / ICN: introspective classifiers by reclassification-by-synthesis
(ICL Algorithm 1, §3.2–3.3), with the baseline CNN and the ICL-noise
ablation trained in the same run for a paired comparison.

Round 1 trains the classifier C0 on the data alone. Every later round t
first synthesises l pseudo-negatives per class from the current classifier
(Adam ascent on the input from N(0, σ²), each sample stopped once it is
classified positive for its class), adds them to the pool, then retrains the
classifier on data ∪ pool: Algorithm 1's steps 2–4. The variants differ only
in the pseudo-negatives:

  baseline    none: the same network and schedule on the data alone
  icl_noise   the starting noise itself, without ascent (the ablation)
  icl         the synthesised pseudo-negatives
  winn        WINN §5.6: softmax cross-entropy on the data plus
              α·(Wasserstein term + λ·gradient penalty) against
              pseudo-negatives synthesised WINN's way (below)

All variants start from the same initial weights. The pool keeps each
round's pseudo-negatives in class-major blocks, so a slot's class is
(slot mod per_round) div l and no label array is needed.

The WINN variant (configured under `config.winn`) keeps the pool, the
starting noise and the evaluation, and changes two parts. Its classification
step (`objectives.wasserstein.winn_classifier_loss`) draws each batch as in
the baseline (B data images, the same draws) and pairs every positive with a
pseudo-negative made for its class, uniformly from the pool's rounds; the
critic of class k is its logit. Its synthesis climbs each sample's
own-class logit (eq. 6) with `config.winn.synthesis` (§5.6: Adam, lr 0.02,
β1 0.9) and stops it at its own threshold ~ U[min, max] of that class's
logit over `winn.threshold_positives_per_class` random training images of
the class (§4.1's early stop, per class). A round is one pass of
`train.epochs_per_round` epochs over the data, as for the baseline, so the
two see the same positives in the same order and differ only by the α term
from round 2 on (round 1 has no pseudo-negatives: α·(…) is masked).
"""
import functools
import math
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
from introjax.eval.images import center_crop, save_grid
from introjax.models.heads import ClassifierHeads
from introjax.objectives import wasserstein
from introjax.sampling import p0 as p0_lib
from introjax.sampling import scores
from introjax.sampling import stopping
from introjax.sampling.ascent import AscentSettings, ascend, summarize
from introjax.training import fit
from introjax.training import harness

VARIANTS = ("baseline", "icl_noise", "icl", "winn")
_EVAL_STREAM = 0xE7A1   # the evaluators' real images and projections
_P0_NETWORK_STREAM = 0x5EED   # p0.name="upsampling": its network

# Beyond model.* and data.* (checkpoint.structural_keys): what sizes the
# pools and the optimiser state, and which variants the state holds.
STATE_KEYS = ("icl.mode", "icl.variants", "icl.positive_class",
              "negatives.per_class", "pool.rounds",
              "train.weight_decay", "train.optimizer")


@struct.dataclass
class VariantState:
  params: Any
  opt_state: Any
  pool: pool_lib.NegativePool   # empty for the baseline


class IntrospectiveClassifier:
  """The compiled parts of ICL for one config, dataset and device mesh."""

  def __init__(self, config, mesh, train_set=None, test_set=None,
               abstract=False):
    """`abstract`: the data only as shapes, never read (`compiled_steps`)."""
    self.config = config
    self.mesh = mesh
    self.abstract = abstract
    if abstract:
      train_set, test_set = datasets.classification_shapes(config.data)
    elif train_set is None:
      # Each process decodes only the training rows its devices hold.
      train_set, test_set = datasets.load_classification(
          config.data, train_rows=lambda n: parallel.process_rows(n, mesh))
    icl = config.icl
    self.variants = config_utils.check_variants(icl.variants, VARIANTS,
                                                "icl.variants")
    train_labels, test_labels = train_set.labels, test_set.labels
    if icl.mode == "binary":
      if not 0 <= icl.positive_class < train_set.num_classes:
        raise ConfigError(
            f"icl.positive_class={icl.positive_class} is not a class of "
            f"{train_set.name} (0 … {train_set.num_classes - 1}).")
      # Class 0: the positive class; class 1: all others.
      train_labels = (train_labels != icl.positive_class).astype(np.int32)
      test_labels = (test_labels != icl.positive_class).astype(np.int32)
    self.heads = ClassifierHeads(icl.mode, config.model,
                                 train_set.num_classes, config.dtype)
    self.dataset_name = train_set.name
    self.image_shape = train_set.images.shape[1:]
    self.num_train = train_set.num_rows
    self.l = config.negatives.per_class
    self.per_round = self.heads.num_negative_classes * self.l
    self.capacity = config.pool.rounds * self.per_round
    self._check(mesh)
    has = {"classifiers": True, "test_set": True}
    if set(self.variants) - {"baseline"}:   # the others make negatives
      has.update(generated=True, real=True,
                 generated_side=min(self.image_shape[:2]))
    evaluators.check(config, "this classifier run", has)

    self._batch = parallel.batch_sharding(mesh)
    self._replicated = parallel.replicated(mesh)
    # The data lives on device as uint8 and is scaled inside the steps. The
    # training set is split over the data axis (zero rows pad it to a
    # multiple of the mesh size; sampling never draws them); batches
    # gather their rows from the devices that hold them.
    (self.images, self.labels, self.test_images,
     self.test_labels) = datasets.place_classification(
         train_set, test_set, mesh, train_labels, test_labels, abstract)

    # The rate schedule's decay step is an argument of the compiled step
    # (variants' rounds differ in length); the state's layout does not
    # depend on it.
    self.tx = optim.make_optimizer(config.train, decay_step=0)
    self.loss = objectives.build_loss("icl", mode=icl.mode)
    self.settings = AscentSettings.from_config(config.synthesis)
    self.rule = stopping.build_stop_rule(config.synthesis)
    if config.p0.name == "upsampling":
      p0_lib.check_upsampling_patch(self.image_shape[0], "p0.name",
                                    "data image side")
    self.p0 = p0_lib.build(
        config.p0.name, field="p0.name", std=config.p0.std,
        patch=self.image_shape[0],
        network_key=jax.random.fold_in(jax.random.PRNGKey(config.seed),
                                       _P0_NETWORK_STREAM))
    if "winn" in self.variants:
      self._init_winn()
    self.base_key = jax.random.PRNGKey(config.seed)
    self._train = jax.jit(self._train_fn, donate_argnums=(0, 1),
                          static_argnames=("winn",))
    self._negatives = jax.jit(self._negatives_fn, static_argnums=(2,))
    self._winn_negatives = jax.jit(self._winn_negatives_fn)
    self._add = jax.jit(functools.partial(pool_lib.pool_add, mesh=mesh),
                        donate_argnums=0)

  def _check(self, mesh):
    train = self.config.train
    if self.l < 1 or self.config.pool.rounds < 1:
      raise ConfigError("negatives.per_class and pool.rounds must be "
                        "≥ 1.")
    parallel.check_divisible("train.batch_size", train.batch_size, mesh)
    parallel.check_divisible(
        "the pseudo-negatives per round (classes × negatives.per_class)",
        self.per_round, mesh)
    if train.epochs_per_round <= 0:
      raise ConfigError("train.epochs_per_round must be > 0.")

  def _init_winn(self):
    """Checks `config.winn` and indexes the training images by class, for
    the per-class early-stop thresholds."""
    winn = self.config.winn
    if self.config.icl.mode != "softmax":
      raise ConfigError(
          f"The winn variant trains a softmax classifier (WINN §5.6), but "
          f"icl.mode={self.config.icl.mode!r}; set icl.mode='softmax' or "
          "drop 'winn' from icl.variants.")
    for field in ("alpha", "gp_weight"):
      if not winn[field] >= 0:
        raise ConfigError(f"winn.{field}={winn[field]!r} must be ≥ 0 "
                          "(WINN §5.6: alpha 0.01, gp_weight 10).")
    if winn.threshold_positives_per_class < 1:
      raise ConfigError(
          f"winn.threshold_positives_per_class="
          f"{winn.threshold_positives_per_class} must be ≥ 1: the early "
          "stop draws its thresholds between the smallest and largest "
          "logit of that many training images per class.")
    self.winn_settings = AscentSettings.from_config(winn.synthesis)
    self.winn_loss = objectives.build_loss(
        "winn_classifier", alpha=winn.alpha, gp_weight=winn.gp_weight)
    self.class_index, self.class_counts = datasets.place_class_table(
        self.labels, self.num_train, self.heads.num_classes, self.mesh,
        self.abstract)

  # State ----------------------------------------------------------------

  def init_state(self):
    """Every variant starts from the same weights and an empty pool."""
    key = jax.random.fold_in(self.base_key, 0)
    params = jax.device_put(self.heads.init(key, self.image_shape),
                            self._replicated)
    pool = pool_lib.empty_pool(self.capacity, self.image_shape)
    pool = jax.device_put(pool, self._pool_sharding())
    # Copies: each variant's buffers are donated to its own steps.
    fresh = lambda tree: jax.tree.map(jnp.copy, tree)
    return {name: VariantState(params=fresh(params),
                               opt_state=jax.device_put(
                                   self.tx.init(fresh(params)),
                                   self._replicated),
                               pool=fresh(pool))
            for name in self.variants}

  def _pool_sharding(self):
    return pool_lib.NegativePool(images=self._batch, rounds=self._batch,
                                 cursor=self._replicated)

  def learning_rate(self, round_index):
    """ICL §4.1: 0.01, ×0.1 from round `train.decay_round` on."""
    return optim.round_learning_rate(self.config.train, round_index)

  def round_steps(self, variant, round_index):
    """Optimiser steps of `variant` in round t: `train.epochs_per_round`
    passes over what it trains on (WINN's batches pair each positive with a
    negative, so its epoch is one over the data, the baseline's count)."""
    train = self.config.train
    seen = self.num_train + (0 if variant == "winn" else
                             self.filled(variant, round_index))
    return math.ceil(train.epochs_per_round * seen / train.batch_size)

  def decay_step(self, variant):
    """The optimiser step at which `variant`'s rate schedule decays (the
    first step of round `train.decay_round`)."""
    first = self.config.train.get("decay_round", 0)
    return sum(self.round_steps(variant, t) for t in range(1, max(first, 1)))

  def filled(self, variant, round_index):
    """Pseudo-negatives in the pool of `variant` while round t trains."""
    if variant == "baseline":
      return 0
    return min((round_index - 1) * self.per_round, self.capacity)

  # Classification step ----------------------------------------------------

  def _data(self, train_images, index, key):
    """Training images `index` in [-1, 1], augmented if the config says."""
    data = datasets.to_unit_range(train_images[index])
    if self.config.data.augment:
      data = datasets.augment_pad_crop_flip(key, data)
    return data

  def _sample_batch(self, train_data, pool, key):
    """A batch drawn uniformly from data ∪ pool (data/pool.py): (images in
    [-1, 1], labels, is_negative)."""
    train_images, train_labels = train_data
    k_index, k_augment = jax.random.split(key)
    data_index, slot, is_negative = pool_lib.draw_data_or_pool(
        pool, k_index, self.config.train.batch_size, self.num_train)
    data = self._data(train_images, data_index, k_augment)
    images = jnp.where(is_negative[:, None, None, None],
                       pool.images[slot].astype(data.dtype), data)
    labels = jnp.where(is_negative, (slot % self.per_round) // self.l,
                       train_labels[data_index])
    images = jax.lax.with_sharding_constraint(images, self._batch)
    return images, labels, is_negative

  def _winn_batch(self, train_data, pool, key):
    """B data images drawn as `_sample_batch` draws them from an empty pool
    (so the baseline sees the same ones), each paired with a pseudo-negative
    made for its class (data/pool.py's class-paired draw): (positives,
    labels, negatives, whether the pool has any)."""
    train_images, train_labels = train_data
    n, size = self.num_train, self.config.train.batch_size
    k_index, k_augment = jax.random.split(key)
    index = jax.random.randint(k_index, (size,), 0, n)
    positives = self._data(train_images, index, k_augment)
    labels = train_labels[index]
    slot, any_negatives = pool_lib.draw_class_paired(
        pool, jax.random.fold_in(key, 1), labels, self.per_round, self.l)
    negatives = pool.images[slot].astype(positives.dtype)
    constrain = lambda x: jax.lax.with_sharding_constraint(x, self._batch)
    return constrain(positives), labels, constrain(negatives), any_negatives

  def _train_fn(self, params, opt_state, pool, train_data, key, num_steps,
                decay_step, winn=False):
    """`num_steps` optimiser steps (training/fit.py) on data ∪ pool, or for
    WINN on data paired with pseudo-negatives (`train_data`: the split
    training images and labels, arguments because a multi-host array cannot
    be a jit constant); returns the new parameters and optimiser state and
    the means over the steps of the loss and its parts (data accuracy, and
    for WINN the cross-entropy, Wasserstein estimate and penalty)."""
    tx = optim.make_optimizer(self.config.train, decay_step)

    def step_loss(params, key):
      logits = functools.partial(self.heads.class_logits, params)
      if winn:
        positives, labels, negatives, any_negatives = self._winn_batch(
            train_data, pool, key)
        batch = {"positives": positives, "labels": labels,
                 "negatives": negatives, "any_negatives": any_negatives}
        return self.winn_loss(logits, batch, jax.random.fold_in(key, 2))
      images, labels, is_negative = self._sample_batch(train_data, pool, key)
      return self.loss(logits, {"x": images, "labels": labels,
                                "negative": is_negative}, key)

    params, opt_state, run = fit.fit(step_loss, tx, params, opt_state, key,
                                     num_steps)
    means = {f"train_{k}": v for k, v in run["mean"].items()}
    return params, opt_state, dict(means, train_finite=run["finite"])

  # Synthesis step ---------------------------------------------------------

  def _start(self, key):
    """l starting points per class, class-major, from N(0, σ²) clipped to
    the data range."""
    x0 = self.p0(key, self.per_round, self.image_shape)
    return jax.lax.with_sharding_constraint(x0, self._batch)

  def _negatives_fn(self, params, key, ascent: bool):
    """l pseudo-negatives per class, class-major, from `_start`; with
    `ascent`, each climbs its class's logit until it is classified positive
    for that class or the step cap."""
    k_init, k_ascent = jax.random.split(key)
    x0 = self._start(k_init)
    if not ascent:
      return x0, None
    climb = scores.classified_as_own(
        functools.partial(self.heads.synthesis_scores, params))
    return ascend(climb, x0, k_ascent, self.rule, self.settings)

  def winn_thresholds(self, params, key, train_images, class_index,
                      class_counts):
    """WINN §4.1's early-stop thresholds, class-major like the negatives:
    sample i of class k gets one ~ U[min, max] of the class-k logit over
    `winn.threshold_positives_per_class` random training images of class k
    (`class_index`: (K, max count) rows of each class's images; `class_counts`:
    how many of them are real)."""
    k = self.heads.num_classes
    m = self.config.winn.threshold_positives_per_class
    k_pick, k_draw = jax.random.split(key)
    pick = jax.random.randint(k_pick, (k, m), 0, class_counts[:, None])
    index = jnp.take_along_axis(class_index, pick, axis=1).reshape(-1)
    images = datasets.to_unit_range(train_images[index])
    own = wasserstein.own_class_logit(
        self.heads.class_logits(params, images), jnp.repeat(jnp.arange(k), m))
    return stopping.per_class_thresholds(k_draw, own.reshape(k, m), self.l)

  def _winn_negatives_fn(self, params, key, train_images, class_index,
                         class_counts):
    """WINN's pseudo-negatives: the same starting points as ICL's for this
    key, each climbing its own-class logit (eq. 6) with
    `config.winn.synthesis` until it passes its threshold or the cap.
    Returns (x, stats, thresholds)."""
    k_init, k_ascent = jax.random.split(key)
    k_thresholds, k_ascent = jax.random.split(k_ascent)
    thresholds = self.winn_thresholds(params, k_thresholds, train_images,
                                      class_index, class_counts)
    x, stats = ascend(
        scores.logit_ascent(functools.partial(self.heads.own_logit, params)),
        self._start(k_init), k_ascent, stopping.PerSampleThreshold(thresholds),
        self.winn_settings)
    return x, stats, thresholds

  def compiled_steps(self):
    """The compiled calls of a round (per kind of variant) and of the
    evaluation, with abstract arguments placed as `run_round` places them
    (introjax/compiled.py)."""
    targets = self.restore_targets(None)["variants"]
    rep = self._replicated
    key, count = compiled.key(rep), compiled.scalar(jnp.int32, rep)
    train_data = (self.images, self.labels)
    resident = (targets, train_data, self.test_images, self.test_labels,
                getattr(self, "class_index", None),
                getattr(self, "class_counts", None))
    # The largest round's steps: every variant's epochs over data ∪ pool.
    last = self.config.rounds
    steps = []
    for name in ("icl", "winn", "baseline", "icl_noise"):
      if name not in targets:
        continue
      s = targets[name]
      watch = {"pool": s["pool"].images, "dataset": self.images}
      winn = name == "winn"
      steps.append(compiled.Step(
          f"classification ({'winn' if winn else 'data ∪ pool'})",
          self._train, (s["params"], s["opt_state"], s["pool"], train_data,
                        key, count, count), kwargs={"winn": winn},
          iterations=self.round_steps(name, last), watch=watch,
          resident=resident))
      if winn:
        steps.append(compiled.Step(
            "synthesis (winn)", self._winn_negatives,
            (s["params"], key, self.images, self.class_index,
             self.class_counts), iterations=self.winn_settings.max_steps,
            watch=watch, resident=resident))
      elif name == "icl":
        steps.append(compiled.Step(
            "synthesis", self._negatives, (s["params"], key, True),
            iterations=self.settings.max_steps, watch=watch,
            resident=resident))
      if name != "baseline":
        negatives = compiled.array((self.per_round, *self.image_shape),
                                   jnp.float32, self._batch)
        steps.append(compiled.Step("pool update", self._add,
                                   (s["pool"], negatives, count),
                                   watch=watch, resident=resident))
    # Every kind of classification step once: the variants share programs.
    seen, unique = set(), []
    for step in steps:
      if step.name not in seen:
        seen.add(step.name)
        unique.append(step)
    params = next(iter(targets.values()))["params"]
    return unique + robustness.evaluation_steps(
        self.heads.class_logits, params, self.image_shape,
        self.config.eval.batch_size, self.mesh,
        "fgsm" in evaluators.names(self.config, "final"), resident)

  # Evaluation ---------------------------------------------------------------

  def evaluation_subject(self, classifiers, negatives=None):
    """What the evaluators (eval/evaluators.py) see: `classifiers` (name ->
    params) on the test set and, for a round that made them, its negatives
    against as many random training images."""

    def real(key, n, size):
      rows = jax.random.randint(key, (n,), 0, self.num_train)
      images = parallel.to_host(datasets.to_unit_range(self.images[rows]))
      return center_crop(images, size)

    return evaluators.Subject(
        generated=None if negatives is None else parallel.to_host(negatives),
        real=real, real_side=min(self.image_shape[:2]),
        classifiers={name: (self.heads.class_logits, params)
                     for name, params in classifiers.items()},
        test_set=(self.test_images, self.test_labels),
        batch_size=robustness.batch_size_on(self.mesh,
                                            self.config.eval.batch_size),
        sharding=self._batch,
        key=jax.random.fold_in(self.base_key, _EVAL_STREAM))

  def evaluate(self, state):
    """eval.final over every variant: {"test_error": {name: error}} and the
    FGSM table ("robustness") when named."""
    subject = self.evaluation_subject({n: s.params for n, s in state.items()})
    final = evaluators.final_by_classifier(self.config, subject, list(state))
    return final

  # Harness hooks -------------------------------------------------------------

  state_keys = STATE_KEYS

  def checkpoint_items(self, state):
    return {"variants": {name: {"params": s.params,
                                "opt_state": s.opt_state, "pool": s.pool}
                         for name, s in state.items()}}

  def restore_targets(self, meta):
    del meta
    shapes = jax.eval_shape(self.init_state)
    rep, batch = self._replicated, self._batch

    def placed(tree, sharding):
      return jax.tree.map(lambda s: jax.ShapeDtypeStruct(
          s.shape, s.dtype, sharding=sharding), tree)

    return {"variants": {
        name: {"params": placed(s.params, rep),
               "opt_state": placed(s.opt_state, rep),
               "pool": pool_lib.NegativePool(
                   images=placed(s.pool.images, batch),
                   rounds=placed(s.pool.rounds, batch),
                   cursor=placed(s.pool.cursor, rep))}
        for name, s in shapes.items()}}

  def from_items(self, items):
    return {name: VariantState(**v) for name, v in items["variants"].items()}

  def checkpoint_meta(self, state):
    return {}

  def write_samples(self, state, round_index, folder):
    """The newest pseudo-negatives of each variant that has them: one row per
    class."""
    shown = min(self.l, self.config.log.num_samples)
    for name, s in state.items():
      if name == "baseline" or round_index < 2:
        continue
      start = int(jax.device_get(s.pool.cursor)) - self.per_round
      start %= self.capacity
      block = parallel.to_host(s.pool.images[start:start + self.per_round])
      block = block.reshape(self.heads.num_negative_classes, self.l,
                            *self.image_shape)[:, :shown]
      save_grid(os.path.join(folder, f"{name}_round_{round_index:03d}.png"),
                block.reshape(-1, *self.image_shape), columns=shown)

  def progress(self, round_index, rounds, metrics, seconds):
    parts = [f"round {round_index}/{rounds}"]
    for name in self.variants:
      m = {k.split("/", 1)[1]: v for k, v in metrics.items()
           if k.startswith(name + "/")}
      text = (f"{name}: loss {m['train_loss']:.3f}, train acc "
              f"{100 * m['train_accuracy']:.1f}%")
      if "test_error" in m:
        text += f", test error {100 * m['test_error']:.2f}%"
      if "train_wasserstein" in m:
        text += (f", W {m['train_wasserstein']:+.3f}, GP "
                 f"{m['train_penalty']:.3f}")
      if "synthesis_steps_mean" in m:
        text += (f", synth {m['synthesis_steps_mean']:.0f} steps mean "
                 f"({m['synthesis_stopped_early']}/{m['synthesis_samples']}"
                 f" stopped early)")
      parts.append(text)
    parts.append(f"{seconds:.1f} s")
    return " | ".join(parts)

  # One round ---------------------------------------------------------------

  def run_round(self, state, round_index):
    """Synthesis (from round 2 on), pool update, then the classification
    step, for every variant; returns the new state and the round's metrics."""
    config = self.config
    key = jax.random.fold_in(self.base_key, round_index)
    k_syn, k_train = jax.random.split(key)
    lr = self.learning_rate(round_index)
    metrics, new_state = {}, {}
    for name, s in state.items():
      m, pool = {}, s.pool
      winn = name == "winn"
      negatives = None
      if winn and round_index > 1:
        negatives, stats, thresholds = self._winn_negatives(
            s.params, k_syn, self.images, self.class_index, self.class_counts)
        m.update(_synthesis_metrics(stats, name, round_index,
                                    self.winn_settings.learning_rate,
                                    thresholds))
        pool = self._add(pool, negatives, round_index)
      elif name != "baseline" and round_index > 1:
        negatives, stats = self._negatives(s.params, k_syn, name == "icl")
        if stats is not None:
          m.update(_synthesis_metrics(stats, name, round_index,
                                      self.settings.learning_rate))
        pool = self._add(pool, negatives, round_index)
      filled = self.filled(name, round_index)
      steps = self.round_steps(name, round_index)
      params, opt_state, train_metrics = self._train(
          s.params, s.opt_state, pool, (self.images, self.labels), k_train,
          steps, self.decay_step(name), winn=winn)
      train_metrics = parallel.to_host(train_metrics)
      if not train_metrics.pop("train_finite"):
        raise NonFiniteError(
            f"NaN or Inf in the {name} classifier's loss or weights in round "
            f"{round_index} (learning rate {lr}); lower train.learning_rate "
            "and resume: the last checkpoint is intact.")
      m.update({k: float(v) for k, v in train_metrics.items()})
      m.update(pool_size=filled, learning_rate=lr, train_steps=steps)
      if evaluators.due(config, round_index):
        m.update(evaluators.evaluate(config, "per_round",
                                     self.evaluation_subject({name: params},
                                                             negatives)))
      metrics.update({f"{name}/{k}": v for k, v in m.items()})
      new_state[name] = VariantState(params=params, opt_state=opt_state,
                                     pool=pool)
    return new_state, metrics


def _synthesis_metrics(stats, name, round_index, learning_rate,
                       thresholds=None):
  metrics = summarize(stats, thresholds)
  if metrics.pop("synthesis_nonfinite"):
    raise NonFiniteError(
        f"NaN or Inf in the logits or input gradients while synthesising "
        f"{name}'s pseudo-negatives in round {round_index}; lower "
        f"synthesis.learning_rate (now {learning_rate}) and resume: the last "
        "checkpoint is intact.")
  return metrics


def results_markdown(config, dataset_name, final):
  """results.md: the test errors and the FGSM table that eval.final made."""
  title = "WINN classifier" if "winn" in config.icl.variants else "ICL"
  lines = [f"# {title} results: {dataset_name}, mode {config.icl.mode}, "
           f"seed {config.seed}, {config.rounds} rounds", ""]
  lines += robustness.classifier_results_lines(final, config.eval.fgsm_eps)
  others = {k: v for k, v in final.items()
            if k not in ("test_error", "robustness")}
  if others:
    lines += ["| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {v:.4g} |" for k, v in others.items()]
    lines.append("")
  return "\n".join(lines)


@harness.reports
def train_and_evaluate(config, workdir):
  """Trains every variant of `config.icl.variants`, resuming from `workdir`,
  then writes results.json and results.md there (what eval.final names: by
  default the test errors and the FGSM table) and returns (state, results)."""
  mesh = parallel.make_mesh()
  run = IntrospectiveClassifier(config, mesh)
  logging.info("Introspective classifiers (%s) on %s: %d training images %s, %d test images, "
               "variants %s, %d rounds, %d devices; writing to %s",
               config.icl.mode, run.dataset_name, run.num_train,
               "×".join(map(str, run.image_shape)),
               run.test_images.shape[0], ", ".join(run.variants),
               config.rounds, mesh.size, workdir)
  state = harness.run_rounds(run, config, workdir)
  began = time.perf_counter()
  final = run.evaluate(state)
  results = {"dataset": run.dataset_name, "mode": config.icl.mode,
             "seed": config.seed, "rounds": config.rounds,
             "fgsm_eps": config.eval.fgsm_eps,
             **{k: harness.jsonable(v) for k, v in final.items()}}
  logging.info("Evaluated in %.1f s", time.perf_counter() - began)
  harness.write_results(workdir, results,
                        results_markdown(config, run.dataset_name, final))
  return state, results

