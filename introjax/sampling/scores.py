"""Score functions: what a sampler climbs, as `score_and_grad(x, key) ->
(scores (B, P), ascent direction like x)`. The scores are what the stop
rules read (P patch logits per sample, P = 1 for whole images); the
direction is what the step rule moves along.

    logit_ascent       each sample climbs its own logit (whole images)
    patch_average      IGM §3.4 anysize canvases: fresh random patches per
                       step, each pixel moved by the mean gradient of the
                       patches covering it
    style_transfer     IGM §4.2: the anysize patch logits' mean, less α
                       times the per-pixel mean squared distance to a
                       content image
    classified_as_own  ICL eq. 10: climb the class's own logit, score by the
                       log-odds of being classified as that class
    gram_regularised   STIC eq. 3: log p(y|x) for soft targets y, less a
                       weight times the (relative) Gram-matrix distance of
                       the named layers to a reference image's
    target_logit       JEM's class-conditional energy: Σ_k y_k f_k(x)
    plus_learned_score Score-STIC: any of these with a learned score
                       s(x) ≈ ∇ log p(x) added to its direction
"""
import jax
import jax.numpy as jnp

from introjax.sampling import anysize


def logit_ascent(logits_fn):
  """Each sample climbs its own logit; `logits_fn(x) -> (B,)`. Samples are
  independent, so the gradient of the sum is each sample's own gradient."""
  def score_and_grad(x, key):
    del key
    logits, vjp = jax.vjp(logits_fn, x)
    return logits[:, None], vjp(jnp.ones_like(logits))[0]
  return score_and_grad


def patch_average(logits_fn, patch, patches_per_canvas):
  """Canvases scored by `patches_per_canvas` fresh random patches each step.

  Returns patch logits (B, P) and the per-pixel average of the patch-logit
  gradients, shaped like the canvases; pixels no patch covers this step do
  not move.
  """
  def score_and_grad(canvases, key):
    b, h, w, _ = canvases.shape
    origins = anysize.random_origins(key, b, patches_per_canvas, (h, w),
                                     patch)
    crop = lambda c: anysize.extract_patches(c, origins, patch)
    patches, crop_vjp = jax.vjp(crop, canvases)
    logits, logits_vjp = jax.vjp(logits_fn, patches)
    summed = crop_vjp(logits_vjp(jnp.ones_like(logits))[0])[0]
    coverage = crop_vjp(jnp.ones_like(patches))[0][..., :1]
    grad = summed / jnp.maximum(coverage, 1.0)
    return logits.reshape(b, patches_per_canvas), grad
  return score_and_grad


def style_transfer(logits_fn, patch, patches_per_canvas, content, alpha):
  """IGM §4.2 on canvases: each climbs its exact objective

      J(x) = (1−α)·mean_p f(patch_p(x)) − α·mean_pixels (x − content)²,

  −J being the paper's α·‖I_style − I‖² − (1−α)·ln p_style(I_style) with
  both terms averaged, as the paper averages the L2 difference ("at each
  step of synthesis"): α then weighs a mean logit against a mean squared
  pixel difference, the same balance at any canvas size. (A summed L2 term
  is ~patch-area times stronger and held the result within about a grey
  level of the content: BENCHMARKS.md.) Fresh random patches each step,
  as for texture synthesis; returns their logits (B, P) and ∇J.
  """
  def score_and_grad(canvases, key):
    b, h, w, _ = canvases.shape
    origins = anysize.random_origins(key, b, patches_per_canvas, (h, w),
                                     patch)

    def objective(x):
      logits = logits_fn(anysize.extract_patches(x, origins, patch))
      logits = logits.reshape(b, patches_per_canvas)
      fidelity = jnp.mean(jnp.square(x - content), axis=(1, 2, 3))
      # Canvases are independent: the sum's gradient is each one's own.
      return jnp.sum((1 - alpha) * logits.mean(axis=1) - alpha * fidelity), (
          logits)

    grad, logits = jax.grad(objective, has_aux=True)(canvases)
    return logits, grad
  return score_and_grad


