"""introjax.aot: a member compiled for a TPU topology on this CPU, from
abstract arguments (no data, no weights), by libtpu's compiler.

One child process (JAX_PLATFORMS=cpu, as the check runs) compiles the tiny
IGM-on-faces config, whose classification step takes both a split pool
and a split dataset, for v5e:2x2 and its pool update for v5e:1x1 too; the
command line is run once more with a pool far too large for the chip.
"""
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, subprocess_env

needs_libtpu = pytest.mark.skipif(
    importlib.util.find_spec("libtpu") is None,
    reason="libtpu (the TPU compiler these tests drive) is not installed; "
    "pip install -e '.[aot]'")

CONFIG = "configs/igm_celeba.py:tiny"

_SCRIPT = f"""
import json, sys
from introjax import aot, compiled, config_utils
from introjax.members import MEMBERS
from introjax import parallel
config = config_utils.load_config_file({str(REPO / "configs")!r} + "/igm_celeba.py:tiny")
# A pool of 8192 16×16 faces (2048 slots a device of 4) outweighs the
# round's batch, which TPU layouts pad (a minor axis of 8 is stored as 128).
config.negatives.per_round, config.pool.rounds = 32, 256
out = {{}}
for topology, only in (("v5e:2x2", ["classification", "pool update"]),
                       ("v5e:1x1", ["pool update"])):
  report = aot.check(config, topology, only=only)
  out[topology] = report.as_json()
# What a 4-device run holds of the pool and the dataset, by shapes alone.
name, devices = aot.topology_devices("v5e:2x2")
trainer = MEMBERS[config.trainer].trainer(
    config, parallel.make_mesh(devices), abstract=True)
step = trainer.compiled_steps()[0]
out["watch"] = {{k: [list(a.shape), compiled.device_bytes(a), a.dtype.itemsize]
                for k, a in step.watch.items()}}
print("JSON" + json.dumps(out))
"""


def _child(args, timeout=240):
  return subprocess.run(
      [sys.executable, *args], cwd=REPO, capture_output=True, text=True,
      timeout=timeout, env=subprocess_env(JAX_PLATFORMS="cpu"))


@pytest.fixture(scope="module")
def reports():
  result = _child(["-c", _SCRIPT])
  assert result.returncode == 0, result.stderr[-3000:]
  line = next(l for l in result.stdout.splitlines() if l.startswith("JSON"))
  return json.loads(line[4:])


def _step(report, name):
  return next(s for s in report["steps"] if s["name"] == name)


@needs_libtpu
def test_the_pool_and_dataset_split_over_the_devices(reports):
  four, one = reports["v5e:2x2"], reports["v5e:1x1"]
  assert four["devices"] == 4 and one["devices"] == 1
  assert four["chip"]["name"] == "v5e"
  # XLA's own argument bytes of the pool update (the pool and the round's
  # negatives, both split): a quarter per device on 4 devices.
  add_4, add_1 = _step(four, "pool update"), _step(one, "pool update")
  ratio = add_1["argument_bytes"] / add_4["argument_bytes"]
  assert 3.9 < ratio <= 4.0, (add_1["argument_bytes"], add_4["argument_bytes"])
  # The 4-device classification step takes a quarter of the pool and of the
  # dataset per device.
  shape, per_device, itemsize = reports["watch"]["pool"]
  whole = itemsize * int(np.prod(shape))
  assert per_device == whole // 4
  shape, data_per_device, _ = reports["watch"]["dataset"]
  assert data_per_device * 4 >= shape[0] * shape[1] * shape[2] * shape[3]
  fit = _step(four, "classification")
  assert fit["watched_bytes"] == {"pool": per_device,
                                  "dataset": data_per_device}


@needs_libtpu
def test_no_collective_gathers_the_pool_or_the_dataset(reports):
  fit = _step(reports["v5e:2x2"], "classification")
  assert fit["gathered"] == []
  pool_shape = reports["watch"]["pool"][0]
  whole = 4 * int(np.prod(pool_shape))
  # The step does move data (the batch is summed over devices), but no
  # collective is as large as the pool.
  assert fit["collectives"], "a split batch needs a collective"
  assert max(c["max"] for c in fit["collectives"].values()) < whole
  assert fit["flops"] > 0 and fit["bytes_accessed"] > 0
  assert fit["iterations"] == 30   # igm_celeba.py:tiny's train.max_steps


