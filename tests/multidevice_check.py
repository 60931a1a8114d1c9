"""Every 8-device check, in one process; run with
XLA_FLAGS=--xla_force_host_platform_device_count=8 (tests/test_multidevice.py
does):

    python tests/multidevice_check.py [CHECK ...]   # default: all of them

Prints `ok <check>` or `FAIL <check>: <why>` for each (tracebacks go to
stderr) and exits 1 when any failed. The checks live here (texture trainers,
conv2d inside shard_map), in tests/pool_sharding_check.py (the pool split and
never gathered) and in tests/icl_multidevice_check.py (ICL rounds and the
split evaluation).

The texture trainers' rounds are compared from the same starting state: the
8-device run goes on uninterrupted, and each of its rounds is repeated on one
device from the state it started from. (Over several rounds the two drift
apart a little: Adam on the input turns float rounding in near-zero
gradients into steps of ±learning_rate, so chained rounds are not a fair test
of sharding.) A run stopped after round 1 and resumed then equals the
uninterrupted 8-device run to float32 rounding.
"""
import json
import os
import sys
import tempfile
import time
import traceback

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import load_config  # pylint: disable=wrong-import-position
import icl_multidevice_check  # pylint: disable=wrong-import-position
from introjax import parallel  # pylint: disable=wrong-import-position
from introjax.models import conv  # pylint: disable=wrong-import-position
from introjax.training import harness  # pylint: disable=wrong-import-position
from introjax.training.igm import TextureIGM  # pylint: disable=wrong-import-position
from introjax.training.winn import TextureWINN  # pylint: disable=wrong-import-position
import pool_sharding_check  # pylint: disable=wrong-import-position


def close(a, b, what, atol, rtol=1e-4):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(
      x, y, rtol=rtol, atol=atol, err_msg=what), jax.device_get(a),
               jax.device_get(b))


def same(a, b, what):
  """Equal to float32 rounding: what one program gives twice."""
  close(a, b, what, atol=1e-6, rtol=1e-6)


def moved_to(model, state):
  """`state` placed with `model`'s shardings (on its mesh)."""
  targets = model.restore_targets(model.checkpoint_meta(state))
  placed = jax.tree.map(lambda x, t: jax.device_put(np.asarray(x), t.sharding),
                        model.checkpoint_items(state), targets)
  return model.from_items(placed)


