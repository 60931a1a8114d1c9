"""The pseudo-negative pool: a fixed-capacity buffer that lives on device.

Its shapes never change as rounds add negatives, so nothing recompiles; it
is a ring over the last `capacity` negatives, each slot tagged with the
round that made it, so sampling can favour recent rounds.

At scale the pool is split over the mesh's `data` axis (capacity/D slots
per device, e.g. a 100,000×64×64×3 float32 pool of 4.9 GB is 614 MB per
device on 8 devices) and is never gathered to one device:

* `pool_add` writes each device's own slots in place (`shard_map`); only
  the round's batch (n images) travels, never the pool. Left to the SPMD
  partitioner, a dynamic-offset write into a sharded axis all-gathers the
  whole pool onto every device.
* `pool_sample` draws slot indices from the `rounds` tags (capacity int32s,
  the only pool-sized thing all devices see), and the trainers' crops of
  the drawn slots compile to a gather on each device's own shard plus a
  sum over devices of the batch (XLA's masked gather): traffic is the
  batch, not the pool.

Slot order is the same whatever the mesh, so 1 device and D devices (or D
devices over several hosts) draw the same negatives.
tests/pool_sharding_check.py checks both properties on 8 devices.
"""
from flax import struct
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from introjax import parallel
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


def pool_add(pool, batch, round_index, mesh=None):
  """Writes `batch` over the oldest slots. The capacity is a multiple of the
  batch size, so a write never wraps. With a `mesh`, the pool and the batch
  are split over its data axis and each device writes its own slots."""
  capacity, n = pool.images.shape[0], batch.shape[0]
  if capacity % n:
    raise ConfigError(f"Pool capacity {capacity} is not a multiple of the "
                      f"{n} negatives added per round.")
  tags = jnp.full((n,), round_index, jnp.int32)
  batch = batch.astype(pool.images.dtype)
  if mesh is None or mesh.size == 1:
    write = lambda buf, new: jax.lax.dynamic_update_slice_in_dim(
        buf, new, pool.cursor, axis=0)
    return NegativePool(write(pool.images, batch), write(pool.rounds, tags),
                        (pool.cursor + n) % capacity)
  shard = capacity // mesh.size

  def local(images, rounds, batch, tags, cursor):
    # The whole batch (n rows) on every device, then each device writes the
    # rows that land in its slots [first, first + shard).
    batch = jax.lax.all_gather(batch, parallel.DATA, tiled=True)
    tags = jax.lax.all_gather(tags, parallel.DATA, tiled=True)
    first = jax.lax.axis_index(parallel.DATA) * shard
    return (_write_window(images, batch, cursor - first),
            _write_window(rounds, tags, cursor - first))

  data = P(parallel.DATA)
  images, rounds = jax.shard_map(
      local, mesh=mesh, in_specs=(data, data, data, data, P()),
      out_specs=(data, data))(pool.images, pool.rounds, batch, tags,
                              pool.cursor)
  return NegativePool(images, rounds, (pool.cursor + n) % capacity)


def _write_window(local, rows, offset):
  """`local` with rows[i] written at local index offset + i wherever that
  index is in range; the rest of `rows` belongs to other devices.

  A static window of min(n, shard) slots always covers the rows that land
  here, so the write reads and writes O(n) slots, in place.
  """
  shard, n = local.shape[0], rows.shape[0]
  width = min(n, shard)
  start = jnp.clip(offset, 0, shard - width)
  window = jax.lax.dynamic_slice_in_dim(local, start, width)
  source = start - offset + jnp.arange(width)   # row of `rows` per slot
  hit = (source >= 0) & (source < n)
  picked = rows[jnp.clip(source, 0, n - 1)]
  hit = hit.reshape((width,) + (1,) * (local.ndim - 1))
  return jax.lax.dynamic_update_slice_in_dim(
      local, jnp.where(hit, picked, window), start, 0)