@needs_libtpu
def test_a_pool_too_large_for_the_chip_is_one_sentence():
  # 20M rounds × 8 negatives of 16×16 grey float32: 38 GiB per device (or
  # more, as laid out on the chip).
  result = _child(["-m", "introjax.aot", f"--config={CONFIG}",
                   "--topology=v5litepod-4", "--steps=pool update",
                   "--config.pool.rounds=20000000"])
  assert result.returncode == 1, result.stderr[-3000:]
  verdict = result.stderr.strip().splitlines()[-1]
  assert verdict.count(". ") == 0 and verdict.endswith(".")
  assert "does not fit: its pool update step needs" in verdict
  assert "GiB per device against the chip's 16.00 GiB of HBM" in verdict
  assert "pool.rounds" in verdict
  assert "| pool update |" in result.stdout


# Without libtpu too: every member's compiled_steps() lowers (traces) over
# this machine's CPU mesh, so they stay in step with their trainers.

@pytest.mark.parametrize("spec, overrides", [
    ("igm_texture.py:tiny", {}),
    ("icl_digits.py:tiny", {"icl.variants": ("baseline", "icl", "winn")}),
    ("stic_digits.py:tiny", {}),
    ("introvae_faces.py:tiny", {}),
])
def test_every_members_steps_lower_from_abstract_arguments(spec, overrides):
  from conftest import load_config
  from introjax import members, parallel
  config = load_config(spec)
  for key, value in overrides.items():
    section, field = key.split(".")
    config[section][field] = value
  mesh = parallel.make_mesh()
  member = members.MEMBERS[config.trainer]
  abstract = member.trainer(config, mesh, abstract=True)
  steps = abstract.compiled_steps()
  assert steps and len({s.name for s in steps}) == len(steps)
  for step in steps:
    step.fn.lower(*step.args, **step.kwargs)
  if config.trainer in ("icl", "stic", "introvae"):
    # The stand-in data has the real data's shapes, types and placement
    # (the class table's width assumes balanced classes: not compared).
    real = member.trainer(config, mesh)
    for name in ("images", "labels", "test_images"):
      if hasattr(real, name) and getattr(real, name) is not None:
        a, r = getattr(abstract, name), getattr(real, name)
        assert (a.shape, a.dtype, a.sharding.spec) == (
            r.shape, r.dtype, r.sharding.spec), name


def test_the_time_estimate_never_beats_the_chips_peaks():
  """XLA's own estimate stands only where the datasheet allows it: one
  below FLOPs / peak (v5e gave 0.017 ms for 93 GFLOP) is replaced by the
  larger of the FLOP and byte bounds."""
  from types import SimpleNamespace
  from introjax import aot
  v5e = aot.CHIPS["TPU v5 lite"]       # 197 TFLOP/s, 819 GB/s
  step = lambda xla, flops, nbytes: SimpleNamespace(
      xla_seconds=xla, flops=flops, bytes_accessed=nbytes)
  assert aot.estimated_seconds(step(1.7e-5, 93e9, 1e8), v5e) == (
      pytest.approx(93e9 / 197e12), "peak")
  assert aot.estimated_seconds(step(None, 1e9, 8.19e9), v5e) == (
      pytest.approx(0.01), "peak")
  assert aot.estimated_seconds(step(2e-3, 93e9, 1e8), v5e) == (2e-3, "XLA")


def test_the_library_imports_beside_the_other_commands():
  """aot registers its command-line flags only when it runs, so importing
  it next to bench (whose --json it would clash with) works in one process,
  as it must in a test worker or a notebook."""
  subprocess.run([sys.executable, "-c",
                  "import introjax.bench, introjax.aot, introjax.evaluate"],
                 cwd=REPO, check=True, timeout=120,
                 env=subprocess_env(JAX_PLATFORMS="cpu"))
