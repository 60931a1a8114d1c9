"""Generation through a cascade of critics (IGM's generation, WINN eq. 8):
x climbs each trained critic in turn, in one compiled `lax.scan` over the
fixed-capacity stack, so one program serves every cascade length.

Shared by the trainers (final samples, style transfer), `introjax.sample`,
`introjax.compare` (through a model restored by `introjax.saved`) and the
`cascade` benchmark.
"""
import jax
import jax.numpy as jnp


def through_cascade(critics, count, x0, key, climb):
  """Runs x0 up the first `count` critics of the stacked `critics`.

  Args:
    critics: parameters stacked on a leading axis (capacity, …).
    count: how many of them are trained (may be traced); the rest are
      skipped with zero stats.
    x0: the starting batch.
    key: stage s climbs with fold_in(key, s), so a stage's randomness does
      not depend on the stack's size.
    climb: (x, params, key) -> (x, stats) for one critic.

  Returns:
    (x, stats stacked per stage).
  """
  capacity = jax.tree.leaves(critics)[0].shape[0]
  stages = jnp.arange(capacity)
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(stages)

  def stage(x, inputs):
    params, key, index = inputs
    run = lambda x: climb(x, params, key)
    skipped = jax.eval_shape(run, x)[1]

    def skip(x):
      return x, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), skipped)

    return jax.lax.cond(index < count, run, skip, x)

  return jax.lax.scan(stage, x0, (critics, keys, stages))
