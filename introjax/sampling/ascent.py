"""Early-stopped gradient ascent on the input, over a whole batch at once.

One `lax.while_loop` runs the ascent for every sample of the batch; a
per-sample `running` mask freezes samples as their stopping rule fires, and
the loop ends when none is running or at `max_steps`. Nothing leaves the
device between steps. The loop is written once: how a sample moves is a
step rule of sampling/steps.py, when it stops a rule of
sampling/stopping.py, what it climbs a score function (sampling/scores.py).
"""
from typing import Callable, NamedTuple, Optional

from flax import struct
import jax
import jax.numpy as jnp
import numpy as np

from introjax import parallel
from introjax.errors import ConfigError
from introjax.sampling import steps as steps_lib


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
  # "grmala" only: ε3, the proposal's noise, and the Metropolis–Hastings test.
  proposal_noise: float = struct.field(pytree_node=False, default=0.0)
  metropolis: bool = struct.field(pytree_node=False, default=False)

  @classmethod
  def from_config(cls, synthesis):
    if synthesis.optimizer not in steps_lib.STEPS:
      raise ConfigError(f"Unknown synthesis.optimizer={synthesis.optimizer!r};"
                        f" use one of {', '.join(map(repr, steps_lib.STEPS))}.")
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
               langevin_noise=synthesis.get("langevin_noise", True),
               proposal_noise=synthesis.get("proposal_noise", 0.0),
               metropolis=synthesis.get("metropolis", False))


class AscentStats(NamedTuple):
  steps: jax.Array          # (B,) updates applied to each sample
  stopped: jax.Array        # (B,) the stopping rule fired (not the cap)
  first_logit: jax.Array    # (B,) mean patch logit at the start
  last_logit: jax.Array     # (B,) mean patch logit when last evaluated
  nonfinite: jax.Array      # () some logit or gradient was NaN/Inf
  step_state: object = ()   # the step rule's final state (GRMALA's
                            # acceptance counts)


def summarize(stats, thresholds=None):
  """A synthesis call's numbers as host values, in one transfer: steps
  (mean, max), how many stopped early of how many, the mean logit at the
  start and the end, whether anything was non-finite, and the per-sample
  thresholds' range where a rule had them."""
  stats, thresholds = parallel.to_host((stats, thresholds))
  metrics = dict(
      synthesis_steps_mean=float(np.mean(stats.steps)),
      synthesis_steps_max=int(np.max(stats.steps)),
      synthesis_stopped_early=int(np.sum(stats.stopped)),
      synthesis_samples=int(stats.stopped.size),
      synthesis_logit_start=float(np.mean(stats.first_logit)),
      synthesis_logit_end=float(np.mean(stats.last_logit)),
      synthesis_nonfinite=bool(stats.nonfinite))
  if thresholds is not None:
    metrics.update(synthesis_threshold_min=float(np.min(thresholds)),
                   synthesis_threshold_max=float(np.max(thresholds)))
  return metrics


# score_and_grad(x, key) -> (patch_logits (B, P), ascent direction like x)
ScoreAndGrad = Callable[[jax.Array, jax.Array], tuple]


def ascend(score_and_grad: ScoreAndGrad, x0, key, rule,
           settings: AscentSettings):
  """Climbs `score_and_grad` from x0 until each sample's `rule` fires.

  Each step evaluates the logits and ascent direction at the current x, lets
  the rule retire samples, then moves only the samples still running by the
  step rule `settings.optimizer` (sampling/steps.py), plus `noise_std`
  noise, clipped. Returns (x, AscentStats).
  """
  batch = x0.shape[0]
  s = settings
  step_rule = steps_lib.build(s)

  def cond(carry):
    step, running = carry[0], carry[2]
    return (step < s.max_steps) & running.any()

  def body(carry):
    (step, x, running, steps, step_state, rule_state, first, last, bad,
     key) = carry
    key, k_score, k_noise = jax.random.split(key, 3)
    logits, grad = score_and_grad(x, k_score)
    rule_state, done = rule.update(rule_state, logits, step)
    mean_logit = logits.mean(axis=1)
    first = jnp.where(step == 0, mean_logit, first)
    last = jnp.where(running, mean_logit, last)
    bad = bad | ~(jnp.isfinite(logits).all() & jnp.isfinite(grad).all())
    running = running & ~done
    steps = steps + running
    move = steps_lib.per_sample(running, x)
    ctx = steps_lib.StepContext(step=step, sample_steps=steps, key=k_noise,
                                score_and_grad=score_and_grad, scores=logits)
    update, new_state = step_rule.update(ctx, x, grad, step_state)
    # A frozen sample's rule state (Adam's moments) stays frozen too.
    step_state = jax.tree.map(
        lambda new, old: jnp.where(steps_lib.per_sample(running, new), new,
                                   old), new_state, step_state)
    if s.noise_std:
      update = update + s.noise_std * jax.random.normal(k_noise, x.shape,
                                                        x.dtype)
    new_x = x + update
    if s.clip is not None:
      new_x = jnp.clip(new_x, -s.clip, s.clip)
    x = jnp.where(move, new_x, x)
    return (step + 1, x, running, steps, step_state, rule_state, first, last,
            bad, key)

  carry = (jnp.int32(0), x0, jnp.ones(batch, bool), jnp.zeros(batch, jnp.int32),
           step_rule.init(x0), rule.init(batch), jnp.zeros(batch),
           jnp.zeros(batch), jnp.bool_(False), key)
  carry = jax.lax.while_loop(cond, body, carry)
  _, x, running, steps, step_state, _, first, last, bad, _ = carry
  return x, AscentStats(steps=steps, stopped=~running, first_logit=first,
                        last_logit=last, nonfinite=bad, step_state=step_state)
