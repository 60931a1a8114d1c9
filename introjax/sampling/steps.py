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


def build(settings) -> Any:
  """The step rule named by `settings.optimizer` (an
  `ascent.AscentSettings`), with its hyperparameters."""
  return STEPS[settings.optimizer].from_settings(settings)
