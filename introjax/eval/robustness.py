"""Test error and robustness to FGSM adversarial examples (WINN §5.6, Table 3).

A model is a pair (logits_fn, params) with `logits_fn(params, x) -> (B, K)`.
Everything runs in fixed-size batches through functions jitted with the
`logits_fn` as a static argument: the last batch is padded, so a whole test
set costs one compilation per model function and shape, and results stay on
the device until the end. With a `sharding` (the mesh's batch sharding),
each batch is split over the devices, so D devices each evaluate 1/D of it
instead of all of them evaluating all of it.
"""
import dataclasses
import functools
from typing import Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from introjax import compiled
from introjax import parallel
from introjax.errors import ConfigError

LogitsFn = Callable[..., jax.Array]


def check_epsilon(eps, lo=-1.0, hi=1.0):
  """Refuses an FGSM step that is not in (0, hi - lo): a step of hi - lo or
  more sends every pixel to a bound, and a step ≤ 0 is no attack."""
  if not 0.0 < float(eps) < hi - lo:
    raise ConfigError(
        f"eval.fgsm_eps={eps} is outside the data range [{lo:g}, {hi:g}]: "
        f"FGSM needs 0 < eps < {hi - lo:g}; use e.g. 0.125 (WINN §5.6, "
        "MNIST) or 0.25 (ICL §4.1's 0.125 on [0, 1]).")


def fgsm(logits_fn: LogitsFn, params, x, y, eps, lo=-1.0, hi=1.0):
  """Fast gradient sign method (Goodfellow et al. 2015) on a batch.

  x_adv = clip(x + eps · sign(∇_x CE(logits_fn(params, x), y)), lo, hi).
  Jittable with `logits_fn` static; `eps` is not validated here (it may be
  traced), so call `check_epsilon` first.

  Args:
    logits_fn: `params, x -> (B, K)` logits.
    params: the model's parameters.
    x: (B, H, W, C) images in [lo, hi].
    y: (B,) integer labels.
    eps: the step size on the data scale.
    lo, hi: the data range the result is clipped to.

  Returns:
    The adversarial images, shaped and typed like `x`.
  """
  def loss(x):
    logits = logits_fn(params, x).astype(jnp.float32)
    log_p = jax.nn.log_softmax(logits)
    # A sum, not a mean: each sample's gradient is its own loss's gradient,
    # not one scaled by 1/B (the sign is the same, but tiny gradients could
    # underflow to 0 and leave pixels unmoved).
    return -jnp.sum(jnp.take_along_axis(log_p, y[:, None], axis=1))

  g = jax.grad(loss)(x)
  return jnp.clip(x + eps * jnp.sign(g).astype(x.dtype), lo, hi)


@functools.partial(jax.jit, static_argnums=0)
def _predict_batch(logits_fn, params, x):
  return jnp.argmax(logits_fn(params, x), axis=-1).astype(jnp.int32)


_fgsm_batch = jax.jit(fgsm, static_argnums=0)


def batch_size_on(mesh, batch_size):
  """The evaluation batch on `mesh`: `eval.batch_size` rounded up to a
  multiple of the devices, so every batch splits over them (the padding
  rows are zeros and dropped; each image's prediction and FGSM example are
  its own, so the results do not change)."""
  return parallel.padded_rows(int(batch_size), mesh)


def evaluation_steps(logits_fn, params, image_shape, batch_size, mesh,
                     fgsm_too, resident=()):
  """The compiled calls of a classifier's evaluation (introjax/compiled.py):
  one batch's predictions (test error) and, with `fgsm_too`, its FGSM
  examples, from abstract `params` and a batch of `batch_size_on(mesh,
  batch_size)` split over `mesh`, as the trainers place it."""
  rep = parallel.replicated(mesh)
  split = parallel.batch_sharding(mesh)
  batch_size = batch_size_on(mesh, batch_size)
  x = compiled.array((batch_size, *image_shape), jnp.float32, split)
  y = compiled.array((batch_size,), jnp.int32, split)
  steps = [compiled.Step("evaluation (test error)", _predict_batch,
                         (logits_fn, params, x), resident=resident)]
  if fgsm_too:
    scalar = compiled.scalar(jnp.float32, rep)
    steps.append(compiled.Step("evaluation (FGSM)", _fgsm_batch,
                               (logits_fn, params, x, y, scalar, scalar,
                                scalar), resident=resident))
  return steps