def classified_as_own(synthesis_scores):
  """ICL eq. 10 for a class-major batch: the direction is ∇ of each
  sample's own-class logit; the score is the log-odds that it is classified
  as its class (> 0: classified positive). `synthesis_scores(x) -> (own
  logit (B,), decision (B,))`."""
  def score_and_grad(x, key):
    del key
    (_, decision), vjp = jax.vjp(synthesis_scores, x)
    grad = vjp((jnp.ones_like(decision), jnp.zeros_like(decision)))[0]
    return decision[:, None], grad
  return score_and_grad


def gram_matrix(features):
  """(B, H, W, C) feature maps -> (B, C, C) Gram matrices FᵀF / (H·W)
  (Gatys et al.), in float32."""
  b, h, w, c = features.shape
  f = features.reshape(b, h * w, c).astype(jnp.float32)
  return jnp.einsum("bpc,bpd->bcd", f, f) / (h * w)


def gram_distance(features, reference_grams):
  """(B,) Σ over layers of ‖G − A‖² / ‖A‖²: each sample's Gram matrices
  against its reference's, relative to the reference's own size. (Gatys'
  style loss divides by fixed sizes instead; relative to A, the weight
  means the same at every layer and for any classifier's feature scale:
  with the plain mean, a classifier trained without mixup had Gram
  gradients large enough to throw every chain to the clip.)"""
  def relative(f, a):
    return (jnp.sum(jnp.square(gram_matrix(f) - a), axis=(1, 2)) /
            (jnp.sum(jnp.square(a), axis=(1, 2)) + 1e-12))
  return sum(relative(f, a) for f, a in zip(features, reference_grams))


def gram_regularised(taps, targets, reference_grams, gram_weight):
  """STIC eq. 3's objective per sample, u(x) = log p(y|x) − gram_weight ·
  gram_distance(x), y the soft `targets` (B, K + 1) (one-hot for class
  chains, λ-mixed for mixup chains). `taps(x) -> (logits, feature maps)`
  (models.classifiers.feature_taps); `reference_grams` the Gram matrices
  of each chain's reference image at the same layers. The paper writes the
  Gram term without a gradient; a scalar cannot move an image, so it is
  read as descent on the Gram loss: with the step ε1·∇u this is eq. 3's
  ε1∇log p(y|x) − ε2∇Σ‖G − A‖², ε2 = ε1·gram_weight. Scores (B, 1) = u."""
  def score_and_grad(x, key):
    del key

    def objective(x):
      logits, features = taps(x)
      u = jnp.sum(targets * jax.nn.log_softmax(logits, axis=-1), axis=-1)
      if gram_weight:
        u = u - gram_weight * gram_distance(features, reference_grams)
      # Samples are independent: the sum's gradient is each one's own.
      return u.sum(), u

    grad, u = jax.grad(objective, has_aux=True)(x)
    return u[:, None], grad
  return score_and_grad


def target_logit(logits_fn, targets):
  """JEM's class-conditional energy −E(x, y) = f(x)[y] for soft targets:
  Σ_k y_k f_k(x); `logits_fn(x) -> (B, K + 1)`."""
  def score_and_grad(x, key):
    del key

    def objective(x):
      u = jnp.sum(targets * logits_fn(x), axis=-1)
      return u.sum(), u

    grad, u = jax.grad(objective, has_aux=True)(x)
    return u[:, None], grad
  return score_and_grad


def plus_learned_score(score_and_grad, learned_score, weight=1.0):
  """Score-STIC's sampler direction: `score_and_grad`'s plus `weight` ·
  s(x), `learned_score(x) -> like x` the network's input-shaped output.
  With u = log p(y|x) (gram_regularised), ∇u + s ≈ ∇ log p(y|x) + ∇ log p(x)
  = ∇ log p(x|y): the product of experts that STIC eq. 2 drops for want of
  a model of p(x). The scores stay u's (there is no log p(x) to add)."""
  def combined(x, key):
    u, direction = score_and_grad(x, key)
    return u, direction + weight * learned_score(x).astype(direction.dtype)
  return combined
