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
import math

from flax import struct
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


def own_class_logit(logits, labels):
  """logits[i, labels[i]]: the class-y critic score of sample i."""
  return jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]


def winn_classifier_loss(logits_fn, pos, labels, neg, key, alpha,
                         gp_weight=10.0):
  """WINN §5.6's classification loss for a K-class softmax network:

      L = CE(softmax(logits(x⁺)), y) + α (E f(x⁻) − E f(x⁺) + λ GP),

  §5.6's (unnumbered) equation: the softmax term of ICN on the data plus α
  times WINN eq. (5) with §4.1's gradient penalty. The multi-class network
  has no single critic output: §5.6 writes W_t = ⟨w^(0), w^(1)_1 … w^(1)_K⟩,
  the top-layer weights of each class and nothing more, and pseudo-negatives
  are made per class (ICL eq. 10: climbing w^(1)_k · φ(x); WINN eq. 6 with
  that f), so the critic of class k is its logit f_k(x) = w^(1)_k · φ(x).
  (The released code instead adds a linear "wass" head on the K logits; the
  paper's W_t has no such weights.) Each positive x⁺_i
  of class y_i is paired with a pseudo-negative x⁻_i made for y_i; both
  are scored by f_{y_i}, and the penalty is taken on x̂_i = u x⁺_i + (1 − u)
  x⁻_i with ∇_x̂ f_{y_i}(x̂_i) (Algorithm 1's pairing, class by class, as
  the released code pairs each positive with a negative of its class).
  The paper's sums over S_+ and S_−^t are means over the mini-batch, as in
  Algorithm 1's 1/m Σ.

  Args:
    logits_fn: x (B, ...) -> (B, K) logits, each sample independent.
    pos: positives (B, ...).
    labels: (B,) their classes, also the classes the negatives were made for.
    neg: pseudo-negatives, paired with `pos` (same shape).
    key: PRNG key for the interpolation weights.
    alpha: the weight α of the Wasserstein term (§5.6: 0.01); may be traced.
    gp_weight: λ (10).

  Returns:
    (loss, aux): aux holds `cross_entropy`, `wasserstein` = E f(x⁺) −
    E f(x⁻), `penalty` (GP without λ) and `accuracy` on the positives.
  """
  _check_pairs(pos, neg)
  batch = pos.shape[0]
  # One forward pass for both sides (per-sample network).
  logits = logits_fn(jnp.concatenate([pos, neg], axis=0))
  pos_logits, neg_logits = logits[:batch], logits[batch:]
  cross_entropy = jnp.mean(jax.nn.logsumexp(pos_logits, axis=1) -
                           own_class_logit(pos_logits, labels))
  wasserstein = (own_class_logit(pos_logits, labels).mean() -
                 own_class_logit(neg_logits, labels).mean())
  penalty = gradient_penalty(
      lambda x: own_class_logit(logits_fn(x), labels), pos, neg, key)
  loss = cross_entropy + alpha * (-wasserstein + gp_weight * penalty)
  accuracy = jnp.mean(pos_logits.argmax(axis=1) == labels)
  return loss, {"cross_entropy": cross_entropy, "wasserstein": wasserstein,
                "penalty": penalty, "accuracy": accuracy}


@struct.dataclass
class WassersteinGPLoss:
  """WINN eq. 5 plus λ times the gradient penalty (Algorithm 1, λ = 10).
  batch: {"x": positives then as many paired negatives}."""
  gp_weight: float = struct.field(pytree_node=False, default=10.0)

  fix = "lower train.learning_rate (or train.gp_weight)"

  def __call__(self, critic_fn, batch, key):
    x = batch["x"]
    half = x.shape[0] // 2
    return wgan_gp_loss(critic_fn, x[:half], x[half:], key, self.gp_weight)

  def culprit(self, metrics):
    # The loop stops at the first non-finite loss: a finite Wasserstein
    # estimate at that step puts the blame on the penalty term.
    if math.isfinite(metrics["train_wasserstein"]):
      return "gradient penalty"
    return "critic's Wasserstein estimate (its weights)"


@struct.dataclass
class WINNClassifierLoss:
  """WINN §5.6 (`winn_classifier_loss`) on {"positives", "labels",
  "negatives", "any_negatives"}: before the pool has negatives (round 1)
  the α term is masked to 0 and its parts logged as 0."""
  alpha: float = struct.field(pytree_node=False, default=0.01)
  gp_weight: float = struct.field(pytree_node=False, default=10.0)

  fix = "lower train.learning_rate"

  def __call__(self, class_logits, batch, key):
    any_negatives = batch["any_negatives"]
    alpha = jnp.where(any_negatives, self.alpha, 0.0)
    loss, aux = winn_classifier_loss(class_logits, batch["positives"],
                                     batch["labels"], batch["negatives"], key,
                                     alpha, self.gp_weight)
    for name in ("wasserstein", "penalty"):   # not measured without negatives
      aux[name] = jnp.where(any_negatives, aux[name], 0.0)
    return loss, aux

  def culprit(self, metrics):
    del metrics
    return "classifier's loss or weights"