def _batches(array, batch_size, sharding=None):
  """(start, batch) over `array` (NumPy or device), the last batch padded
  with zeros to `batch_size` so every batch has one shape, and placed with
  `sharding` if one is given."""
  if batch_size < 1:
    raise ConfigError(f"eval.batch_size={batch_size} must be positive.")
  n = array.shape[0]
  xp = np if isinstance(array, np.ndarray) else jnp
  for start in range(0, n, batch_size):
    batch = array[start:start + batch_size]
    short = batch_size - batch.shape[0]
    if short:
      batch = xp.pad(batch, [(0, short)] + [(0, 0)] * (batch.ndim - 1))
    if sharding is not None:
      batch = jax.device_put(batch, sharding)
    yield start, batch


def _gather(batches, n):
  """Host array of the first n entries of concatenated per-batch results."""
  if not batches:
    return np.zeros((0,), np.int32)
  return parallel.to_host(jnp.concatenate(batches))[:n]


def predict(logits_fn: LogitsFn, params, images, batch_size, sharding=None):
  """Predicted labels (N,) int32 (NumPy) of `images` (N, H, W, C)."""
  preds = [_predict_batch(logits_fn, params, x)
           for _, x in _batches(images, batch_size, sharding)]
  return _gather(preds, images.shape[0])


def test_error(logits_fn: LogitsFn, params, images, labels, batch_size,
               sharding=None):
  """Fraction of `images` whose predicted label is not `labels`."""
  pred = predict(logits_fn, params, images, batch_size, sharding)
  return float(np.mean(pred != np.asarray(labels)))


@dataclasses.dataclass
class RobustnessResult:
  """WINN Table 3's quantities for every ordered pair of models.

  Attributes:
    eps: the FGSM step.
    num_images: N, the test images; each model makes one adversarial example
      from every one of them.
    clean_error: model -> test error on the clean images.
    num_fooled: A -> N_A, A's adversarial examples that A misclassifies.
    adversarial_error: A -> N_A / N.
    num_fooled_both: A -> B -> N_{A∩B}, A's adversarial examples that both A
      and B misclassify.
    correction_rate: A -> B -> 1 - N_{A∩B} / N_A, the fraction of A's
      successful adversarial examples that B classifies correctly (None when
      N_A = 0). Only B ≠ A.
  """
  eps: float
  num_images: int
  clean_error: Dict[str, float]
  num_fooled: Dict[str, int]
  adversarial_error: Dict[str, float]
  num_fooled_both: Dict[str, Dict[str, int]]
  correction_rate: Dict[str, Dict[str, Optional[float]]]


