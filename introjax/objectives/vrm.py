"""STIC's classifier loss (STIC eq. 4–5): vicinal risk minimisation (mixup)
with a fake class.

A STIC classifier has K + 1 outputs: the K real classes and one fake class
(index K, the paper's y = −1). A training batch holds three groups, each
averaged on its own and the three means summed, as eq. 5 sums its terms:

  real    data images with one-hot targets over the K real classes
  mixup   λ·x_i + (1 − λ)·x_j with targets λ·y_i + (1 − λ)·y_j, λ ~ Beta(α, α)
          (Zhang et al.'s mixup; eq. 4's second term)
  fake    the previous pass's synthesised samples, class- and
          mixup-conditioned alike, all with the one-hot fake target (at
          τ = 1: blank images)

so the batch is {x, targets (N, K + 1) soft, weight (N,)} and the loss is
the weighted soft-target cross-entropy Σ_n w_n · H(targets_n, softmax(f(x_n))).
STIC-ERM (the paper's ablation without VRM) gives the mixup group weight 0;
the ERM baseline also the fake group.
"""
import jax
import jax.numpy as jnp


def soft_cross_entropy(logits, targets):
  """(N,) cross-entropy of softmax(logits) against soft `targets`."""
  return -(targets * jax.nn.log_softmax(logits, axis=-1)).sum(axis=-1)


def mixup(key, images, targets, alpha):
  """Zhang et al.'s mixup of a batch with a permutation of itself: each
  image i is mixed with image perm(i) by its own λ ~ Beta(α, α). Returns
  (mixed images, mixed targets, λ)."""
  k_perm, k_lam = jax.random.split(key)
  n = images.shape[0]
  perm = jax.random.permutation(k_perm, n)
  lam = jax.random.beta(k_lam, alpha, alpha, (n,))
  lam_x = lam.reshape((n,) + (1,) * (images.ndim - 1))
  mixed = lam_x * images + (1 - lam_x) * images[perm]
  mixed_targets = lam[:, None] * targets + (1 - lam[:, None]) * targets[perm]
  return mixed, mixed_targets, lam


def group_weights(sizes, enabled):
  """(N,) weights of a batch laid out as consecutive groups of `sizes`: 1/size
  in an enabled group (so each group's mean counts once), 0 in the others."""
  return jnp.concatenate([
      jnp.full((n,), (1.0 / n) if on else 0.0, jnp.float32)
      for n, on in zip(sizes, enabled)])


class VRMFakeClassLoss:
  """STIC eq. 5 on a batch {"x", "targets", "weight", "labels"}: the
  weighted soft-target cross-entropy. Targets over K + 1 classes train the
  fake class; targets over K only (the ERM baseline) use the K real
  logits alone, a plain K-way softmax. `labels` (N,) is each row's class
  for the accuracy (−1: not counted, e.g. mixup and fake rows).
  `class_logits(x) -> (N, K + 1)`."""

  fix = "lower train.learning_rate"

  def __init__(self, num_classes):
    self.num_classes = num_classes

  def __call__(self, class_logits, batch, key):
    del key
    k = self.num_classes
    targets = batch["targets"]
    logits = class_logits(batch["x"])[:, :targets.shape[1]]
    loss = jnp.sum(batch["weight"] * soft_cross_entropy(logits, targets))
    labels = batch["labels"]
    counted = labels >= 0
    correct = (logits[:, :k].argmax(axis=1) == labels) & counted
    aux = {"accuracy": correct.sum() / jnp.maximum(counted.sum(), 1)}
    if targets.shape[1] > k:
      fake = targets[:, k] > 0.5
      caught = fake & (logits.argmax(axis=1) == k)
      aux["fake_detected"] = caught.sum() / jnp.maximum(fake.sum(), 1)
    return loss, aux

  def culprit(self, metrics):
    del metrics
    return "classifier's loss or weights"
