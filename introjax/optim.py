"""The one optimiser builder: `train.optimizer` and `train.schedule` of any
config to an optax transformation. The learning rate at every step is an
optax schedule of the optimiser's own step count, so it is part of the
optimiser state (and so of the checkpoint), changes no compiled shape and
is never written from the host.

    train.optimizer   "sgd" (`train.momentum` > 0 adds heavy-ball momentum)
                      or "adam" (`train.b1`, `train.b2`)
    train.weight_decay  L2 decay added to the gradient first (0: none)
    train.schedule    "constant"
                      "step":  ×decay_factor every `decay_every` steps
                               (the WINN code's ×0.9 every 100)
                      "round": ×decay_factor from round `decay_round` on
                               (ICL §4.1: 0.01, ×0.1 at round 20); the member
                               says how many steps each round takes
"""
import jax.numpy as jnp
import optax

from introjax.errors import ConfigError

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "step", "round")


def schedule_name(train):
  """`train.schedule`, defaulting to "round" where a config names a
  `decay_round` > 0 (the classifier configs' form) and "constant"
  elsewhere."""
  default = "round" if train.get("decay_round", 0) > 0 else "constant"
  return train.get("schedule", default)


def learning_rate_schedule(train, decay_step=None):
  """The schedule of `train`: a float (constant) or count -> rate.

  Args:
    train: the config's train section.
    decay_step: for the "round" schedule, the optimiser step at which round
      `train.decay_round` begins (the member counts its steps per round);
      may be traced, so members whose rounds differ in length share one
      compiled step.
  """
  name = schedule_name(train)
  lr = train.learning_rate
  if name == "constant":
    return lr
  if name == "step":
    every = train.decay_every
    if every < 1:
      raise ConfigError(f"train.decay_every={every} must be ≥ 1 (steps "
                        "between two decays of the learning rate).")
    return optax.exponential_decay(lr, every, train.decay_factor,
                                   staircase=True)
  if name == "round":
    if train.decay_round < 1:
      return lr
    if decay_step is None:
      raise ConfigError("train.schedule='round' needs a member that counts "
                        "its steps per round; use 'step' here.")
    later = lr * train.decay_factor
    # Both rates as Python floats, so each is exactly the float32 cast of
    # lr and of lr·factor.
    return lambda count: jnp.where(count >= decay_step, later, lr)
  raise ConfigError(f"Unknown train.schedule={name!r}; use one of "
                    f"{', '.join(map(repr, SCHEDULES))}.")


def make_optimizer(train, decay_step=None):
  """The optax transformation `train` names (see the module docstring)."""
  name = train.get("optimizer", "sgd")
  lr = learning_rate_schedule(train, decay_step)
  if name == "sgd":
    tx = optax.sgd(lr, momentum=train.get("momentum", 0.0) or None)
  elif name == "adam":
    tx = optax.adam(lr, b1=train.b1, b2=train.b2)
  else:
    raise ConfigError(f"Unknown train.optimizer={name!r}; use one of "
                      f"{', '.join(map(repr, OPTIMIZERS))}.")
  decay = train.get("weight_decay", 0.0)
  if decay:
    tx = optax.chain(optax.add_decayed_weights(decay), tx)
  return tx


def round_learning_rate(train, round_index):
  """The rate the "round" schedule (or a constant one) trains round
  `round_index` with, for the progress line and metrics."""
  if schedule_name(train) == "round" and train.decay_round > 0:
    if round_index >= train.decay_round:
      return train.learning_rate * train.decay_factor
  return train.learning_rate