def robustness_table(models, images, labels, eps, batch_size, lo=-1.0,
                     hi=1.0, sharding=None) -> RobustnessResult:
  """Two-way FGSM robustness of `models`, as defined in WINN Table 3.

  "We first generate N adversarial examples using method A and count the
  number of adversarial examples misclassified by A (= N_A). Adversarial
  error of A is defined as test error rate against adversarial examples
  (= N_A/N). Then among A's mistakes, we count the number of adversarial
  examples misclassified by B (= N_{A∩B}). Then error correction rate by B
  is 1 - N_{A∩B}/N_A."

  N is the whole test set: WINN makes adversarial examples from "test images
  of MNIST and SVHN" and calls N_A/N a test error rate, so images that A
  already misclassifies clean are attacked and counted too. (ICL §4.1
  instead attacks only the images the source model classifies correctly;
  its "reduction in error" is this correction rate over that subset.)
  WINN Table 3's "correction rate by Method" of a model M is
  `correction_rate[baseline][M]` and its "correction rate by Baseline" is
  `correction_rate[M][baseline]`.

  Args:
    models: name -> (logits_fn, params).
    images: (N, H, W, C) test images in [lo, hi], NumPy or on the device.
    labels: (N,) integer labels.
    eps: the FGSM step, checked by `check_epsilon`.
    batch_size: images per compiled batch.
    lo, hi: the data range.
    sharding: where each batch is placed (None: where `images` is).

  Returns:
    A `RobustnessResult`.
  """
  check_epsilon(eps, lo, hi)
  n = images.shape[0]
  labels_np = np.asarray(labels).astype(np.int32)
  labels_padded = dict(_batches(labels_np, batch_size, sharding))
  names = list(models)
  clean = {name: predict(fn, params, images, batch_size, sharding)
           for name, (fn, params) in models.items()}
  # adv_pred[A][B]: B's predictions on A's adversarial examples.
  adv_pred = {}
  for a, (fn_a, params_a) in models.items():
    per_batch = {b: [] for b in names}
    for start, x in _batches(images, batch_size, sharding):
      x_adv = _fgsm_batch(fn_a, params_a, x, labels_padded[start], eps, lo, hi)
      for b, (fn_b, params_b) in models.items():
        per_batch[b].append(_predict_batch(fn_b, params_b, x_adv))
    adv_pred[a] = {b: _gather(p, n) for b, p in per_batch.items()}

  num_fooled, adversarial_error, both, correction = {}, {}, {}, {}
  for a in names:
    fooled_a = adv_pred[a][a] != labels_np
    num_fooled[a] = int(np.sum(fooled_a))
    adversarial_error[a] = num_fooled[a] / n if n else 0.0
    both[a], correction[a] = {}, {}
    for b in names:
      if b == a:
        continue
      both[a][b] = int(np.sum(fooled_a & (adv_pred[a][b] != labels_np)))
      correction[a][b] = (1.0 - both[a][b] / num_fooled[a]
                          if num_fooled[a] else None)
  return RobustnessResult(
      eps=float(eps), num_images=n,
      clean_error={name: float(np.mean(p != labels_np)) if n else 0.0
                   for name, p in clean.items()},
      num_fooled=num_fooled, adversarial_error=adversarial_error,
      num_fooled_both=both, correction_rate=correction)


def format_robustness_table(result: RobustnessResult) -> str:
  """A Markdown table of `result`: one row per source model A, the columns
  its clean error, its adversarial error N_A/N and, for each other model B,
  the rate at which B corrects A's successful adversarial examples."""
  names = list(result.clean_error)
  n = result.num_images
  header = (["adversarial examples of A", "clean error of A (%)",
             "adversarial error of A (%) ↓"]
            + [f"correction rate by {b} (%)" for b in names])
  lines = ["| " + " | ".join(header) + " |",
           "|" + " --- |" * len(header)]
  for a in names:
    cells = [a, f"{100 * result.clean_error[a]:.2f}",
             f"{100 * result.adversarial_error[a]:.2f} "
             f"({result.num_fooled[a]}/{n})"]
    for b in names:
      rate = result.correction_rate[a].get(b)
      if b == a or rate is None:
        cells.append("–")
      else:
        kept = result.num_fooled[a] - result.num_fooled_both[a][b]
        cells.append(f"{100 * rate:.2f} ({kept}/{result.num_fooled[a]})")
    lines.append("| " + " | ".join(cells) + " |")
  lines += ["", f"FGSM ε = {result.eps:g}, N = {n} test images (WINN Table "
            "3): adversarial error of A = N_A/N, the share of A's adversarial "
            "examples that fool A; correction rate by B = 1 − N_A∩B/N_A, the "
            "share of those that B classifies correctly."]
  return "\n".join(lines)


def classifier_results_lines(final, fgsm_eps):
  """results.md lines of the test errors and the FGSM table in `final`
  (what evaluators.final_by_classifier returns)."""
  lines = []
  if "test_error" in final:
    lines += ["| model | test error (%) |", "| --- | --- |"]
    lines += [f"| {name} | {100 * e:.2f} |"
              for name, e in final["test_error"].items()]
    lines.append("")
  if "robustness" in final:
    lines += [f"## FGSM, ε = {fgsm_eps} on [-1, 1]", "",
              format_robustness_table(final["robustness"]), ""]
  return lines
