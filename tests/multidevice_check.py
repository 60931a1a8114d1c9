"""Compares IGM and WINN texture trainers on a 1-device mesh with an
8-device mesh; run with XLA_FLAGS=--xla_force_host_platform_device_count=8.

Each round is compared from the same starting state. (Over several rounds
the two drift apart a little: Adam on the input turns float rounding in
near-zero gradients into steps of ±learning_rate, so chained rounds are not
a fair test of sharding.)
"""
import sys
import tempfile

import jax
import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from conftest import load_config  # pylint: disable=wrong-import-position
from introjax import parallel  # pylint: disable=wrong-import-position
from introjax.training import harness  # pylint: disable=wrong-import-position
from introjax.training.igm import TextureIGM  # pylint: disable=wrong-import-position
from introjax.training.winn import TextureWINN  # pylint: disable=wrong-import-position


def close(a, b, what, atol):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(
      x, y, rtol=1e-4, atol=atol, err_msg=what), jax.device_get(a),
               jax.device_get(b))


def moved_to(model, state):
  """`state` placed with `model`'s shardings (on its mesh)."""
  targets = model.restore_targets(model.checkpoint_meta(state))
  placed = jax.tree.map(lambda x, t: jax.device_put(np.asarray(x), t.sharding),
                        model.checkpoint_items(state), targets)
  return model.from_items(placed)


def compare(trainer_cls, spec, devices):
  """Rounds, generation and a resumed run of `trainer_cls` on the tiny
  config `spec`: 8 devices give what 1 device gives."""
  config = load_config(spec)
  # The tiny configs' SGD (lr 0.01) is chaotic on some draw sequences: the
  # sharded sums' 1e-7 rounding grew to 1e-1 within 30 steps. A gentler rate
  # keeps the comparison about sharding, not about the trajectory's luck.
  config.train.learning_rate = min(config.train.learning_rate, 2e-3)
  one = trainer_cls(config, parallel.make_mesh(devices[:1]))
  eight = trainer_cls(config, parallel.make_mesh(devices))

  state = one.init_state()
  close(state, eight.init_state(), "initial state", 0)
  for t in (1, 2):
    # run_round consumes (donates) its state: copy it for the other mesh.
    b_start = moved_to(eight, jax.device_get(state))
    a, metrics_a = one.run_round(state, t)
    b, metrics_b = eight.run_round(b_start, t)
    assert len(b.negatives.sharding.device_set) == 8
    assert len(b.pool.images.sharding.device_set) == 8
    assert metrics_a["synthesis_steps_max"] == metrics_b["synthesis_steps_max"], (t, metrics_a, metrics_b)
    close(a.critic, b.critic, f"round {t} critic", 1e-3)
    close(a.negatives, b.negatives, f"round {t} negatives", 1e-2)
    state = a

  x1, _ = one.generate(state.cascade, 8, 32, jax.random.PRNGKey(0))
  x8, _ = eight.generate(moved_to(eight, jax.device_get(state)).cascade, 8, 32,
                         jax.random.PRNGKey(0))
  close(x1, x8, "generated textures", 1e-2)

  # The whole loop, checkpoints and resume included, runs sharded.
  with tempfile.TemporaryDirectory() as workdir:
    config.rounds = 1
    harness.run_rounds(eight, config, workdir)
    config.rounds = 2
    resumed = harness.run_rounds(eight, config, workdir)
  assert len(resumed.pool.images.sharding.device_set) == 8
  print(f"{trainer_cls.__name__}: 1-device and 8-device results match")


def main():
  devices = jax.devices()
  print("devices:", len(devices))
  assert len(devices) == 8, "set XLA_FLAGS=--xla_force_host_platform_device_count=8"
  compare(TextureIGM, "igm_texture.py:tiny", devices)
  compare(TextureWINN, "winn_texture.py:tiny", devices)


if __name__ == "__main__":
  main()
