"""Early-stopped gradient ascent on the input, over a whole batch at once.

One `lax.while_loop` runs the ascent for every sample of the batch; a
per-sample `running` mask freezes samples as their stopping rule fires, and
the loop ends when none is running or at `max_steps`. Nothing leaves the
device between steps.
"""
from typing import Callable, NamedTuple, Optional

from flax import struct
import jax
import jax.numpy as jnp

from introjax.errors import ConfigError


@struct.dataclass
class AscentSettings:
  """How x moves: Adam or SGD on the ascent direction, plus optional
  Langevin noise N(0, noise_std²) per step, clipped to [-clip, clip].

  optimizer="langevin" is the SGLD step of WINN §4.1 (Welling & Teh):
  Δx = ε_t/2 · ∇f(x) + η, η ~ N(0, ε_t) (variance ε_t, not ε_t²), with
  ε_t = learning_rate · anneal^t at the t-th step (t = 0, 1, …); anneal = 1
  keeps ε fixed. langevin_noise=False drops η (WINN §4.1 reports enough
  diversity "without step size annealing and noise injection"). noise_std
  still adds its own N(0, noise_std²) on top, as for the other optimizers.
  `anneal` and `langevin_noise` are read by "langevin" only.
  """
  optimizer: str = struct.field(pytree_node=False, default="adam")
  learning_rate: float = struct.field(pytree_node=False, default=0.1)
  b1: float = struct.field(pytree_node=False, default=0.5)
  b2: float = struct.field(pytree_node=False, default=0.999)
  eps: float = struct.field(pytree_node=False, default=1e-8)
  noise_std: float = struct.field(pytree_node=False, default=0.0)
  max_steps: int = struct.field(pytree_node=False, default=500)
  clip: Optional[float] = struct.field(pytree_node=False, default=1.0)
  anneal: float = struct.field(pytree_node=False, default=1.0)
  langevin_noise: bool = struct.field(pytree_node=False, default=True)

  @classmethod
  def from_config(cls, synthesis):
    if synthesis.optimizer not in ("adam", "sgd", "langevin"):
      raise ConfigError(f"Unknown synthesis.optimizer={synthesis.optimizer!r};"
                       " use 'adam', 'sgd' or 'langevin'.")
    # Both fields are optional so that configs written before Langevin
    # existed keep working unchanged.
    anneal = synthesis.get("anneal", 1.0)
    if not anneal > 0:
      raise ConfigError(f"synthesis.anneal={anneal!r} must be positive (the "
                        "step size is multiplied by it every step; 1.0: no "
                        "annealing).")
    if anneal != 1.0 and synthesis.optimizer != "langevin":
      raise ConfigError(f"synthesis.anneal={anneal!r} anneals the Langevin "
                        "step size only; set synthesis.optimizer='langevin' "
                        "or remove synthesis.anneal.")
    return cls(optimizer=synthesis.optimizer,
               learning_rate=synthesis.learning_rate, b1=synthesis.b1,
               b2=synthesis.b2, noise_std=synthesis.noise_std,
               max_steps=synthesis.max_steps, clip=synthesis.clip or None,
               anneal=anneal,
               langevin_noise=synthesis.get("langevin_noise", True))


class AscentStats(NamedTuple):
  steps: jax.Array          # (B,) updates applied to each sample
  stopped: jax.Array        # (B,) the stopping rule fired (not the cap)
  first_logit: jax.Array    # (B,) mean patch logit at the start
  last_logit: jax.Array     # (B,) mean patch logit when last evaluated
  nonfinite: jax.Array      # () some logit or gradient was NaN/Inf


# score_and_grad(x, key) -> (patch_logits (B, P), ascent direction like x)
ScoreAndGrad = Callable[[jax.Array, jax.Array], tuple]


def _per_sample(mask, x):
  return mask.reshape(mask.shape + (1,) * (x.ndim - 1))


def ascend(score_and_grad: ScoreAndGrad, x0, key, rule,
           settings: AscentSettings):
  """Climbs `score_and_grad` from x0 until each sample's `rule` fires.

  Each step evaluates the logits and ascent direction at the current x, lets
  the rule retire samples, then moves only the samples still running.
  Returns (x, AscentStats).
  """
  batch = x0.shape[0]
  s = settings

  def cond(carry):
    step, running = carry[0], carry[2]
    return (step < s.max_steps) & running.any()

  def body(carry):
    step, x, running, steps, m, v, rule_state, first, last, bad, key = carry
    key, k_score, k_noise = jax.random.split(key, 3)
    logits, grad = score_and_grad(x, k_score)
    rule_state, done = rule.update(rule_state, logits, step)
    mean_logit = logits.mean(axis=1)
    first = jnp.where(step == 0, mean_logit, first)
    last = jnp.where(running, mean_logit, last)
    bad = bad | ~(jnp.isfinite(logits).all() & jnp.isfinite(grad).all())
    running = running & ~done
    steps = steps + running
    move = _per_sample(running, x)
    if s.optimizer == "adam":
      # Moments of a frozen sample stay frozen; bias correction uses the
      # sample's own step count.
      m = jnp.where(move, s.b1 * m + (1 - s.b1) * grad, m)
      v = jnp.where(move, s.b2 * v + (1 - s.b2) * grad * grad, v)
      t = jnp.maximum(_per_sample(steps, x), 1).astype(x.dtype)
      update = s.learning_rate * (m / (1 - s.b1 ** t)) / (
          jnp.sqrt(v / (1 - s.b2 ** t)) + s.eps)
    elif s.optimizer == "langevin":
      # A running sample is at its step-th update, so the loop counter is
      # its own t.
      step_size = s.learning_rate * jnp.asarray(s.anneal, x.dtype) ** step
      update = step_size / 2 * grad
      if s.langevin_noise:
        # fold_in, not another split: the keys of the other optimizers (and
        # so their noise_std draws) stay what they were.
        eta = jax.random.normal(jax.random.fold_in(k_noise, 1), x.shape,
                                x.dtype)
        update = update + jnp.sqrt(step_size) * eta
    else:
      update = s.learning_rate * grad
    if s.noise_std:
      update = update + s.noise_std * jax.random.normal(k_noise, x.shape,
                                                        x.dtype)
    new_x = x + update
    if s.clip is not None:
      new_x = jnp.clip(new_x, -s.clip, s.clip)
    x = jnp.where(move, new_x, x)
    return (step + 1, x, running, steps, m, v, rule_state, first, last, bad,
            key)

  zeros = jnp.zeros_like(x0)
  carry = (jnp.int32(0), x0, jnp.ones(batch, bool), jnp.zeros(batch, jnp.int32),
           zeros, zeros, rule.init(batch), jnp.zeros(batch), jnp.zeros(batch),
           jnp.bool_(False), key)
  carry = jax.lax.while_loop(cond, body, carry)
  _, x, running, steps, _, _, _, first, last, bad, _ = carry
  return x, AscentStats(steps=steps, stopped=~running, first_logit=first,
                        last_logit=last, nonfinite=bad)


def logit_ascent(logits_fn):
  """score_and_grad for whole images: each sample climbs its own logit.

  `logits_fn(x) -> (B,)`; per-sample normalisation makes the gradient of the
  sum equal each sample's own gradient.
  """
  def score_and_grad(x, key):
    del key
    logits, vjp = jax.vjp(logits_fn, x)
    return logits[:, None], vjp(jnp.ones_like(logits))[0]
  return score_and_grad
