"""The negative pool at scale, on 8 simulated devices: split over the data
axis, written in place per device, and never gathered to one device. The
checks run in tests/multidevice_check.py's 8-device process (or alone with
XLA_FLAGS=--xla_force_host_platform_device_count=8).

A small analogue of a 100,000-canvas pool: if no compiled collective of the
pool's writes or of the steps that sample it moves as many elements as the
pool holds, the traffic is the batch's, whatever the pool's size.
"""
import os
import re
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import load_config  # pylint: disable=wrong-import-position
from introjax import parallel  # pylint: disable=wrong-import-position
from introjax.data import datasets  # pylint: disable=wrong-import-position
from introjax.data import pool as pool_lib  # pylint: disable=wrong-import-position
from introjax.training.icl import IntrospectiveClassifier  # pylint: disable=wrong-import-position
from introjax.training.igm import TextureIGM  # pylint: disable=wrong-import-position
from introjax.training.images import ImageIGM  # pylint: disable=wrong-import-position

_COLLECTIVE = re.compile(r"= (\(.*?\)|\S+) (all-gather|all-reduce|"
                         r"reduce-scatter|all-to-all|collective-permute)"
                         r"(-start)?\(")


def largest_collective(compiled_text):
  """Elements moved by the largest collective of a compiled program."""
  largest = 0
  for line in compiled_text.splitlines():
    m = _COLLECTIVE.search(line)
    if not m:
      continue
    for dims in re.findall(r"\[([\d,]*)\]", m.group(1)):
      size = int(np.prod([int(d) for d in dims.split(",") if d]))
      largest = max(largest, size)
  return largest


def check_writes_match_a_ring(devices):
  """Batches of 8 into 24 slots on 8 devices (3 each): writes straddle
  devices; the result equals the single-array ring."""
  mesh = parallel.make_mesh(devices)
  add = jax.jit(lambda p, b, r: pool_lib.pool_add(p, b, r, mesh=mesh))
  batch_sharding = parallel.batch_sharding(mesh)
  pool = jax.device_put(pool_lib.empty_pool(24, (2, 2, 1)),
                        pool_lib.NegativePool(batch_sharding, batch_sharding,
                                              parallel.replicated(mesh)))
  expected_images = np.zeros((24, 2, 2, 1), np.float32)
  expected_rounds = np.full(24, -1)
  for r in range(1, 6):
    batch = np.arange(8, dtype=np.float32)[:, None, None, None] + 100 * r
    batch = np.broadcast_to(batch, (8, 2, 2, 1))
    start = ((r - 1) * 8) % 24
    expected_images[start:start + 8] = batch
    expected_rounds[start:start + 8] = r
    pool = add(pool, jax.device_put(batch, batch_sharding), r)
    assert len(pool.images.sharding.device_set) == 8
    np.testing.assert_array_equal(pool.images, expected_images)
    np.testing.assert_array_equal(pool.rounds, expected_rounds)
    assert int(pool.cursor) == (r * 8) % 24


def check_pool_never_gathered(devices):
  """The IGM pool (128 canvases, 16 per device) is split, and neither its
  writes nor the IGM and ICL classification steps that sample it run a
  collective moving half as many elements as the pool holds."""
  mesh = parallel.make_mesh(devices)
  config = load_config("igm_texture.py:tiny")
  config.pool.rounds = 16          # 128 canvases: 16 per device
  igm = TextureIGM(config, mesh)
  state = igm.init_state()
  pool_elements = state.pool.images.size
  shard = state.pool.images.addressable_shards[0].data
  assert shard.shape[0] == state.pool.images.shape[0] // 8
  key = jax.random.PRNGKey(0)
  programs = {
      "igm pool_add": igm._add.lower(state.pool, state.negatives, 1),
      "igm classification step": igm._train_critic.lower(
          igm.positive, state.critic, state.opt_state, state.pool, key, 1)}
  config = load_config("icl_digits.py:tiny")
  config.pool.rounds = 16
  icl = IntrospectiveClassifier(config, mesh)
  s = icl.init_state()["icl"]
  programs["icl classification step"] = icl._train.lower(
      s.params, s.opt_state, s.pool, (icl.images, icl.labels), key, 2,
      icl.decay_step("icl"))
  for name, lowered in programs.items():
    moved = largest_collective(lowered.compile().as_text())
    print(f"{name}: largest collective {moved} elements, pool "
          f"{pool_elements if 'igm' in name else s.pool.images.size}")
    assert moved < (pool_elements if "igm" in name else s.pool.images.size) // 2, name
  print("pool sharded, never gathered")


def check_image_positives_are_split(devices):
  """A dataset of images (the positives of IGM/WINN on faces, SVHN, CIFAR)
  is split over the devices like the pool, and a classification step moves
  a batch of it, not all of it."""
  mesh = parallel.make_mesh(devices)
  key = jax.random.PRNGKey(0)
  config = load_config("igm_celeba.py:tiny")
  config.data.max_images = 60          # 64 rows: 4 rows of padding
  faces = ImageIGM(config, mesh)
  assert faces.positive.shape[0] == 64 and faces.positives.count == 60
  assert faces.positive.addressable_shards[0].data.shape[0] == 8
  state = faces.init_state()
  dataset = faces.positive.size
  moved = largest_collective(faces._train_critic.lower(
      faces.positive, state.critic, state.opt_state, state.pool, key,
      1).compile().as_text())
  print(f"image classification step: largest collective {moved} elements, "
        f"dataset {dataset}")
  assert moved < dataset // 2
  # No padding row is ever drawn.
  drawn = np.asarray(faces.positive_patches(key, 4096, 16))
  padding = datasets.to_unit_range(np.zeros((16, 16, 1), np.uint8))
  assert not np.any(np.all(np.abs(drawn - padding) < 1e-6, axis=(1, 2, 3)))
  print("image positives sharded, never gathered")


CHECKS = {"pool_ring": check_writes_match_a_ring,
          "pool_never_gathered": check_pool_never_gathered,
          "image_positives": check_image_positives_are_split}

if __name__ == "__main__":
  import multidevice_check  # pylint: disable=g-import-not-at-top
  sys.exit(multidevice_check.run(list(CHECKS)))
