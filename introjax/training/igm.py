"""Introspective texture models: the shared texture trainer, and IGM.

Every texture member runs the same round (IGM Algorithm 1, WINN Algorithm
1): fine-tune the critic on patches of the texture against the
pseudo-negative pool (classification step), climb the critic's logit from
the round's starting negatives with early-stopped ascent (synthesis step),
add the result to the pool. `TextureTrainer` is that round; each axis of the
design is read from the config in one place:

  axis                  config                IGM                 WINN
  critic                model.name            "dcgan"             "winn"
  critic loss           train.loss            "bce"               "wgan_gp"
  critic optimiser      train.optimizer       "sgd"               "adam"
  classification stop   train.loss_target     smoothed loss       (k passes)
  early stop            synthesis.stop        "windowed"          "winn"
  initial negatives p0  p0.name               "gaussian"          "upsampling"
  negatives per round   negatives.*           canvases            patches
  pool                  pool.*                recency 0.7         uniform
  critics kept          cascade.*             1 per round / one   K cascades
  evaluation            eval.per_round        —                   "swd"

A member (`TextureIGM` here, `TextureWINN` in winn.py) says how many rounds
each critic of its cascade is trained for; the rest is config. IGM keeps every round's critic as a cascade and starts
each round from the last round's negatives; IGM-single keeps one critic and
synthesises from fresh noise.

Both steps are single jitted calls per round: the classification step is a
`while_loop` over optimiser steps, the synthesis step the sampler's
`while_loop`.
"""
import functools
import os
import time
from typing import Any, Optional

from absl import logging
from flax import struct
import jax
import jax.numpy as jnp

from introjax import compiled
from introjax import generation
from introjax import objectives
from introjax import optim
from introjax import parallel
from introjax.data import images as image_data
from introjax.data import pool as pool_lib
from introjax.data import positives as positives_lib
from introjax.errors import ConfigError, ConfigMismatchError, NonFiniteError
from introjax.eval import evaluators
from introjax.eval.images import save_grid
from introjax.models import cascade as cascade_lib
from introjax.models import critics
from introjax.sampling import anysize
from introjax.sampling import p0 as p0_lib
from introjax.sampling import scores
from introjax.sampling import stopping
from introjax.sampling.ascent import AscentSettings, ascend, summarize
from introjax.training import fit
from introjax.training import harness

@struct.dataclass
class TextureState:
  critic: Any                 # parameters of the critic being trained
  opt_state: Any
  cascade: cascade_lib.Cascade  # the critics kept, in a fixed-size stack
  pool: pool_lib.NegativePool
  negatives: jax.Array        # the latest round's pseudo-negatives
  # The current cascade's starting negatives (the previous cascade's last
  # samples), kept only by members whose critics last several rounds.
  seeds: Optional[jax.Array] = None


IGMState = TextureState


# The p0 network is drawn once per run from this stream of the run's seed
# (only z is re-drawn per sample, as in the released WINN code), so
# training and generation start from one distribution.
_P0_NETWORK_STREAM = 0x5EED
_SWD_STREAM = 0x5D0


# The trainer ---------------------------------------------------------------


