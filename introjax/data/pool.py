"""The pseudo-negative pool: a fixed-capacity buffer that lives on device.

Its shapes never change as rounds add negatives, so nothing recompiles; it
is a ring over the last `capacity` negatives, each slot tagged with the
round that made it, so sampling can favour recent rounds.
"""
from flax import struct
import jax
import jax.numpy as jnp

from introjax.errors import ConfigError


@struct.dataclass
class NegativePool:
  images: jax.Array   # (capacity, H, W, C)
  rounds: jax.Array   # (capacity,) round that wrote each slot; -1: empty
  cursor: jax.Array   # () next slot to write


def empty_pool(capacity, image_shape, dtype=jnp.float32):
  return NegativePool(images=jnp.zeros((capacity, *image_shape), dtype),
                      rounds=jnp.full((capacity,), -1, jnp.int32),
                      cursor=jnp.zeros((), jnp.int32))


def pool_add(pool, batch, round_index):
  """Writes `batch` over the oldest slots. The capacity is a multiple of the
  batch size, so a write never wraps."""
  capacity, n = pool.images.shape[0], batch.shape[0]
  if capacity % n:
    raise ConfigError(f"Pool capacity {capacity} is not a multiple of the "
                     f"{n} negatives added per round.")
  images = jax.lax.dynamic_update_slice_in_dim(
      pool.images, batch.astype(pool.images.dtype), pool.cursor, axis=0)
  rounds = jax.lax.dynamic_update_slice_in_dim(
      pool.rounds, jnp.full((n,), round_index, jnp.int32), pool.cursor, 0)
  return NegativePool(images, rounds, (pool.cursor + n) % capacity)


def pool_sample(pool, key, n, current_round, recency_decay):
  """Indices of n slots drawn with replacement; a slot written `a` rounds
  before `current_round` is weighted recency_decay**a (1.0: uniform)."""
  age = (current_round - pool.rounds).astype(jnp.float32)
  logits = jnp.where(pool.rounds >= 0, age * jnp.log(recency_decay), -jnp.inf)
  return jax.random.categorical(key, logits, shape=(n,))
