"""A cascade of critics (IGM's per-round critics, WINN's K cascades) held
in a fixed-capacity stack on device.

The stack is allocated for every critic the run will train, so adding one
changes no shape and nothing recompiles from round to round (growing it by
concatenation compiled a new program per round). Entries past `count` are
unused zeros; generation skips them.
"""
from typing import Any

from flax import struct
import jax
import jax.numpy as jnp

from introjax.errors import UserError


@struct.dataclass
class Cascade:
  critics: Any       # each leaf (capacity, ...): critic i's parameters at [i]
  count: jax.Array   # () int32: critics trained so far

  @property
  def capacity(self):
    return jax.tree.leaves(self.critics)[0].shape[0]


def empty_cascade(params, capacity):
  """Room for `capacity` critics shaped like `params`."""
  return Cascade(
      critics=jax.tree.map(lambda p: jnp.zeros((capacity,) + p.shape, p.dtype),
                           params),
      count=jnp.zeros((), jnp.int32))


def put(cascade, params, index):
  """`params` as critic `index` (a new one, or the replacement of the one
  still in training)."""
  critics = jax.tree.map(
      lambda c, p: jax.lax.dynamic_update_index_in_dim(c, p, index, 0),
      cascade.critics, params)
  return Cascade(critics, jnp.maximum(cascade.count, index + 1))


def grown(cascade, capacity):
  """The same critics with room for `capacity` in all: a run resumed with
  more rounds trains more critics."""
  extra = capacity - cascade.capacity
  if extra <= 0:
    return cascade
  critics = jax.tree.map(
      lambda c: jnp.concatenate([c, jnp.zeros((extra,) + c.shape[1:],
                                              c.dtype)]), cascade.critics)
  return Cascade(critics, cascade.count)


def critic(cascade, index):
  """Critic `index`'s parameters."""
  return jax.tree.map(lambda c: c[index], cascade.critics)


def first(cascade, num):
  """The cascade's first `num` critics (WINN eq. 8's model after `num`
  cascades; IGM's after `num` rounds): the same stack, a smaller count."""
  trained = int(cascade.count)
  if not 1 <= num <= trained:
    raise UserError(f"The cascade has {trained} trained critic(s); ask for "
                    f"between 1 and {trained}, not {num}.")
  return cascade.replace(count=jnp.int32(num))