def logged_metrics(workdir):
  """metrics.jsonl of a workdir: {round: metrics}, timings left out."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return {row.pop("round"): {k: v for k, v in row.items()
                             if k != "round_seconds"} for row in rows}


def assert_same_metrics(logged, metrics, what):
  assert set(logged) == set(metrics), (what, sorted(logged), sorted(metrics))
  for key, value in metrics.items():
    np.testing.assert_allclose(logged[key], np.asarray(value), rtol=1e-6,
                               atol=1e-7, err_msg=f"{what}: {key}")


def resumed_run(model, config, rounds):
  """`model` trained by the harness for one round, stopped, and resumed to
  `rounds`: the final state and the metrics it logged."""
  with tempfile.TemporaryDirectory() as workdir:
    config.rounds = 1
    harness.run_rounds(model, config, workdir)
    config.rounds = rounds
    state = harness.run_rounds(model, config, workdir)
    return state, logged_metrics(workdir)


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

  state = eight.init_state()
  close(one.init_state(), state, "initial state", 0)
  metrics = {}
  for t in (1, 2):
    # run_round consumes (donates) its state: copy it for the other mesh.
    a_start = moved_to(one, jax.device_get(state))
    b, metrics[t] = eight.run_round(state, t)
    a, metrics_a = one.run_round(a_start, t)
    assert len(b.negatives.sharding.device_set) == 8
    assert len(b.pool.images.sharding.device_set) == 8
    assert metrics_a["synthesis_steps_max"] == metrics[t]["synthesis_steps_max"], (t, metrics_a, metrics[t])
    close(a.critic, b.critic, f"round {t} critic", 1e-3)
    close(a.negatives, b.negatives, f"round {t} negatives", 1e-2)
    state = b
  final = jax.device_get(state)

  x8, _ = eight.generate(state.cascade, 8, 32, jax.random.PRNGKey(0))
  x1, _ = one.generate(moved_to(one, final).cascade, 8, 32,
                       jax.random.PRNGKey(0))
  close(x1, x8, "generated textures", 1e-2)
  # Three samples on eight devices run as eight split chains, the first
  # three of them: one a device, not three replicated on each.
  x3, stats3 = eight.generate(state.cascade, 3, 32, jax.random.PRNGKey(0))
  assert x3.shape[0] == 3 and stats3.steps.shape[-1] == 3
  close(x1[:3], x3, "three generated textures", 1e-2)

  # The whole loop, checkpoints and resume included, runs sharded and
  # picks up where it stopped: the same arrays and metrics as the run above.
  resumed, logged = resumed_run(eight, config, 2)
  assert len(resumed.pool.images.sharding.device_set) == 8
  same(eight.checkpoint_items(resumed), eight.checkpoint_items(final),
       "resumed run")
  for t in (1, 2):
    assert_same_metrics(logged[t], metrics[t], f"resumed run round {t}")
  close(a.critic, resumed.critic, "resumed run against 1 device", 1e-3)
  print(f"{trainer_cls.__name__}: 1-device and 8-device results match")


def check_conv_gradients(kernel_shape, devices):
  """conv2d's custom VJP inside `shard_map`, a replicated kernel applied to
  a batch split over 8 devices: the kernel's gradient is summed over the
  devices (and the input's kept per device), as XLA's convolution gives."""
  jax.config.update("jax_enable_x64", True)
  min_tiles, conv._WINOGRAD_MIN_TILES = conv._WINOGRAD_MIN_TILES, 1  # pylint: disable=protected-access
  min_work, conv._WINOGRAD_MIN_MULTIPLY_ADDS = conv._WINOGRAD_MIN_MULTIPLY_ADDS, 1  # pylint: disable=protected-access
  try:
    mesh = jax.sharding.Mesh(np.asarray(devices), ("data",))
    spec = jax.sharding.PartitionSpec
    x = jax.random.normal(jax.random.PRNGKey(0),
                          (len(devices) * 2, 8, 8, kernel_shape[2]),
                          jnp.float64)
    w = jax.random.normal(jax.random.PRNGKey(1), kernel_shape, jnp.float64)
    assert conv._uses_winograd(x[:2], w, 2, "SAME") == (kernel_shape[0] == 5)  # pylint: disable=protected-access

    def grads(convolution):
      def loss(w, x):
        return lax.psum(jnp.sum(jnp.tanh(convolution(x, w, 2, "SAME"))),
                        "data")
      return jax.jit(jax.shard_map(
          jax.grad(loss, argnums=(0, 1)), mesh=mesh,
          in_specs=(spec(), spec("data")), out_specs=(spec(), spec("data"))))(
              jax.device_put(w, jax.NamedSharding(mesh, spec())),
              jax.device_put(x, jax.NamedSharding(mesh, spec("data"))))

    got, want = grads(conv.conv2d), grads(
        lambda x, w, stride, padding: lax.conv_general_dilated(
            x, w, (stride, stride), padding,
            dimension_numbers=("NHWC", "HWIO", "NHWC")))
    for g, v in zip(got, want):
      np.testing.assert_allclose(g, v, rtol=1e-10, atol=1e-10)
  finally:
    conv._WINOGRAD_MIN_TILES = min_tiles  # pylint: disable=protected-access
    conv._WINOGRAD_MIN_MULTIPLY_ADDS = min_work  # pylint: disable=protected-access
    jax.config.update("jax_enable_x64", False)


def check_introvae_evaluation_is_split(devices):
  """IntroVAE's encodes and decodes run in eval batches split over the 8
  devices (a batch of 5 rounds up to 8) and equal one device's."""
  from introjax.training.introvae import IntroVAETrainer  # pylint: disable=g-import-not-at-top
  config = load_config("introvae_faces.py:tiny")
  config.eval.batch_size = 5
  shape = (config.data.image_size, config.data.image_size, 1)
  one, eight = (IntroVAETrainer(config, parallel.make_mesh(d),
                                with_data=False, image_shape=shape)
                for d in (devices[:1], devices))
  images = np.random.default_rng(0).uniform(-1, 1, (13, *shape)).astype(
      np.float32)
  want = one.reconstruct(one.init_state(), images)
  got = eight.reconstruct(eight.init_state(), images)
  assert got.shape == images.shape
  close(got, want, "8-device reconstructions against 1 device's", 1e-5)
  seen = []

  def doubled(batch):
    seen.append(batch.addressable_shards[0].data.shape[0])
    return batch * 2

  out = parallel.map_batches(doubled, images, 5, eight.mesh)
  np.testing.assert_array_equal(out, images * 2)
  assert seen == [1, 1], seen   # 13 rows: two batches of 8, 1 a device
  print("IntroVAE evaluation split over the devices matches")


CHECKS = {
    "conv_direct": lambda d: check_conv_gradients((3, 3, 3, 5), d),
    "conv_winograd": lambda d: check_conv_gradients((5, 5, 16, 5), d),
    **pool_sharding_check.CHECKS,
    "texture_igm": lambda d: compare(TextureIGM, "igm_texture.py:tiny", d),
    "texture_winn": lambda d: compare(TextureWINN, "winn_texture.py:tiny", d),
    **icl_multidevice_check.CHECKS,
    "introvae_evaluation": check_introvae_evaluation_is_split,
}


def run(names):
  """Runs the checks `names`, each whatever the others did; 0 if all
  passed."""
  devices = jax.devices()
  print("devices:", len(devices), flush=True)
  if len(devices) != 8:
    print("set XLA_FLAGS=--xla_force_host_platform_device_count=8")
    return 2
  failed = 0
  for name in names:
    began = time.perf_counter()
    try:
      CHECKS[name](devices)
    except Exception as e:  # pylint: disable=broad-except
      print(f"--- {name} ---", file=sys.stderr)
      traceback.print_exc()
      why = (str(e).strip().splitlines() or [""])[0]
      print(f"FAIL {name}: {type(e).__name__}: {why}", flush=True)
      failed += 1
    else:
      print(f"ok {name} ({time.perf_counter() - began:.0f} s)", flush=True)
  return 1 if failed else 0


def main(argv):
  unknown = [n for n in argv if n not in CHECKS]
  if unknown:
    sys.exit(f"unknown checks {unknown}; the checks are {', '.join(CHECKS)}")
  return run(argv or list(CHECKS))


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
