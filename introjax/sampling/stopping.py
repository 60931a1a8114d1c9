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


def build_stop_rule(synthesis):
  """The rule named by `config.synthesis.stop`; both probability rules read
  `synthesis.stop_probability` (0.5: the decision boundary)."""
  p = synthesis.stop_probability
  if synthesis.stop == "windowed":
    return WindowedProbability(window=synthesis.window, threshold=p)
  if synthesis.stop == "logit":
    return LogitAbove(threshold=math.log(p / (1 - p)))
  if synthesis.stop == "fixed":
    return FixedSteps()
  raise ConfigError(f"Unknown synthesis.stop={synthesis.stop!r}; use "
                   "'windowed', 'logit' or 'fixed'.")
