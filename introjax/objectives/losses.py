"""Critic losses as pure functions of logits."""
import jax
import jax.numpy as jnp


def bce_loss(pos_logits, neg_logits):
  """IGM eq. in §3.2.1: cross-entropy of positives (+1) against
  pseudo-negatives (−1), averaged over all samples."""
  total = (jax.nn.softplus(-pos_logits).sum() +
           jax.nn.softplus(neg_logits).sum())
  return total / (pos_logits.size + neg_logits.size)


def binary_accuracy(pos_logits, neg_logits):
  correct = (pos_logits > 0).sum() + (neg_logits <= 0).sum()
  return correct / (pos_logits.size + neg_logits.size)


# Reclassification-by-synthesis (ICL §3). A batch mixes data and
# pseudo-negatives; `labels` holds a data sample's class and, for a
# pseudo-negative, the class it was synthesised for. Both losses average over
# the batch, so sampling the batch uniformly from data ∪ pool matches the
# papers' sums over S ∪ S_pn.


def _own_logit(logits, labels):
  return jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]


def softmax_icl_loss(logits, labels, is_negative):
  """ICL eq. (11): softmax cross-entropy on data; on a pseudo-negative of
  class k, ln(1 + exp(logit_k)). logits (B, K), labels (B,), is_negative (B,).
  With logits [f, 0] this is also the binary loss of eq. (7)."""
  own = _own_logit(logits, labels)
  data = jax.nn.logsumexp(logits, axis=1) - own
  return jnp.where(is_negative, jax.nn.softplus(own), data).mean()


def one_vs_all_icl_loss(logits, labels, is_negative):
  """ICL §3.3, one-vs-all: the sum of K binary eq.-(7) losses; critic k sees
  data of class k as positive, all other data as negative, and only the
  pseudo-negatives synthesised for class k."""
  targets = jax.nn.one_hot(labels, logits.shape[1], dtype=logits.dtype)
  data = (targets * jax.nn.softplus(-logits) +
          (1 - targets) * jax.nn.softplus(logits)).sum(axis=1)
  neg = jax.nn.softplus(_own_logit(logits, labels))
  return jnp.where(is_negative, neg, data).mean()


# Losses as parts: `loss(apply_fn, batch, key) -> (loss, aux)`, with
# `fix` (what to change when it turns non-finite) and `culprit(metrics)`
# (which term it was). aux entries are logged as train_<name>.


class BCELoss:
  """IGM §3.2.1: cross-entropy of positives against pseudo-negatives.
  batch: {"x": positives then as many negatives}."""

  fix = "lower train.learning_rate"

  def __call__(self, critic_fn, batch, key):
    del key
    x = batch["x"]
    logits = critic_fn(x)
    half = x.shape[0] // 2
    pos, neg = logits[:half], logits[half:]
    # The mean logits on each side: how far apart the critic holds them.
    return bce_loss(pos, neg), {"accuracy": binary_accuracy(pos, neg),
                                "logit_positive": pos.mean(),
                                "logit_negative": neg.mean()}

  def culprit(self, metrics):
    del metrics
    return "critic's loss or weights"


class ICLLoss:
  """ICL eq. 7/11 (softmax, binary) or §3.3 (one-vs-all) on a batch drawn
  from data ∪ pool: {"x", "labels", "negative"} (a pseudo-negative's label
  is the class it was made for). `class_logits(x) -> (B, K)`."""

  fix = "lower train.learning_rate"

  def __init__(self, mode):
    self.mode = mode
    self._loss = one_vs_all_icl_loss if mode == "one_vs_all" else (
        softmax_icl_loss)

  def __call__(self, class_logits, batch, key):
    del key
    labels, is_negative = batch["labels"], batch["negative"]
    logits = class_logits(batch["x"])
    correct = (logits.argmax(axis=1) == labels) & ~is_negative
    accuracy = correct.sum() / jnp.maximum((~is_negative).sum(), 1)
    return self._loss(logits, labels, is_negative), {"accuracy": accuracy}

  def culprit(self, metrics):
    del metrics
    return "classifier's loss or weights"
