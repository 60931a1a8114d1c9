"""Sampler steps: how one sample moves given the ascent direction at x.

Each rule is an optax-like pair, registered by name (`synthesis.optimizer`
in configs), and `ascent.ascend` runs any of them inside its one masked,
early-stopped `while_loop`:

    state = step.init(x0)
    delta, state = step.update(ctx, x, direction, state)   # x + delta next

`ctx` (a `StepContext`) carries what a rule may need beyond the direction:
the loop's step counter, each sample's own update count, a key, and the
score function itself, so a rule that must evaluate its proposal (MALA's
Metropolis–Hastings test) can. The loop keeps a frozen sample's x and
state as they were (a rule need not mask), adds `noise_std` noise and
clips after the rule, so those apply to every rule alike.

    adam      Adam on the direction; bias correction by the sample's own
              update count, so a sample's moments do not age while frozen
    sgd       x + lr · direction
    langevin  SGLD (WINN §4.1): x + ε_t/2 · direction + N(0, ε_t),
              ε_t = lr · anneal^t
    grmala    STIC eq. 3's MALA-approx: x + ε1 · direction + N(0, ε3²)
              (the Gram term lives in the score, sampling/scores.py), or
              with `metropolis` the same proposal accepted per sample by
              the Metropolis–Hastings test; also JEM's SGLD (ε1 = 1,
              ε3 = 0.01 on its score)
"""
from typing import Any, Callable, NamedTuple

from flax import struct
import jax
import jax.numpy as jnp

STEPS = {}


def register(name):
  """Class decorator: makes a step rule available as `synthesis.optimizer`
  = name."""
  def add(cls):
    STEPS[name] = cls
    return cls
  return add


class StepContext(NamedTuple):
  step: jax.Array          # () the loop's step counter (0, 1, …)
  sample_steps: jax.Array  # (B,) updates applied to each sample, this one
                           # included
  key: jax.Array           # this step's key for the rule's own noise
  score_and_grad: Callable  # (x, key) -> (patch logits, direction)
  scores: Any = None       # (B, P) the score function's values at x


def per_sample(values, x):
  """(B,) values broadcast against a batch like x."""
  return values.reshape(values.shape + (1,) * (x.ndim - 1))


@register("adam")
@struct.dataclass
class Adam:
  learning_rate: float = struct.field(pytree_node=False, default=0.1)
  b1: float = struct.field(pytree_node=False, default=0.5)
  b2: float = struct.field(pytree_node=False, default=0.999)
  eps: float = struct.field(pytree_node=False, default=1e-8)

  def init(self, x):
    return (jnp.zeros_like(x), jnp.zeros_like(x))

  def update(self, ctx, x, direction, state):
    m, v = state
    m = self.b1 * m + (1 - self.b1) * direction
    v = self.b2 * v + (1 - self.b2) * direction * direction
    t = jnp.maximum(per_sample(ctx.sample_steps, x), 1).astype(x.dtype)
    update = self.learning_rate * (m / (1 - self.b1 ** t)) / (
        jnp.sqrt(v / (1 - self.b2 ** t)) + self.eps)
    return update, (m, v)

  @classmethod
  def from_settings(cls, s):
    return cls(s.learning_rate, s.b1, s.b2, s.eps)


@register("sgd")
@struct.dataclass
class SGD:
  learning_rate: float = struct.field(pytree_node=False, default=0.1)

  def init(self, x):
    return ()

  def update(self, ctx, x, direction, state):
    return self.learning_rate * direction, state

  @classmethod
  def from_settings(cls, s):
    return cls(s.learning_rate)


@register("langevin")
@struct.dataclass
class Langevin:
  """Welling & Teh's SGLD: Δx = ε_t/2 · ∇f(x) + η, η ~ N(0, ε_t) (variance
  ε_t), ε_t = learning_rate · anneal^t; `noise=False` drops η (WINN §4.1
  found enough diversity without annealing or noise)."""
  learning_rate: float = struct.field(pytree_node=False, default=0.1)
  anneal: float = struct.field(pytree_node=False, default=1.0)
  noise: bool = struct.field(pytree_node=False, default=True)

  def init(self, x):
    return ()

  def update(self, ctx, x, direction, state):
    # A running sample is at its step-th update, so the loop counter is its
    # own t.
    step_size = self.learning_rate * jnp.asarray(self.anneal,
                                                 x.dtype) ** ctx.step
    update = step_size / 2 * direction
    if self.noise:
      # fold_in, not a split: the loop's own noise_std draws keep their key.
      eta = jax.random.normal(jax.random.fold_in(ctx.key, 1), x.shape,
                              x.dtype)
      update = update + jnp.sqrt(step_size) * eta
    return update, state

  @classmethod
  def from_settings(cls, s):
    return cls(s.learning_rate, s.anneal, s.langevin_noise)


@register("grmala")
@struct.dataclass
class GRMALA:
  """STIC eq. 3: the proposal x' = x + ε1·∇u(x) + ε3·ξ, ξ ~ N(0, I), where
  the score function's value u is log p(y|x) less the weighted Gram loss
  (its direction ∇u then is eq. 3's ε1- and ε2-terms over ε1).

  metropolis=False is MALA-approx as the paper writes it: every proposal
  is taken. metropolis=True accepts x' per sample with probability
  min(1, π(x')q(x|x') / (π(x)q(x'|x))), q(a|b) = N(a; b + ε1∇u(b), ε3²I),
  for the target π ∝ exp(β·u), β = 2ε1/ε3²: the temperature at which this
  proposal is the Langevin proposal of π (with free ε1 and ε3 the
  step sizes fix it). The state counts each sample's accepted moves.
  """
  learning_rate: float = struct.field(pytree_node=False, default=1.0)
  noise: float = struct.field(pytree_node=False, default=0.01)
  metropolis: bool = struct.field(pytree_node=False, default=False)

  def init(self, x):
    return jnp.zeros(x.shape[:1], jnp.int32)

  def update(self, ctx, x, direction, accepted):
    xi = jax.random.normal(jax.random.fold_in(ctx.key, 1), x.shape, x.dtype)
    step = self.learning_rate * direction + self.noise * xi
    if not self.metropolis:
      return step, accepted + 1
    proposal = x + step
    u_x = ctx.scores.mean(axis=1)
    u_p, direction_p = ctx.score_and_grad(proposal,
                                          jax.random.fold_in(ctx.key, 2))
    u_p = u_p.mean(axis=1)
    axes = tuple(range(1, x.ndim))
    var = self.noise ** 2
    log_forward = -0.5 * jnp.sum(xi * xi, axis=axes)
    back = x - proposal - self.learning_rate * direction_p
    log_backward = -jnp.sum(back * back, axis=axes) / (2 * var)
    beta = 2 * self.learning_rate / var
    log_ratio = beta * (u_p - u_x) + log_backward - log_forward
    u = jax.random.uniform(jax.random.fold_in(ctx.key, 3), u_x.shape)
    accept = jnp.log(u) < log_ratio
    return (jnp.where(per_sample(accept, x), step, 0.0),
            accepted + accept.astype(jnp.int32))

  @classmethod
  def from_settings(cls, s):
    return cls(s.learning_rate, s.proposal_noise, s.metropolis)


def build(settings) -> Any:
  """The step rule named by `settings.optimizer` (an
  `ascent.AscentSettings`), with its hyperparameters."""
  return STEPS[settings.optimizer].from_settings(settings)
