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
