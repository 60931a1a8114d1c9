"""Score-STIC's regulariser (STIC §5, the unnumbered equation added to the
classifier's objective):

    E_{p_data(x)} [ ½‖s(x)‖² + tr(∇ₓ s(x)) + ½‖y_c − p(y|x)‖² ]

s(x) the network's input-shaped output (the paper writes it p_θ(x);
models.classifiers.ScoreClassifier), ½‖s‖² + tr ∇ₓs Hyvärinen's implicit
score-matching objective (the paper cites Song & Ermon), and the last term
the squared distance between the real image's one-hot label y_c and the
classifier's softmax over all K + 1 outputs (the paper writes
"½‖(y_c, p_θ(y|x))‖²"; we read the pair as their difference). It is
averaged over the real rows of a batch and added, times a weight, to eq. 5.

The trace is exact (D reverse-mode passes, D = H·W·C: for small images) or
Hutchinson's estimate vᵀ(∇ₓs)v with Rademacher v, unbiased, `projections`
draws averaged. Reverse mode throughout: the CPU convolutions define only a
VJP.
"""
import jax
import jax.numpy as jnp

TRACES = ("exact", "hutchinson")


def score_trace(score_fn, x, key, trace="hutchinson", projections=1):
  """(s(x), (B,) tr ∇ₓs(x) per sample, aux) for `score_fn(x) -> (s like x,
  aux)`, aux (the logits) from the same forward pass; samples must not mix
  (each row's s depends on its own x only)."""
  s, vjp, aux = jax.vjp(score_fn, x, has_aux=True)
  axes = tuple(range(1, x.ndim))
  if trace == "exact":
    d = x[0].size
    basis = jnp.eye(d, dtype=s.dtype).reshape((d, 1) + x.shape[1:])
    rows = jax.vmap(lambda e: vjp(jnp.broadcast_to(e, s.shape))[0])(basis)
    diagonal = rows.reshape(d, x.shape[0], d)[jnp.arange(d), :, jnp.arange(d)]
    return s, diagonal.sum(axis=0), aux
  if trace != "hutchinson":
    raise ValueError(f"unknown trace estimator {trace!r}")

  def one(k):
    v = jax.random.rademacher(k, s.shape, s.dtype)
    return jnp.sum(v * vjp(v)[0], axis=axes)

  estimates = jax.vmap(one)(jax.random.split(key, projections))
  return s, estimates.mean(axis=0), aux


def score_stic_terms(score_and_logits, x, targets, key, trace="hutchinson",
                     projections=1):
  """The regulariser's three terms per sample, {"score_norm": ½‖s‖²,
  "score_trace": tr ∇ₓs, "label_distance": ½‖y − softmax(f(x))‖²}, each
  (B,), for `score_and_logits(x) -> (s(x), logits (B, K + 1))` and one-hot
  (or soft) `targets` (B, K + 1)."""
  s, tr, logits = score_trace(score_and_logits, x, key, trace, projections)
  axes = tuple(range(1, x.ndim))
  p = jax.nn.softmax(
      logits.astype(jnp.promote_types(logits.dtype, jnp.float32)), axis=-1)
  return {"score_norm": 0.5 * jnp.sum(jnp.square(s), axis=axes),
          "score_trace": tr,
          "label_distance": 0.5 * jnp.sum(jnp.square(targets - p), axis=-1)}


def score_stic_regulariser(score_and_logits, x, targets, key,
                           trace="hutchinson", projections=1):
  """(the batch mean of the three terms' sum, {term: batch mean})."""
  terms = score_stic_terms(score_and_logits, x, targets, key, trace,
                           projections)
  means = {k: v.mean() for k, v in terms.items()}
  return sum(means.values()), means
