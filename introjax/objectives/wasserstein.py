"""WINN's critic loss: the Wasserstein objective with a gradient penalty.

WINN §4.1 (eq. 5 and the penalty after it; Algorithm 1 with λ = 10):

    L(W) = E f(x⁻) − E f(x⁺) + λ E[(‖∇_x̂ f(x̂)‖₂ − 1)²],
    x̂ = α x⁺ + (1 − α) x⁻,  α ~ U[0, 1] per sample,

the WGAN-GP critic loss of Gulrajani et al. with data as the "real" side and
the pool of pseudo-negatives as the "fake" side. `critic_fn(x) -> (B,)`
logits must treat samples independently (our critics normalise per sample),
so the gradient of the summed logits is each sample's own input gradient.
The penalty is differentiated with respect to the critic's parameters, i.e.
it needs gradients of gradients; `introjax.models.conv.conv2d` supports that.
"""
import jax
import jax.numpy as jnp


def _check_pairs(pos, neg):
  if pos.shape != neg.shape:
    raise ValueError(f"The gradient penalty pairs positives with negatives "
                     f"one to one, but got shapes {pos.shape} and "
                     f"{neg.shape}; draw equally many of each.")


def interpolate(pos, neg, key):
  """x̂ = u·pos + (1 − u)·neg, one u ~ U[0, 1] per sample (Algorithm 1)."""
  _check_pairs(pos, neg)
  u = jax.random.uniform(key, (pos.shape[0],) + (1,) * (pos.ndim - 1),
                         dtype=pos.dtype)
  return u * pos + (1 - u) * neg


def _safe_norm(g):
  """Per-sample L2 norm whose gradient is 0, not NaN, at g = 0."""
  sq = jnp.sum(g * g, axis=tuple(range(1, g.ndim)))
  nonzero = sq > 0
  # Double `where`: sqrt never sees 0, so its derivative stays finite.
  return jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, sq, 1.0)), 0.0)


def gradient_penalty(critic_fn, pos, neg, key):
  """E(‖∇_x f(x̂)‖₂ − 1)² over x̂ on random lines between pos and neg.

  Args:
    critic_fn: x (B, ...) -> logits (B,), each sample independent.
    pos: positives (B, ...).
    neg: pseudo-negatives, same shape as `pos`.
    key: PRNG key for the interpolation weights.

  Returns:
    The scalar penalty (without λ).
  """
  x_hat = interpolate(pos, neg, key)
  grads = jax.grad(lambda x: critic_fn(x).sum())(x_hat)
  return jnp.mean((_safe_norm(grads) - 1.0) ** 2)


def wgan_gp_loss(critic_fn, pos, neg, key, gp_weight=10.0):
  """WINN's classification-step loss (eq. 5 plus λ·penalty).

  Args:
    critic_fn: x (B, ...) -> logits (B,), each sample independent.
    pos: positives (B, ...).
    neg: pseudo-negatives, same shape as `pos`.
    key: PRNG key for the interpolation weights.
    gp_weight: λ (WINN Algorithm 1: 10).

  Returns:
    (loss, aux): loss = E f(neg) − E f(pos) + λ·GP; aux holds
    `wasserstein` = E f(pos) − E f(neg) (the critic's estimate of the
    distance, which it maximises) and `penalty` (GP without λ).
  """
  _check_pairs(pos, neg)
  batch = pos.shape[0]
  # One critic call for both sides: per-sample critics make this identical
  # to two calls, and one larger batch is cheaper.
  logits = critic_fn(jnp.concatenate([pos, neg], axis=0))
  wasserstein = logits[:batch].mean() - logits[batch:].mean()
  penalty = gradient_penalty(critic_fn, pos, neg, key)
  loss = -wasserstein + gp_weight * penalty
  return loss, {"wasserstein": wasserstein, "penalty": penalty}