class TextureTrainer:
  """The compiled parts of one texture member for a config, texture and
  device mesh. Subclasses may override `rounds_per_critic`, `fresh_p0`, the classification schedule
  and `describe`/`progress`; members trained on a dataset of whole images
  (training/images.py) override where positives come from."""

  # Beyond model.* and data.* (checkpoint.structural_keys): what sizes the
  # negatives and the pool, and the optimiser.
  _SHAPE_KEYS = ("negatives.size", "negatives.per_round", "pool.rounds",
                 "train.optimizer")

  @property
  def state_keys(self):
    return self._SHAPE_KEYS + self.member_state_keys()

  def member_state_keys(self):
    """What only this member's checkpoints depend on."""
    return ()

  # What generation needs of the positives' shapes, saved with every
  # checkpoint so a saved model samples without reading its data.
  SHAPES = positives_lib.SHAPES

  def __init__(self, config, mesh, shapes=None, abstract=False):
    """`shapes` (a checkpoint's `shapes` meta): build the model for
    generation alone, without reading the data (`positive` is None).
    `abstract`: the positives are only their shapes (`compiled_steps`)."""
    self.config = config
    self.mesh = mesh
    self._batch = parallel.batch_sharding(mesh)
    self._replicated = parallel.replicated(mesh)
    if shapes is None:
      self.positives = self.positives_kind(config, mesh, abstract=abstract)
      shapes = self.positives.shapes
    else:
      self.positives = None
    for name in self.SHAPES:
      value = shapes[name]
      setattr(self, name, tuple(value) if isinstance(value, list) else value)
    self.positive = None if self.positives is None else self.positives.array
    self.critic = critics.build_critic(config.model, config.dtype)
    self.logits = critics.critic_logits(self.critic)
    self.critic_loss = objectives.build_loss(
        config.train.get("loss", "bce"), config.train)
    self.tx = optim.make_optimizer(config.train)
    self.settings = self.ascent_settings()
    self.rule = stopping.build_stop_rule(config.synthesis)
    self.base_key = jax.random.PRNGKey(config.seed)
    self._check(mesh)
    self.p0 = p0_lib.build(
        config.p0.name, field="p0.name", std=config.p0.std, patch=self.patch,
        network_key=jax.random.fold_in(self.base_key, _P0_NETWORK_STREAM))
    # Every compiled step takes the positives as an argument: an array a
    # jitted function closed over would be baked into its program as a
    # constant (a copy per program, a dataset in the HLO, no sharding).
    self._train_critic = jax.jit(self._train_critic_fn, donate_argnums=(1, 2))
    self._synthesize = jax.jit(self._synthesize_fn)
    self._add = jax.jit(functools.partial(pool_lib.pool_add, mesh=mesh),
                        donate_argnums=0)
    self._put_critic = jax.jit(cascade_lib.put, donate_argnums=0)
    self._generate = jax.jit(self._generate_fn, static_argnums=(3,))

  def ascent_settings(self):
    """How synthesis moves the negatives (and generation climbs each
    critic): the config's `synthesis` section."""
    return AscentSettings.from_config(self.config.synthesis)

  # Positives -----------------------------------------------------------------
  # Where positives come from is `positives_kind` (data/positives.py): a
  # texture canvas here, a dataset of whole images in training/images.py.

  positives_kind = positives_lib.TextureCanvas

  @property
  def size_field(self):
    """The config field that sets the critic's input size."""
    return self.positives_kind.size_field

  def draw_positives(self, positive, key, num, size):
    """`num` random size×size positives (float32 in [-1, 1]) from
    `positive` (`self.positive`, or its stand-in inside a compiled step).
    Used by the classification step, WINN's thresholds, SWD and FID."""
    return self.positives.draw(positive, key, num, size)

  def positive_patches(self, key, num, size):
    """`draw_positives` from this member's positives (outside jit)."""
    return self.draw_positives(self.positive, key, num, size)

  def describe_data(self):
    return self.positives.describe()

  def _check(self, mesh):
    config = self.config
    negatives, train = config.negatives, config.train
    if self.canvas_pad < 0:
      raise ConfigError("data.pad must be ≥ 0.")
    h, w = self.negative_shape[:2]
    if min(h, w) < self.patch:
      raise ConfigError(
          f"negatives.size={h} is smaller than the {self.patch}×"
          f"{self.patch} patch; use at least {self.size_field} (or 0 for "
          "whole canvases).")
    parallel.check_divisible("negatives.per_round", negatives.per_round,
                             mesh)
    parallel.check_divisible(
        "2 × train.batch_size × negatives.patches_per_image",
        2 * train.batch_size * self.patches_per_image, mesh)
    if config.pool.rounds < 1:
      raise ConfigError("pool.rounds must be ≥ 1 (rounds of negatives the "
                        "pool keeps).")
    if config.p0.name == "upsampling":
      p0_lib.check_upsampling_patch(self.patch, "p0.name", self.size_field)
    evaluators.check(self.config, self.describe(),
                     {"generated": True, "real": True,
                      "generated_side": min(h, w)})

  # Member hooks ---------------------------------------------------------------

  def rounds_per_critic(self) -> Optional[int]:
    """Rounds each critic of the cascade is trained for; None: one critic
    for the whole run."""
    return None

  fresh_p0 = True   # the first cascade starts every round from fresh p0

  @property
  def train_steps(self):
    return self.config.train.max_steps

  @property
  def loss_target(self):
    """Stop the classification step once the smoothed loss is this low;
    None: always run `train_steps` steps."""
    return self.config.train.get("loss_target")

  def describe(self):
    return type(self).__name__

  def progress(self, round_index, rounds, metrics, seconds):
    return progress_line(round_index, rounds, metrics, seconds)

  # Cascade schedule -------------------------------------------------------

  def starts_critic(self, t):
    """Round t freezes the critic trained so far and starts the next one."""
    rpc = self.rounds_per_critic()
    return rpc is not None and t > 1 and (t - 1) % rpc == 0

  def critic_index(self, t):
    """0-based index in the cascade of the critic round t trains."""
    rpc = self.rounds_per_critic()
    return 0 if rpc is None else (t - 1) // rpc

  @property
  def cascade_capacity(self):
    """Critics the run trains: the size of the cascade's stack."""
    rpc = self.rounds_per_critic()
    return 1 if rpc is None else -(-self.config.rounds // rpc)

  @property
  def keeps_seeds(self):
    rpc = self.rounds_per_critic()
    return rpc is not None and rpc > 1

  # State ------------------------------------------------------------------

  def initial_negatives(self, key, num, canvas_shape=None):
    """`num` samples of p0 (`p0.name`, sampling/p0.py) shaped like
    the negatives (or `canvas_shape`), placed over the mesh."""
    shape = tuple(canvas_shape or self.negative_shape)
    x = self.p0(key, num, shape)
    # A batch that does not split over the devices (one final texture on
    # 8 devices) is replicated instead.
    split = num % self.mesh.size == 0
    return jax.device_put(x, self._batch if split else self._replicated)

  def init_state(self):
    """The state before round 1: a fresh critic, an empty cascade and a
    pool holding p0's samples (tagged round 0)."""
    per_round = self.config.negatives.per_round
    k_critic, k_neg = jax.random.split(jax.random.fold_in(self.base_key, 0))
    params = critics.init_critic(self.critic, k_critic,
                                 (self.patch, self.patch, self.canvas_shape[2]))
    params = jax.device_put(params, self._replicated)
    negatives = self.initial_negatives(k_neg, per_round)
    pool = pool_lib.empty_pool(self.config.pool.rounds * per_round,
                               self.negative_shape)
    pool = jax.device_put(pool, self._pool_sharding())
    pool = self._add(pool, negatives, 0)
    # Placed like the step's outputs, so round 2 does not compile again.
    opt_state = jax.device_put(self.tx.init(params), self._replicated)
    cascade = jax.device_put(
        cascade_lib.empty_cascade(params, self.cascade_capacity),
        self._replicated)
    return TextureState(critic=params, opt_state=opt_state, cascade=cascade,
                        pool=pool, negatives=negatives,
                        seeds=negatives if self.keeps_seeds else None)

  def _pool_sharding(self):
    return pool_lib.NegativePool(images=self._batch, rounds=self._batch,
                                 cursor=self._replicated)

  def _abstract(self, capacity):
    """Shapes, dtypes and shardings of the checkpoint items of a state whose
    cascade holds `capacity` critics: the targets a checkpoint is restored
    into."""
    shape = jax.eval_shape(self.init_state)

    def placed(tree, sharding, stacked=0):
      lead = (stacked,) if stacked else ()
      return jax.tree.map(lambda s: jax.ShapeDtypeStruct(
          lead + s.shape, s.dtype, sharding=sharding), tree)

    rep, batch = self._replicated, self._batch
    state = {
        "critic": placed(shape.critic, rep),
        "opt_state": placed(shape.opt_state, rep),
        "pool": pool_lib.NegativePool(
            images=placed(shape.pool.images, batch),
            rounds=placed(shape.pool.rounds, batch),
            cursor=placed(shape.pool.cursor, rep)),
        "negatives": placed(shape.negatives, batch)}
    if self.keeps_seeds:
      state["seeds"] = placed(shape.seeds, batch)
    cascade = cascade_lib.Cascade(
        critics=placed(shape.critic, rep, stacked=capacity),
        count=placed(shape.cascade.count, rep))
    return {"critics": cascade, "state": state}

  # Classification step ----------------------------------------------------

  def _train_critic_fn(self, positive, params, opt_state, pool, key,
                       round_index):
    """`train_steps` optimiser steps on positives ∪ pool, or fewer once the
    smoothed loss reaches `loss_target` (training/fit.py); stops at a
    non-finite loss."""
    train, recency_decay = self.config.train, self.config.pool.recency_decay
    per_class = train.batch_size * self.patches_per_image
    nh, nw = self.negative_shape[:2]

    def batch(key):
      k_pos, k_slot, k_neg = jax.random.split(key, 3)
      pos = self.draw_positives(positive, k_pos, per_class, self.patch)
      slots = pool_lib.pool_sample(pool, k_slot, train.batch_size,
                                   round_index, recency_decay)
      neg = anysize.crop(
          pool.images, jnp.repeat(slots, self.patches_per_image),
          anysize.random_origins(k_neg, 1, per_class, (nh, nw), self.patch)[0],
          self.patch)
      both = jnp.concatenate([pos, neg.astype(pos.dtype)])
      return jax.lax.with_sharding_constraint(both, self._batch)

    def step_loss(params, step_key):
      return self.critic_loss(functools.partial(self.logits, params),
                              {"x": batch(step_key)},
                              jax.random.fold_in(step_key, 1))

    params, opt_state, run = fit.fit(step_loss, self.tx, params, opt_state,
                                     key, self.train_steps, self.loss_target)
    smoothed = run["smoothed"]
    return params, opt_state, dict(
        train_steps=run["steps"], train_loss=smoothed.pop("loss"),
        **{f"train_{name}": value for name, value in smoothed.items()},
        train_finite=run["finite"])

  # Synthesis step ---------------------------------------------------------

  def _patches_for(self, canvas_hw):
    """Patches per canvas per ascent step: the training count on negatives;
    on other canvases the density of `generate.patches` on the
    `generate.size` working canvas, or else the training density."""
    if tuple(canvas_hw) == tuple(self.negative_shape[:2]):
      return self.patches_per_image
    gen = self.config.generate
    fixed = gen.get("patches", 0)
    if fixed and gen.get("size", 0):
      side = gen.size + 2 * self.canvas_pad
      return anysize.patches_for_canvas(fixed, (side, side), canvas_hw)
    return anysize.patches_for_canvas(
        self.patches_per_image, self.negative_shape[:2], canvas_hw)

  def _ascent(self, params, canvas_hw):
    return scores.patch_average(functools.partial(self.logits, params),
                                self.patch, self._patches_for(canvas_hw))

  def _stop_rule(self, positive, params, key, num, patches):
    """The early-stopping rule for `num` canvases of `patches` patches; a
    rule that needs positives (WINN's, sampling/stopping.py) scores
    positive canvases of the same patch count with the current critic."""
    def positive_logits(key, n):
      crops = self.draw_positives(positive, key, n * patches, self.patch)
      return self.logits(params, crops).reshape(n, patches)
    return stopping.bound(self.rule, key, positive_logits, num)

  def _synthesize_fn(self, positive, params, canvases, key):
    hw = canvases.shape[1:3]
    rule = self._stop_rule(positive, params, jax.random.fold_in(key, 1),
                           canvases.shape[0], self._patches_for(hw))
    x, stats = ascend(self._ascent(params, hw), canvases, key, rule,
                      self.settings)
    return x, stats, stopping.thresholds_of(rule)

  def _generate_fn(self, positive, cascade, x0, stylize: Optional[tuple],
                   key):
    """Runs x0 up each trained critic of `cascade` in order
    (generation.py); with `stylize=(alpha, steps)` x0 is the content image
    and each stage runs a fixed number of steps of IGM §4.2's style
    objective."""
    def climb(x, params, key):
      hw = x.shape[1:3]
      settings = self.settings
      if stylize is not None:
        alpha, steps = stylize
        score_and_grad = scores.style_transfer(
            functools.partial(self.logits, params), self.patch,
            self._patches_for(hw), x0, alpha)
        rule = stopping.FixedSteps()
        settings = settings.replace(max_steps=steps)
      else:
        score_and_grad = self._ascent(params, hw)
        rule = self._stop_rule(positive, params, jax.random.fold_in(key, 1),
                               x.shape[0], self._patches_for(hw))
      return ascend(score_and_grad, x, key, rule, settings)

    return generation.through_cascade(cascade.critics, cascade.count, x0, key,
                                      climb)

  def generate(self, cascade, num, size, key):
    """`num` new textures of size×size from p0 through the cascade;
    returns (images (num, size, size, C), AscentStats per stage of the
    stack; zeros for its unused entries)."""
    pad = self.canvas_pad
    canvas = (size + 2 * pad, size + 2 * pad, self.canvas_shape[2])
    k_init, k_ascent = jax.random.split(key)
    # Rounded up to split over the devices (64 samples on 256 chips: one a
    # chip, not 64 on each); the extra chains run alone and are dropped.
    x0 = self.initial_negatives(k_init, parallel.padded_rows(num, self.mesh),
                                canvas)
    canvases, stats = self._generate(self.positive, cascade, x0, None,
                                     k_ascent)
    per_sample = {f: getattr(stats, f)[:, :num]
                  for f in ("steps", "stopped", "first_logit", "last_logit")}
    return _crop_center(canvases[:num], pad), stats._replace(**per_sample)

  def stylize(self, cascade, content, alpha, steps, key):
    """IGM §4.2: minimises α·||I_style − I||² − (1−α)·ln p(I_style) from the
    content image I (H, W, C) through every critic of the cascade."""
    pad = self.config.data.pad
    canvas = image_data.texture_canvas(content, pad)[None]
    canvas = jax.device_put(canvas, self._replicated)
    out, stats = self._generate(self.positive, cascade, canvas,
                                (float(alpha), int(steps)), key)
    return _crop_center(out, pad)[0], stats

  def compiled_steps(self):
    """The compiled calls of a round and of the final generation, with
    abstract arguments placed as `run_round` and `generate` place them
    (introjax/compiled.py)."""
    abstract = self._abstract(self.cascade_capacity)
    state, cascade = abstract["state"], abstract["critics"]
    rep = self._replicated
    key, t = compiled.key(rep), compiled.scalar(jnp.int32, rep)
    watch = {"pool": state["pool"].images}
    if self.positive.sharding.spec:   # a dataset split over the devices
      watch["dataset"] = self.positive
    gen = self.config.generate
    size = gen.get("size", 0) or self.negative_shape[0]
    side = size + 2 * self.canvas_pad
    num = parallel.padded_rows(max(gen.num_images, 1), self.mesh)
    canvases = compiled.array((num, side, side, self.canvas_shape[2]),
                              jnp.float32, self._batch)
    # What lives on the devices through a run: counted into every step.
    common = dict(watch=watch, resident=(abstract, self.positive))
    return [
        compiled.Step("classification", self._train_critic,
                      (self.positive, state["critic"], state["opt_state"],
                       state["pool"], key, t),
                      iterations=self.train_steps, **common),
        compiled.Step("synthesis", self._synthesize,
                      (self.positive, state["critic"], state["negatives"],
                       key), iterations=self.settings.max_steps, **common),
        compiled.Step("pool update", self._add,
                      (state["pool"], state["negatives"], t), **common),
        compiled.Step("generation", self._generate,
                      (self.positive, cascade, canvases, None, key),
                      iterations=self.cascade_capacity
                      * self.settings.max_steps, **common),
    ]

  # Evaluation --------------------------------------------------------------

  def evaluation_subject(self, negatives):
    """What the evaluators (eval.per_round, eval/evaluators.py) see of a
    round: its negatives against random positives of their size, the same
    positives every round."""
    return evaluators.Subject(
        generated=parallel.to_host(negatives),
        generated_pad=self.negative_pad,
        real=lambda key, n, size: parallel.to_host(
            self.positive_patches(key, n, size)),
        real_side=min(self.canvas_shape[:2]),
        key=jax.random.fold_in(self.base_key, _SWD_STREAM))

  # Harness hooks -------------------------------------------------------------

  def checkpoint_meta(self, state):
    return {"cascade_capacity": state.cascade.capacity,
            "shapes": {name: getattr(self, name) for name in self.SHAPES}}

  def checkpoint_items(self, state):
    """The cascade apart from the rest, so sampling restores only it."""
    items = {"critic": state.critic, "opt_state": state.opt_state,
             "pool": state.pool, "negatives": state.negatives}
    if self.keeps_seeds:
      items["seeds"] = state.seeds
    return {"critics": state.cascade, "state": items}

  def restore_targets(self, meta, only_critics=False):
    if "cascade_capacity" not in meta:
      raise ConfigMismatchError(
          "This checkpoint was written by an earlier introjax, which stored "
          "the cascade in another layout; train again in a new --workdir.")
    targets = self._abstract(meta["cascade_capacity"])
    return {"critics": targets["critics"]} if only_critics else targets

  def from_items(self, items):
    cascade = cascade_lib.grown(items["critics"], self.cascade_capacity)
    return TextureState(cascade=cascade, **items["state"])

  def write_samples(self, state, round_index, folder):
    shown = state.negatives[:self.config.log.num_samples]
    images = _crop_center(parallel.to_host(shown), self.negative_pad)
    save_grid(os.path.join(folder, f"round_{round_index:03d}.png"), images)

  # One round ---------------------------------------------------------------

  def run_round(self, state: TextureState, round_index):
    """Classification step, synthesis step, pool update; returns the new
    state and the round's metrics (host floats)."""
    t = round_index
    key = jax.random.fold_in(self.base_key, t)
    k_train, k_syn, k_init = jax.random.split(key, 3)
    critic, opt_state, train_metrics = self._train_critic(
        self.positive, state.critic, state.opt_state, state.pool, k_train, t)
    # Checked before synthesis, which a broken critic would only waste.
    train_metrics = _train_metrics(train_metrics)
    if not train_metrics.pop("train_finite"):
      raise NonFiniteError(
          f"NaN or Inf in the {self.critic_loss.culprit(train_metrics)} in "
          f"round {t} (train.learning_rate="
          f"{self.config.train.learning_rate}); {self.critic_loss.fix} and "
          "resume: the last checkpoint is intact.")
    # A new critic starts from the last samples of the one before (IGM's
    # cascade, WINN §5.1); the first starts from p0 every round, or (IGM)
    # from the negatives drawn before round 1.
    seeds = (state.negatives if t == 1 or self.starts_critic(t)
             else state.seeds)
    if self.fresh_p0 and self.critic_index(t) == 0:
      start = self.initial_negatives(k_init,
                                     self.config.negatives.per_round)
    else:
      start = seeds
    negatives, stats, thresholds = self._synthesize(self.positive, critic,
                                                    start, k_syn)
    # A new entry, or the critic still in training replaces its last copy.
    cascade = self._put_critic(state.cascade, critic,
                               jnp.int32(self.critic_index(t)))
    metrics = {**train_metrics, **summarize(stats, thresholds),
               "synthesis_step_cap": self.settings.max_steps}
    if metrics.pop("synthesis_nonfinite"):
      raise NonFiniteError(
          f"NaN or Inf in the logits or input gradients during synthesis in "
          f"round {t}; lower synthesis.learning_rate (now "
          f"{self.settings.learning_rate}) and resume: the last checkpoint is "
          "intact.")
    if evaluators.due(self.config, t):
      metrics.update(evaluators.evaluate(
          self.config, "per_round", self.evaluation_subject(negatives)))
    pool = self._add(state.pool, negatives, t)
    return TextureState(critic=critic, opt_state=opt_state, cascade=cascade,
                        pool=pool, negatives=negatives,
                        seeds=seeds if self.keeps_seeds else None), metrics


class TextureIGM(TextureTrainer):
  """IGM (a new critic every round, each round starting from the last
  round's negatives) or IGM-single (`cascade.single`: one critic, every round
  from fresh noise)."""

  def member_state_keys(self):
    return ("cascade.single",)

  def ascent_settings(self):
    """IGM-single's one critic climbs p0's noise the whole way every round
    (and at generation), where the cascade's critics share that climb
    round by round: its step cap is `cascade.single_steps`."""
    settings = super().ascent_settings()
    if self.config.cascade.single:
      settings = settings.replace(max_steps=self.config.cascade.single_steps)
    return settings

  def rounds_per_critic(self):
    return None if self.config.cascade.single else 1

  @property
  def fresh_p0(self):
    return self.config.cascade.single

  def describe(self):
    return "IGM-single" if self.config.cascade.single else "IGM"


def _crop_center(canvases, pad):
  h, w = canvases.shape[1:3]
  return canvases[:, pad:h - pad, pad:w - pad]


def _train_metrics(train_metrics):
  """The classification step's numbers as host values, in the logged
  order: steps, loss, the loss's own terms, finiteness."""
  train_metrics = dict(parallel.to_host(train_metrics))
  metrics = dict(train_steps=int(train_metrics.pop("train_steps")),
                 train_loss=float(train_metrics.pop("train_loss")))
  finite = bool(train_metrics.pop("train_finite"))
  metrics.update({k: float(v) for k, v in train_metrics.items()})
  metrics["train_finite"] = finite
  return metrics


def progress_line(round_index, rounds, m, seconds):
  swd = f" | SWD {m['swd_mean']:.1f}" if "swd_mean" in m else ""
  return (f"round {round_index}/{rounds} | classify: {m['train_steps']} steps,"
          f" loss {m['train_loss']:.3f}, accuracy {100 * m['train_accuracy']:.1f}%"
          f" | synthesize: {m['synthesis_steps_mean']:.0f} steps mean "
          f"(max {m['synthesis_steps_max']}/{m['synthesis_step_cap']}), "
          f"{m['synthesis_stopped_early']}/{m['synthesis_samples']} stopped "
          f"early, logit {m['synthesis_logit_start']:+.2f} → "
          f"{m['synthesis_logit_end']:+.2f}{swd} | {seconds:.1f} s")


@harness.reports
def train_texture(trainer_cls, config, workdir):
  """Trains the texture member `trainer_cls` per `config`, resuming from
  `workdir`, then writes the final texture at `generate.size` from p0."""
  mesh = parallel.make_mesh()
  run = trainer_cls(config, mesh)
  logging.info("%s on %s, %d rounds, %d devices; writing to %s",
               run.describe(), run.describe_data(), config.rounds, mesh.size,
               workdir)
  state = harness.run_rounds(run, config, workdir)
  gen = config.generate
  if gen.num_images:
    began = time.perf_counter()
    # Image members generate at the images' own size.
    size = gen.get("size", 0) or run.negative_shape[0]
    key = jax.random.fold_in(run.base_key, config.rounds + 1)
    textures, stats = run.generate(state.cascade, gen.num_images, size, key)
    path = os.path.join(harness.samples_dir(workdir),
                        f"final_{size}x{size}.png")
    save_grid(path, parallel.to_host(textures))
    steps = int(parallel.to_host(stats.steps).sum(axis=0).mean())
    logging.info("Synthesized %d image(s) of %d×%d through %d critic(s) "
                 "(%d ascent steps each, %.1f s): %s", gen.num_images,
                 size, size, int(state.cascade.count),
                 steps, time.perf_counter() - began, path)
    if evaluators.names(config, "final"):
      final = evaluators.evaluate(config, "final",
                                  run.evaluation_subject(textures))
      harness.write_results(workdir, {"round": config.rounds, "size": size,
                                      **final})
  return state


def train_and_evaluate(config, workdir):
  """Trains IGM (or IGM-single) per `config`, resuming from `workdir`, then
  writes the final texture at `generate.size` from scratch."""
  return train_texture(TextureIGM, config, workdir)
