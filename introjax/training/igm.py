"""IGM and IGM-single on a texture (IGM Algorithm 1, §3.4, §4.1–4.2).

Each round t fine-tunes the critic on the positive texture against the
pseudo-negative pool (classification step), then moves the last round's
negatives up the new critic's logit with early-stopped ascent (synthesis
step) and adds them to the pool. IGM keeps every round's critic as a
cascade; IGM-single keeps one critic and synthesises from fresh noise.

Both steps are single jitted calls per round: the classification step is a
`while_loop` over SGD steps, the synthesis step the sampler's `while_loop`.
"""
import functools
import os
import time
from typing import Any, Optional

from absl import logging
from flax import struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from introjax import parallel
from introjax.data import images as image_data
from introjax.data import pool as pool_lib
from introjax.errors import ConfigError, NonFiniteError
from introjax.eval.images import save_grid
from introjax.models import critics
from introjax.objectives import losses
from introjax.sampling import anysize
from introjax.sampling.ascent import AscentSettings, ascend
from introjax.sampling.stopping import FixedSteps, build_stop_rule
from introjax.training import harness

# Config fields a checkpoint's arrays depend on: resuming with other values
# is refused (other fields, such as `rounds`, may change between runs).
STRUCTURAL_KEYS = (
    "trainer", "model.name", "model.features", "model.kernel_size",
    "model.norm", "data.texture", "data.image_path", "data.image_size",
    "data.pad", "data.channels", "igm.single", "igm.patch_size",
    "igm.negatives_per_round", "igm.pool_rounds")


@struct.dataclass
class IGMState:
  critic: Any                 # parameters of the critic being trained
  opt_state: Any
  cascade: Any                # critics of completed rounds, stacked (T, ...)
  pool: pool_lib.NegativePool
  negatives: jax.Array        # the latest round's pseudo-negatives


