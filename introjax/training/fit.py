"""The one fit loop: optimiser steps on a loss, as one compiled
`while_loop`, for every member's classification step.

How long it runs is said one way each:
  max_steps     the step cap (a member turns epochs or WINN's k passes
                into it on the host)
  loss_target   stop once the smoothed loss is this low (IGM's INNg rule)
and it always stops at the first non-finite loss, which the caller reports.

`step_loss(params, key) -> (loss, aux)` draws its own batch from `key`
(`fold_in(key, step)` at each step), so members keep their batch policies
(pool draws, pairing, augmentation) and the loop stays one.

Returns the parameters, the optimiser state and the numbers of the run:
`steps`, the loss and aux both as running means over roughly the last 10
steps (`smoothed`, what the loss target reads) and as means over all steps
(`mean`), and `finite` (the loss and every parameter).
"""
import jax
import jax.numpy as jnp
import optax


def fit(step_loss, tx, params, opt_state, key, max_steps, loss_target=None):
  """Runs up to `max_steps` steps of `tx` on `step_loss` (see the module
  docstring); `max_steps` may be traced."""

  def cond(carry):
    step, _, _, smoothed, _ = carry
    go = (step < max_steps) & ((step == 0) | jnp.isfinite(smoothed["loss"]))
    return go if loss_target is None else go & (smoothed["loss"] > loss_target)

  def body(carry):
    step, params, opt_state, smoothed, sums = carry
    (loss, aux), grads = jax.value_and_grad(step_loss, has_aux=True)(
        params, jax.random.fold_in(key, step))
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    values = {"loss": loss, **aux}
    first = step == 0
    smoothed = jax.tree.map(
        lambda avg, new: jnp.where(first, new, 0.9 * avg + 0.1 * new),
        smoothed, values)
    sums = jax.tree.map(jnp.add, sums, values)
    return step + 1, params, opt_state, smoothed, sums

  shapes = jax.eval_shape(lambda p, k: step_loss(p, k), params, key)
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                       {"loss": shapes[0], **shapes[1]})
  smoothed0 = dict(zeros, loss=jnp.full(shapes[0].shape, jnp.inf,
                                        shapes[0].dtype))
  steps, params, opt_state, smoothed, sums = jax.lax.while_loop(
      cond, body, (jnp.int32(0), params, opt_state, smoothed0, zeros))
  mean = jax.tree.map(lambda s: s / jnp.maximum(steps, 1), sums)
  # No step run (max_steps = 0): no loss to be non-finite.
  finite = ((steps == 0) | jnp.isfinite(smoothed["loss"])) & jnp.stack(
      [jnp.isfinite(p).all() for p in jax.tree.leaves(params)]).all()
  return params, opt_state, {"steps": steps, "smoothed": smoothed,
                             "mean": mean, "finite": finite}
