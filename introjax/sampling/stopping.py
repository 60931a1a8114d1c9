"""Per-sample early-stopping rules for synthesis.

A rule sees, at every step, the logits of each sample's patches, shape
(B, P) (P = 1 for whole images), and says which samples are done. Rules are
pytrees: static settings are fields of the class, per-sample arrays (such
as thresholds) are leaves, so a rule passes through `jit` as an argument.

    state = rule.init(batch_size)
    state, done = rule.update(state, patch_logits, step)

A sample that is done is frozen by the sampler and never un-done.
"""
import math

from flax import struct
import jax
import jax.numpy as jnp

from introjax.errors import ConfigError


@struct.dataclass
class WindowedProbability:
  """IGM §4.1: stop when the mean P(positive) of a sample's patches,
  averaged over the last `window` steps (fewer at the start), exceeds
  `threshold`."""
  window: int = struct.field(pytree_node=False, default=20)
  threshold: float = struct.field(pytree_node=False, default=0.5)

  def init(self, batch_size):
    return jnp.zeros((self.window, batch_size), jnp.float32)

  def update(self, history, patch_logits, step):
    prob = jax.nn.sigmoid(patch_logits).mean(axis=1)
    history = history.at[step % self.window].set(prob)
    seen = jnp.minimum(step + 1, self.window)
    return history, history.sum(axis=0) / seen > self.threshold


@struct.dataclass
class LogitAbove:
  """ICL: stop once the mean logit exceeds `threshold` (0: classified
  positive)."""
  threshold: float = struct.field(pytree_node=False, default=0.0)

  def init(self, batch_size):
    return ()

  def update(self, state, patch_logits, step):
    return state, patch_logits.mean(axis=1) > self.threshold


@struct.dataclass
class PerSampleThreshold:
  """WINN: sample i stops once its mean logit exceeds `thresholds[i]`."""
  thresholds: jax.Array

  def init(self, batch_size):
    return ()

  def update(self, state, patch_logits, step):
    return state, patch_logits.mean(axis=1) > self.thresholds


@struct.dataclass
class FixedSteps:
  """Never stops early: every sample runs to the step cap."""

  def init(self, batch_size):
    return ()

  def update(self, state, patch_logits, step):
    return state, jnp.zeros(patch_logits.shape[:1], bool)


@struct.dataclass
class ThresholdsFromPositives:
  """WINN §4.1 ("winn"): each sample stops once its mean logit exceeds its
  own threshold ~ U[min, max] of the critic's logits on `num_positives`
  positives. Its thresholds need the current critic and positives, so a
  member binds it inside its compiled step: draws `num_positives` positives
  (each scored like a sample: P patches, averaged) and calls `bind`."""
  num_positives: int = struct.field(pytree_node=False, default=100)

  needs_positives = True

  def bind(self, key, positive_logits, batch_size):
    """The `PerSampleThreshold` rule for `batch_size` samples."""
    return PerSampleThreshold(winn_thresholds(key, positive_logits,
                                              batch_size))


STOP_RULES = ("windowed", "logit", "fixed", "winn")


def build_stop_rule(synthesis):
  """The rule named by `config.synthesis.stop`: both probability rules read
  `synthesis.stop_probability` (0.5: the decision boundary), "winn" reads
  `synthesis.threshold_positives`."""
  if synthesis.stop == "windowed":
    return WindowedProbability(window=synthesis.window,
                               threshold=synthesis.stop_probability)
  if synthesis.stop == "logit":
    p = synthesis.stop_probability
    return LogitAbove(threshold=math.log(p / (1 - p)))
  if synthesis.stop == "fixed":
    return FixedSteps()
  if synthesis.stop == "winn":
    n = synthesis.threshold_positives
    if n < 1:
      raise ConfigError("synthesis.threshold_positives must be ≥ 1: WINN's "
                        "early stop draws thresholds between the smallest and "
                        "largest logit of that many positives.")
    return ThresholdsFromPositives(num_positives=n)
  raise ConfigError(f"Unknown synthesis.stop={synthesis.stop!r}; use one of "
                    f"{', '.join(map(repr, STOP_RULES))}.")


def bound(rule, key, positive_logits_fn, batch_size):
  """`rule` ready for `batch_size` samples: a rule that needs positives is
  bound to thresholds from `positive_logits_fn(key, n) -> (n, P)` logits
  (n = its `num_positives`); the others as they are."""
  if not getattr(rule, "needs_positives", False):
    return rule
  k_pos, k_draw = jax.random.split(key)
  return rule.bind(k_draw, positive_logits_fn(k_pos, rule.num_positives),
                   batch_size)


def winn_thresholds(key, positive_logits, batch_size):
  """WINN §4.1's early-stop thresholds for `PerSampleThreshold`.

  Each of `batch_size` samples gets its own threshold ~ U[min f(x⁺),
  max f(x⁺)] over the given positives' logits, so a pseudo-negative stops
  once its logit exceeds a level between the worst and the best positive.
  (The released code draws one threshold per batch of 100 and compares the
  batch mean; a per-sample draw is the paper's rule applied to each
  sample.)

  Args:
    key: PRNG key.
    positive_logits: the critic's logits on positives, (N,) or (N, P) for
      P patches each (a sample's score is its mean patch logit, as the
      rules use).
    batch_size: number of pseudo-negatives to draw thresholds for.

  Returns:
    (batch_size,) float32 thresholds.
  """
  logits = jnp.asarray(positive_logits, jnp.float32)
  if logits.ndim == 2:
    logits = logits.mean(axis=1)
  if logits.size == 0:
    raise ConfigError("WINN's early stop draws thresholds between the "
                      "smallest and largest logit of the positives, but the "
                      "threshold batch has no positives; give it at least "
                      "one positive (check the batch sizes in the config).")
  return jax.random.uniform(key, (batch_size,), jnp.float32,
                            minval=logits.min(), maxval=logits.max())


def per_class_thresholds(key, own_logits, per_class):
  """`winn_thresholds` class by class, class-major: own_logits (K, m) holds
  class k's own logit on m images of class k; sample j of block k gets a
  threshold ~ U[min, max] of row k. Returns (K · per_class,)."""
  k = own_logits.shape[0]
  thresholds = jax.vmap(winn_thresholds, in_axes=(0, 0, None))(
      jax.random.split(key, k), own_logits, per_class)
  return thresholds.reshape(-1)


def thresholds_of(rule):
  """The per-sample thresholds of a bound WINN rule, else None."""
  return rule.thresholds if isinstance(rule, PerSampleThreshold) else None