def pool_sample(pool, key, n, current_round, recency_decay):
  """Indices of n slots drawn with replacement; a slot written `a` rounds
  before `current_round` is weighted recency_decay**a (1.0: uniform).

  By inverse CDF: one cumulative sum over the slots and a binary search per
  draw, O(capacity + n log capacity). (`jax.random.categorical` would draw
  n × capacity Gumbel variates: 400 MB per step for 1000 draws from a
  100,000-slot pool.) An empty pool gives slot 0.
  """
  filled = pool.rounds >= 0
  age = (current_round - pool.rounds).astype(jnp.float32)
  log_weight = jnp.where(filled, age * jnp.log(recency_decay), -jnp.inf)
  newest = jnp.max(jnp.where(filled, log_weight, 0.0))  # keeps exp in range
  cdf = jnp.cumsum(jnp.where(filled, jnp.exp(log_weight - newest), 0.0))
  # u in (0, total]: the first slot whose cdf reaches u; an empty slot adds
  # nothing to the cdf, so it is never the first to reach any u > 0.
  u = (1.0 - jax.random.uniform(key, (n,))) * cdf[-1]
  return jnp.searchsorted(cdf, u, side="left").astype(jnp.int32)


# Draw policies: which pool slots (and data rows) a training batch or a
# sampler's chains take; DRAW_POLICIES names them.
#   recency          pool_sample: slots weighted recency_decay**age (IGM,
#                    WINN textures; 1.0: uniform)
#   data_or_pool     draw_data_or_pool: uniform over the data and the filled
#                    slots together (ICL's reclassification batches)
#   class_paired     draw_class_paired: for each labelled positive a slot
#                    made for its class, in a uniformly drawn past round
#                    (the WINN classifier; class-major pools)
#   persistent       draw_persistent + write_back: persistent chains (JEM's
#                    replay buffer, STIC): a full pool, uniform slots, each
#                    chain restarted from p0 with probability p, and the
#                    chains' new states written back over their slots


def draw_data_or_pool(pool, key, n, num_data):
  """n draws uniform over num_data data rows ∪ the pool's filled slots
  (fixed shapes whatever the pool holds): (data row, slot, is_negative);
  a draw's unused index is clipped into range."""
  filled = (pool.rounds >= 0).sum()
  index = jax.random.randint(key, (n,), 0, num_data + filled)
  is_negative = index >= num_data
  data_index = jnp.minimum(index, num_data - 1)
  slot = jnp.clip(index - num_data, 0, pool.images.shape[0] - 1)
  return data_index, slot, is_negative


def draw_class_paired(pool, key, labels, per_round, per_class):
  """A slot per label, made for that class: rounds write class-major blocks
  of `per_round` slots (`per_class` per class) from slot 0 on, so the
  filled slots are the first `blocks` blocks. Returns (slots, whether the
  pool holds any block)."""
  n = labels.shape[0]
  blocks = (pool.rounds >= 0).sum() // per_round
  k_block, k_member = jax.random.split(key)
  block = jax.random.randint(k_block, (n,), 0, jnp.maximum(blocks, 1))
  member = jax.random.randint(k_member, (n,), 0, per_class)
  return block * per_round + labels * per_class + member, blocks > 0


def draw_persistent(pool, key, n, restart_probability):
  """n uniform slots of a full pool (one filled with p0's samples before
  the first draw, as JEM's buffer is) and which of them restart from p0
  (each with `restart_probability`; every one while the pool is empty).
  n=None takes every slot once, in order (STIC evolves all its chains
  after each pass). Returns (slots, restart mask)."""
  k_slot, k_restart = jax.random.split(key)
  capacity = pool.images.shape[0]
  if n is None:
    slots, n = jnp.arange(capacity), capacity
  else:
    slots = jax.random.randint(k_slot, (n,), 0, capacity)
  empty = ~jnp.any(pool.rounds >= 0)
  restart = (jax.random.uniform(k_restart, (n,)) < restart_probability) | empty
  return slots.astype(jnp.int32), restart


def write_back(pool, slots, images, round_index):
  """The pool with `images` written over `slots` (persistent chains' new
  states), tagged `round_index`. A slot drawn twice keeps one of its two
  chains (XLA does not say which), as JEM's `buffer[idx] = x` does."""
  tags = jnp.full(slots.shape, round_index, jnp.int32)
  return NegativePool(
      pool.images.at[slots].set(images.astype(pool.images.dtype)),
      pool.rounds.at[slots].set(tags),
      pool.cursor)


# name -> the draw (the members that use each: above).
DRAW_POLICIES = {"recency": pool_sample,
                 "data_or_pool": draw_data_or_pool,
                 "class_paired": draw_class_paired,
                 "persistent": draw_persistent}