class TextureIGM:
  """The compiled parts of IGM for one config, texture and device mesh."""

  def __init__(self, config, mesh):
    self.config = config
    self.mesh = mesh
    data, igm = config.data, config.igm
    self.image = image_data.load_image(
        data.image_path or data.texture, size=data.image_size,
        channels=data.channels or None, min_side=igm.patch_size)
    canvas = image_data.texture_canvas(self.image, data.pad)
    self.canvas_shape = canvas.shape
    self.patch = igm.patch_size
    self.critic = critics.build_critic(config.model, config.dtype)
    self.logits = critics.critic_logits(self.critic)
    self.tx = optax.sgd(config.train.learning_rate,
                        momentum=config.train.momentum or None)
    self.settings = AscentSettings.from_config(config.synthesis)
    self.rule = build_stop_rule(config.synthesis)
    self._check(mesh)
    self._batch = parallel.batch_sharding(mesh)
    self._replicated = parallel.replicated(mesh)
    self.positive = jax.device_put(canvas[None], self._replicated)
    self.base_key = jax.random.PRNGKey(config.seed)
    self._train_critic = jax.jit(self._train_critic_fn, donate_argnums=(0, 1))
    self._synthesize = jax.jit(self._synthesize_fn)
    self._add = jax.jit(pool_lib.pool_add, donate_argnums=0)
    self._generate = jax.jit(self._generate_fn, static_argnums=(2,))

  def _check(self, mesh):
    igm, train = self.config.igm, self.config.train
    if self.config.data.pad < 0:
      raise ConfigError("data.pad must be ≥ 0.")
    parallel.check_divisible("igm.negatives_per_round",
                             igm.negatives_per_round, mesh)
    parallel.check_divisible("2 × train.batch_size × igm.patches_per_image",
                             2 * train.batch_size * igm.patches_per_image, mesh)
    if igm.pool_rounds < 1:
      raise ConfigError("igm.pool_rounds must be ≥ 1 (rounds of negatives "
                        "the pool keeps).")

  # State ----------------------------------------------------------------

  def initial_negatives(self, key, num, canvas_shape=None):
    """IGM's p0: N(0, init_std²) canvases, clipped to the data range."""
    shape = (num, *(canvas_shape or self.canvas_shape))
    noise = self.config.igm.init_std * jax.random.normal(key, shape)
    return jax.device_put(jnp.clip(noise, -1.0, 1.0), self._batch)

  def init_state(self):
    """The state before round 1: a fresh critic and a pool holding p0's
    samples (tagged round 0)."""
    igm = self.config.igm
    k_critic, k_neg = jax.random.split(jax.random.fold_in(self.base_key, 0))
    params = critics.init_critic(self.critic, k_critic,
                                 (self.patch, self.patch, self.canvas_shape[2]))
    params = jax.device_put(params, self._replicated)
    negatives = self.initial_negatives(k_neg, igm.negatives_per_round)
    pool = pool_lib.empty_pool(igm.pool_rounds * igm.negatives_per_round,
                               self.canvas_shape)
    pool = jax.device_put(pool, self._pool_sharding())
    pool = self._add(pool, negatives, 0)
    return IGMState(critic=params, opt_state=self.tx.init(params),
                    cascade=None, pool=pool, negatives=negatives)

  def _pool_sharding(self):
    return pool_lib.NegativePool(images=self._batch, rounds=self._batch,
                                 cursor=self._replicated)

  def _abstract(self, num_critics):
    """Shapes, dtypes and shardings of the checkpoint items of a state with
    `num_critics` critics: the targets a checkpoint is restored into."""
    shape = jax.eval_shape(self.init_state)

    def placed(tree, sharding, stacked=0):
      lead = (stacked,) if stacked else ()
      return jax.tree.map(lambda s: jax.ShapeDtypeStruct(
          lead + s.shape, s.dtype, sharding=sharding), tree)

    rep, batch = self._replicated, self._batch
    return {
        "critics": placed(shape.critic, rep, stacked=num_critics),
        "state": {
            "critic": placed(shape.critic, rep),
            "opt_state": placed(shape.opt_state, rep),
            "pool": pool_lib.NegativePool(
                images=placed(shape.pool.images, batch),
                rounds=placed(shape.pool.rounds, batch),
                cursor=placed(shape.pool.cursor, rep)),
            "negatives": placed(shape.negatives, batch)}}

  # Classification step ----------------------------------------------------

  def _train_critic_fn(self, params, opt_state, pool, key, round_index):
    """SGD on positives ∪ pool until the smoothed loss reaches
    `train.loss_target` or `train.max_steps` steps."""
    train, igm = self.config.train, self.config.igm
    per_class = train.batch_size * igm.patches_per_image
    h, w = self.canvas_shape[:2]

    def batch(key):
      k_pos, k_slot, k_neg = jax.random.split(key, 3)
      pos = anysize.crop(
          self.positive, jnp.zeros(per_class, jnp.int32),
          anysize.random_origins(k_pos, 1, per_class, (h, w), self.patch)[0],
          self.patch)
      slots = pool_lib.pool_sample(pool, k_slot, train.batch_size,
                                   round_index, igm.recency_decay)
      neg = anysize.crop(
          pool.images, jnp.repeat(slots, igm.patches_per_image),
          anysize.random_origins(k_neg, 1, per_class, (h, w), self.patch)[0],
          self.patch)
      both = jnp.concatenate([pos, neg.astype(pos.dtype)])
      return jax.lax.with_sharding_constraint(both, self._batch)

    def loss_fn(params, patches):
      logits = self.logits(params, patches)
      pos, neg = logits[:per_class], logits[per_class:]
      return losses.bce_loss(pos, neg), losses.binary_accuracy(pos, neg)

    def cond(carry):
      step, _, _, loss, _ = carry
      return (step < train.max_steps) & (loss > train.loss_target)

    def body(carry):
      step, params, opt_state, loss_avg, acc_avg = carry
      (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(
          params, batch(jax.random.fold_in(key, step)))
      updates, opt_state = self.tx.update(grads, opt_state, params)
      params = optax.apply_updates(params, updates)
      first = step == 0  # running means over roughly the last 10 steps
      loss_avg = jnp.where(first, loss, 0.9 * loss_avg + 0.1 * loss)
      acc_avg = jnp.where(first, acc, 0.9 * acc_avg + 0.1 * acc)
      return step + 1, params, opt_state, loss_avg, acc_avg

    steps, params, opt_state, loss, acc = jax.lax.while_loop(
        cond, body, (jnp.int32(0), params, opt_state, jnp.float32(jnp.inf),
                     jnp.float32(0)))
    finite = jnp.isfinite(loss) & jnp.stack(
        [jnp.isfinite(p).all() for p in jax.tree.leaves(params)]).all()
    return params, opt_state, dict(train_steps=steps, train_loss=loss,
                                   train_accuracy=acc, train_finite=finite)

  # Synthesis step ---------------------------------------------------------

  def _ascent(self, params, canvas_hw, rule=None):
    train_hw = self.canvas_shape[:2]
    patches = anysize.patches_for_canvas(self.config.igm.patches_per_image,
                                         train_hw, canvas_hw)
    return anysize.patch_averaged_ascent(
        functools.partial(self.logits, params), self.patch, patches)

  def _synthesize_fn(self, params, canvases, key):
    return ascend(self._ascent(params, canvases.shape[1:3]), canvases, key,
                  self.rule, self.settings)

  def _generate_fn(self, cascade, x0, stylize: Optional[tuple], key):
    """Runs x0 up each critic of `cascade` in order (IGM's generation); with
    `stylize=(alpha, steps)` x0 is the content image and each stage runs a
    fixed number of steps of IGM §4.2's style objective."""
    num = jax.tree.leaves(cascade)[0].shape[0]
    keys = jax.random.split(key, num)

    def stage(x, inputs):
      params, key = inputs
      score_and_grad = self._ascent(params, x.shape[1:3])
      rule, settings = self.rule, self.settings
      if stylize is not None:
        alpha, steps = stylize
        score_and_grad = _with_fidelity(score_and_grad, x0, alpha)
        rule, settings = FixedSteps(), settings.replace(max_steps=steps)
      x, stats = ascend(score_and_grad, x, key, rule, settings)
      return x, stats

    return jax.lax.scan(stage, x0, (cascade, keys))

  def generate(self, cascade, num, size, key):
    """`num` new textures of size×size from p0 through the cascade;
    returns (images (num, size, size, C), per-stage AscentStats)."""
    pad = self.config.data.pad
    canvas = (size + 2 * pad, size + 2 * pad, self.canvas_shape[2])
    k_init, k_ascent = jax.random.split(key)
    x0 = self.initial_negatives(k_init, num, canvas)
    canvases, stats = self._generate(cascade, x0, None, k_ascent)
    return _crop_center(canvases, pad), stats

  def stylize(self, cascade, content, alpha, steps, key):
    """IGM §4.2: minimises α·||I_style − I||² − (1−α)·ln p(I_style) from the
    content image I (H, W, C) through every critic of the cascade."""
    pad = self.config.data.pad
    canvas = image_data.texture_canvas(content, pad)[None]
    canvas = jax.device_put(canvas, self._replicated)
    out, stats = self._generate(cascade, canvas, (float(alpha), int(steps)),
                                key)
    return _crop_center(out, pad)[0], stats

  # Harness hooks -------------------------------------------------------------

  structural_keys = STRUCTURAL_KEYS

  def checkpoint_meta(self, state):
    return {"num_critics": jax.tree.leaves(state.cascade)[0].shape[0]}

  def checkpoint_items(self, state):
    """The cascade apart from the rest, so sampling restores only it."""
    return {"critics": state.cascade,
            "state": {"critic": state.critic, "opt_state": state.opt_state,
                      "pool": state.pool, "negatives": state.negatives}}

  def restore_targets(self, meta, only_critics=False):
    targets = self._abstract(meta["num_critics"])
    return {"critics": targets["critics"]} if only_critics else targets

  def from_items(self, items):
    return IGMState(cascade=items["critics"], **items["state"])

  def write_samples(self, state, round_index, folder):
    shown = state.negatives[:self.config.log.num_samples]
    images = _crop_center(jax.device_get(shown), self.config.data.pad)
    save_grid(os.path.join(folder, f"round_{round_index:03d}.png"), images)

  def progress(self, round_index, rounds, metrics, seconds):
    return progress_line(round_index, rounds, metrics, seconds)

  # One round ---------------------------------------------------------------

  def run_round(self, state: IGMState, round_index):
    """Classification step, synthesis step, pool update; returns the new
    state and the round's metrics (host floats)."""
    igm = self.config.igm
    key = jax.random.fold_in(self.base_key, round_index)
    k_train, k_syn, k_init = jax.random.split(key, 3)
    critic, opt_state, train_metrics = self._train_critic(
        state.critic, state.opt_state, state.pool, k_train, round_index)
    start = (self.initial_negatives(k_init, igm.negatives_per_round)
             if igm.single else state.negatives)
    negatives, stats = self._synthesize(critic, start, k_syn)
    new_critic = jax.tree.map(lambda p: p[None], critic)
    if igm.single or state.cascade is None:
      cascade = new_critic
    else:
      cascade = jax.tree.map(lambda c, p: jnp.concatenate([c, p]),
                             state.cascade, new_critic)
    metrics = _round_metrics(train_metrics, stats, self.settings.max_steps)
    if not metrics.pop("train_finite"):
      raise NonFiniteError(
          f"NaN or Inf in the critic's loss or weights in round {round_index}"
          f" (train.learning_rate={self.config.train.learning_rate}); lower "
          "train.learning_rate and resume: the last checkpoint is intact.")
    if metrics.pop("synthesis_nonfinite"):
      raise NonFiniteError(
          f"NaN or Inf in the logits or input gradients during synthesis in "
          f"round {round_index}; lower synthesis.learning_rate (now "
          f"{self.settings.learning_rate}) and resume: the last checkpoint is "
          "intact.")
    pool = self._add(state.pool, negatives, round_index)
    return IGMState(critic=critic, opt_state=opt_state, cascade=cascade,
                    pool=pool, negatives=negatives), metrics


def _with_fidelity(score_and_grad, content, alpha):
  """Adds the L2 pull towards the content image to an ascent direction."""
  def combined(x, key):
    logits, grad = score_and_grad(x, key)
    return logits, (1 - alpha) * grad - alpha * 2.0 * (x - content)
  return combined


def _crop_center(canvases, pad):
  h, w = canvases.shape[1:3]
  return canvases[:, pad:h - pad, pad:w - pad]


def _round_metrics(train_metrics, stats, max_steps):
  """One host transfer per round: the numbers printed and logged."""
  train_metrics, stats = jax.device_get((train_metrics, stats))
  return dict(
      train_steps=int(train_metrics["train_steps"]),
      train_loss=float(train_metrics["train_loss"]),
      train_accuracy=float(train_metrics["train_accuracy"]),
      train_finite=bool(train_metrics["train_finite"]),
      synthesis_steps_mean=float(np.mean(stats.steps)),
      synthesis_steps_max=int(np.max(stats.steps)),
      synthesis_stopped_early=int(np.sum(stats.stopped)),
      synthesis_samples=int(stats.stopped.size),
      synthesis_logit_start=float(np.mean(stats.first_logit)),
      synthesis_logit_end=float(np.mean(stats.last_logit)),
      synthesis_nonfinite=bool(stats.nonfinite),
      synthesis_step_cap=max_steps)


def progress_line(round_index, rounds, m, seconds):
  return (f"round {round_index}/{rounds} | classify: {m['train_steps']} steps,"
          f" loss {m['train_loss']:.3f}, accuracy {100 * m['train_accuracy']:.1f}%"
          f" | synthesize: {m['synthesis_steps_mean']:.0f} steps mean "
          f"(max {m['synthesis_steps_max']}/{m['synthesis_step_cap']}), "
          f"{m['synthesis_stopped_early']}/{m['synthesis_samples']} stopped "
          f"early, logit {m['synthesis_logit_start']:+.2f} → "
          f"{m['synthesis_logit_end']:+.2f} | {seconds:.1f} s")



def train_and_evaluate(config, workdir):
  """Trains IGM (or IGM-single) per `config`, resuming from `workdir`, then
  writes the final texture at `generate.size` from scratch."""
  mesh = parallel.make_mesh()
  run = TextureIGM(config, mesh)
  source = config.data.image_path or config.data.texture
  logging.info("IGM%s on %r (%d×%d, %d channel%s), %d rounds, %d devices; "
               "writing to %s", "-single" if config.igm.single else "",
               source, *run.image.shape[:2], run.image.shape[2],
               "" if run.image.shape[2] == 1 else "s", config.rounds,
               mesh.size, workdir)
  state = harness.run_rounds(run, config, workdir)
  gen = config.generate
  if gen.num_images:
    began = time.perf_counter()
    key = jax.random.fold_in(run.base_key, config.rounds + 1)
    textures, stats = run.generate(state.cascade, gen.num_images, gen.size,
                                   key)
    path = os.path.join(harness.samples_dir(workdir),
                        f"final_{gen.size}x{gen.size}.png")
    if jax.process_index() == 0:
      save_grid(path, jax.device_get(textures))
    steps = int(jax.device_get(stats.steps).sum(axis=0).mean())
    logging.info("Synthesized %d texture(s) of %d×%d through %d critic(s) "
                 "(%d ascent steps each, %.1f s): %s", gen.num_images,
                 gen.size, gen.size, jax.tree.leaves(state.cascade)[0].shape[0],
                 steps, time.perf_counter() - began, path)
  return state
