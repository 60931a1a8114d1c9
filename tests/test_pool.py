import jax
import jax.numpy as jnp
import numpy as np
import pytest

from introjax.data import pool as pool_lib
from introjax.errors import ConfigError


def test_ring_buffer_overwrites_oldest():
  pool = pool_lib.empty_pool(4, (2, 2, 1))
  for r in (1, 2, 3):
    pool = pool_lib.pool_add(pool, jnp.full((2, 2, 2, 1), float(r)), r)
  np.testing.assert_array_equal(pool.rounds, [3, 3, 2, 2])
  np.testing.assert_array_equal(pool.images[:, 0, 0, 0], [3, 3, 2, 2])
  assert int(pool.cursor) == 2  # the next write replaces round 2


def test_capacity_must_hold_whole_rounds():
  with pytest.raises(ConfigError, match="multiple"):
    pool_lib.pool_add(pool_lib.empty_pool(5, (1,)), jnp.zeros((2, 1)), 0)


def test_sampling_favours_recent_rounds_and_skips_empty_slots():
  pool = pool_lib.empty_pool(8, (1,))
  for r in (0, 1, 2):  # 6 of 8 slots filled
    pool = pool_lib.pool_add(pool, jnp.full((2, 1), float(r)), r)
  slots = pool_lib.pool_sample(pool, jax.random.PRNGKey(0), 30000, 3, 0.5)
  rounds = np.asarray(pool.rounds)[np.asarray(slots)]
  assert (rounds >= 0).all()
  freq = np.bincount(rounds, minlength=3) / len(rounds)
  expected = np.array([0.125, 0.25, 0.5]) / 0.875  # 0.5**age, normalised
  np.testing.assert_allclose(freq, expected, atol=0.015)


def test_sampling_never_draws_empty_slots_anywhere_and_empty_pool_gives_0():
  pool = pool_lib.empty_pool(6, (1,))
  pool = pool.replace(rounds=jnp.array([-1, -1, 4, -1, 5, -1], jnp.int32))
  slots = np.asarray(pool_lib.pool_sample(pool, jax.random.PRNGKey(1), 20000,
                                          5, 0.25))
  assert set(np.unique(slots)) == {2, 4}
  np.testing.assert_allclose(np.mean(slots == 2), 0.25 / 1.25, atol=0.015)
  empty = pool_lib.empty_pool(6, (1,))
  assert (np.asarray(pool_lib.pool_sample(empty, jax.random.PRNGKey(0), 5, 1,
                                          0.5)) == 0).all()


def test_persistent_chains_restart_with_probability_p_and_write_back():
  pool = pool_lib.empty_pool(64, (2, 2, 1))
  # An empty pool: every chain starts from p0.
  slots, restart = pool_lib.draw_persistent(pool, jax.random.PRNGKey(0),
                                            16, 0.05)
  assert bool(restart.all())
  # Filled with p0's samples (the pool's first state), then drawn from.
  full = pool_lib.write_back(pool, jnp.arange(64),
                             jnp.arange(64.0).reshape(64, 1, 1, 1)
                             * jnp.ones((64, 2, 2, 1)), 0)
  assert bool((full.rounds == 0).all()) and int(full.cursor) == 0
  np.testing.assert_array_equal(full.images[:, 0, 0, 0], np.arange(64.0))
  slots, restart = pool_lib.draw_persistent(full, jax.random.PRNGKey(1),
                                            20000, 0.05)
  assert abs(float(restart.mean()) - 0.05) < 0.006     # ±4σ of 20000 draws
  counts = np.bincount(np.asarray(slots), minlength=64)
  assert counts.min() > 200 and counts.max() < 430     # uniform: 312.5 each
  # The chains' new states land in their slots; the others keep theirs.
  chosen = jnp.int32([3, 10, 63])
  new = jnp.full((3, 2, 2, 1), -1.0)
  after = pool_lib.write_back(full, chosen, new, 7)
  changed = np.asarray(after.images[:, 0, 0, 0]) == -1.0
  np.testing.assert_array_equal(np.flatnonzero(changed), [3, 10, 63])
  np.testing.assert_array_equal(np.flatnonzero(np.asarray(after.rounds) == 7),
                                [3, 10, 63])
  assert set(pool_lib.DRAW_POLICIES) == {"recency", "data_or_pool",
                                         "class_paired", "persistent"}
