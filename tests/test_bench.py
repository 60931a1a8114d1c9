"""The benchmark command: its table and JSON for every workload, batch list
and precision on tiny sizes, the pairing with the optional PyTorch reference,
and the FLOP count behind the FLOP/s column (speed itself is never asserted
in tests). Most checks call `bench.run` in this process; one test runs the
real command line."""
import dataclasses
import json
import subprocess
import sys

import jax
import pytest
from absl import app

from conftest import REPO, subprocess_env
from introjax import bench

_COLUMNS = ("throughput", "unit", "ms/step", "compile s", "peak mem",
            "GFLOP/s", "% peak", "jax/torch")
_TINY = dict(steps=2, repeats=1, features=(4, 8))
# Every field of a row: the spec's, the measured and the derived ones.
_ROW_KEYS = {f.name for f in dataclasses.fields(bench.Spec)} | {
    "backend", "device", "platform", "seconds", "compile_seconds",
    "peak_memory_bytes", "memory_source", "xla_memory_bytes", "unit",
    "throughput", "ms_per_step", "flops_per_run", "flops_per_second",
    "peak_flops", "fraction_of_peak", "jax_over_torch"}
_UNITS = {"synthesis": "sample-steps/s", "cascade": "sample-steps/s",
          "classifier": "images/s", "class_synthesis": "sample-steps/s",
          "introvae": "images/s"}


def _table_lines(stdout):
  """The printed table: its header and the rows after it."""
  lines = stdout.splitlines()
  start = next(i for i, line in enumerate(lines)
               if line.startswith("workload"))
  return lines[start], lines[start + 1:]


def _check_printed(stdout, rows):
  """The table printed as rows finish is the table of the returned rows,
  with every column, aligned under its header."""
  header, printed = _table_lines(stdout)
  assert all(column in header for column in _COLUMNS)
  assert [header] + printed == bench.format_table(rows).splitlines()
  assert {len(line) for line in printed} == {len(header)}


def _check_jax_row(row):
  """Every column of a measured JAX row on this machine's first device."""
  device = jax.devices()[0]
  assert set(row) == _ROW_KEYS
  assert row["backend"] == "jax" and row["platform"] == device.platform
  assert row["device"] == device.device_kind
  critics = row["critics"]
  assert critics == (2 if row["workload"] == "cascade" else 1)
  assert row["unit"] == _UNITS[row["workload"]]
  assert row["seconds"] > 0 and row["compile_seconds"] > 0
  assert row["throughput"] == pytest.approx(
      row["batch"] * row["steps"] * critics / row["seconds"])
  assert row["ms_per_step"] == pytest.approx(
      1e3 * row["seconds"] / (row["steps"] * critics))
  assert row["flops_per_run"] > 0
  assert row["flops_per_second"] == pytest.approx(
      row["flops_per_run"] / row["seconds"])
  if row["platform"] == "cpu":
    # No peak FLOP/s to compare with; memory from XLA's buffer assignment
    # (the CPU reports no device peak).
    assert row["peak_flops"] is None and row["fraction_of_peak"] is None
    assert row["memory_source"] == "xla"
    assert row["peak_memory_bytes"] == row["xla_memory_bytes"] > 0
  assert row["jax_over_torch"] is None


# The table and the pairing, with known numbers --------------------------------


def _fake_jax(spec, repeats):
  """A measured JAX row: 0.5 s per run, 1 MFLOP per unit of work."""
  del repeats
  return dict(backend="jax", device="cpu", platform="cpu", seconds=0.5,
              compile_seconds=1.5, peak_memory_bytes=3 * 2**20,
              memory_source="xla", xla_memory_bytes=3 * 2**20,
              flops_per_run=1e6 * spec.work)


def _fake_torch(spec, repeats):
  """A measured PyTorch row of the same work, four times slower."""
  del spec, repeats
  return dict(backend="torch-eager", device="cpu", platform="cpu",
              seconds=2.0, compile_seconds=None, peak_memory_bytes=None,
              memory_source=None)


@pytest.fixture
def fake_backends(monkeypatch):
  """Both backends stubbed, PyTorch importable or not."""
  monkeypatch.setattr(bench, "bench_jax", _fake_jax)
  monkeypatch.setattr(bench, "bench_torch", _fake_torch)
  monkeypatch.setitem(sys.modules, "torch", type(sys)("torch"))


def test_each_jax_row_is_followed_by_its_torch_row(fake_backends, tmp_path,
                                                   capsys):
  out = tmp_path / "bench.json"
  rows = bench.run(["synthesis", "cascade"], batches=["8", "4"],
                   backend="both", critics=2, patch=16, json_path=str(out),
                   **_TINY)
  # Ascending batches (the device's peak memory is a high-water mark).
  assert [(r["workload"], r["batch"], r["backend"]) for r in rows] == [
      (w, b, backend) for w in ("synthesis", "cascade") for b in (4, 8)
      for backend in ("jax", "torch-eager")]
  for jax_row, torch_row in zip(rows[::2], rows[1::2]):
    for key in ("workload", "mode", "batch", "precision", "critics",
                "features", "patch", "steps"):
      assert jax_row[key] == torch_row[key]
    critics = 2 if jax_row["workload"] == "cascade" else 1
    work = jax_row["batch"] * 2 * critics
    assert (jax_row["critics"], jax_row["patch"]) == (critics, 16)
    assert jax_row["throughput"] == pytest.approx(work / 0.5)
    assert torch_row["throughput"] == pytest.approx(work / 2.0)
    # The ratio of the two throughputs, on both rows.
    assert jax_row["jax_over_torch"] == pytest.approx(4.0)
    assert torch_row["jax_over_torch"] == pytest.approx(4.0)
    # The JAX row's XLA FLOP count serves both: FLOP/s ∝ throughput.
    assert torch_row["flops_per_run"] == jax_row["flops_per_run"] == 1e6 * work
    assert jax_row["flops_per_second"] == pytest.approx(2e6 * work)
    assert torch_row["flops_per_second"] == pytest.approx(5e5 * work)
    assert jax_row["ms_per_step"] == pytest.approx(1e3 * 0.5 / (2 * critics))
  stdout = capsys.readouterr().out
  _check_printed(stdout, rows)
  assert "cascade T=2" in stdout and stdout.count("torch-eager") == 4
  assert json.loads(out.read_text()) == rows


def test_torch_alone_takes_the_flop_count_from_xla(fake_backends,
                                                   monkeypatch, capsys):
  counted = []
  monkeypatch.setattr(bench, "_jax_flops_only",
                      lambda spec: counted.append(spec) or 7e6)
  monkeypatch.setattr(bench, "bench_jax", None)   # never called
  rows = bench.run(["classifier"], batches=[4], backend="torch", **_TINY)
  (row,) = rows
  assert [s.workload for s in counted] == ["classifier"]
  assert row["backend"] == "torch-eager" and row["jax_over_torch"] is None
  assert row["unit"] == "images/s"
  assert row["throughput"] == pytest.approx(4 * 2 / 2.0)
  assert row["flops_per_second"] == pytest.approx(7e6 / 2.0)
  _check_printed(capsys.readouterr().out, rows)


def test_without_pytorch_the_reference_is_skipped(fake_backends, monkeypatch,
                                                  capsys):
  monkeypatch.setitem(sys.modules, "torch", None)   # import torch fails
  monkeypatch.setattr(bench, "bench_torch", None)   # never called
  rows = bench.run(["classifier"], batches=[4], backend="both", **_TINY)
  stdout = capsys.readouterr().out
  assert "PyTorch is not installed" in stdout
  (row,) = rows
  assert row["backend"] == "jax" and row["jax_over_torch"] is None
  _check_printed(stdout, rows)
  assert _table_lines(stdout)[1][0].endswith(" n/a")


def test_table_columns_and_formats():
  spec = bench.Spec(workload="cascade", batch=4, precision="fp32", patch=16,
                    channels=3, features=(4, 8), steps=2, critics=2)
  cpu = bench._complete(_fake_jax(spec, 1), spec, 8e6)
  cpu["jax_over_torch"] = 4.0
  spec = bench.Spec(workload="class_synthesis", batch=10, precision="bf16",
                    patch=8, channels=1, features=(4, 8), steps=2, classes=5,
                    mode="one_vs_all")
  # A quarter of an H100's bf16 peak, with the device's own peak memory.
  gpu = bench._complete(dict(
      backend="jax", device="NVIDIA H100 80GB HBM3", platform="gpu",
      seconds=0.5, compile_seconds=1.5, peak_memory_bytes=5 * 2**19,
      memory_source="dev", xla_memory_bytes=2**20,
      flops_per_run=989.4e12 * 0.5 / 4), spec, 989.4e12 * 0.5 / 4)
  torch_row = bench._complete(_fake_torch(spec, 1), spec, None)
  header, *lines = bench.format_table([cpu, gpu, torch_row]).splitlines()
  assert header.split() == [
      "workload", "batch", "prec", "backend", "throughput", "unit", "ms/step",
      "compile", "s", "peak", "mem", "GFLOP/s", "%", "peak", "jax/torch"]
  assert [line.split() for line in lines] == [
      ["cascade", "T=2", "4", "fp32", "jax", "32.0", "sample-steps/s",
       "125.0", "1.5", "3.0", "MiB", "xla", "0.016", "n/a", "4.00"],
      ["class_synthesis", "one_vs_all", "10", "bf16", "jax", "40.0",
       "sample-steps/s", "250.0", "1.5", "2.5", "MiB", "dev", "2.474e+05",
       "25.00", "n/a"],
      ["class_synthesis", "one_vs_all", "10", "bf16", "torch-eager", "10.0",
       "sample-steps/s", "1000.0", "n/a", "n/a", "n/a", "n/a", "n/a"]]
  assert {len(line) for line in lines} == {len(header)}
  assert gpu["peak_flops"] == 989.4e12
  assert gpu["fraction_of_peak"] == pytest.approx(0.25)
  assert cpu["peak_flops"] is None   # no peak on CPU, whatever its name


def test_unknown_or_impossible_settings_are_refused():
  with pytest.raises(app.UsageError, match="Unknown --workload=gan"):
    bench.run(["synthesis", "gan"])
  with pytest.raises(app.UsageError, match="Unknown --precision=fp16"):
    bench.run(["synthesis"], precisions=["fp16"])
  with pytest.raises(app.UsageError, match="--batch=8,x must be whole"):
    bench.run(["synthesis"], batches=["8", "x"])
  with pytest.raises(app.UsageError, match="multiples of --classes=5"):
    bench.run(["class_synthesis"], batches=[12], classes=5)


# Measured JAX rows ----------------------------------------------------------


def test_texture_workloads_measure_every_column(capsys):
  rows = bench.run(["synthesis", "cascade"], batches=[4], patch=16,
                   critics=2, backend="jax", **_TINY)
  assert [r["workload"] for r in rows] == ["synthesis", "cascade"]
  for row in rows:
    _check_jax_row(row)
    assert (row["patch"], row["channels"], row["features"]) == (16, 3, [4, 8])
  # The cascade climbs two critics: about twice one critic's work per run
  # (not exactly: XLA drops the per-step statistics the cascade discards).
  synthesis, cascade = rows
  assert cascade["flops_per_run"] == pytest.approx(
      2 * synthesis["flops_per_run"], rel=0.2)
  _check_printed(capsys.readouterr().out, rows)


def test_class_synthesis_modes_in_bf16(capsys):
  rows = bench.run(["class_synthesis"], modes=["softmax", "one_vs_all"],
                   classes=5, batches=[10], patch=8, precisions=["bf16"],
                   backend="jax", **_TINY)
  assert [r["mode"] for r in rows] == ["softmax", "one_vs_all"]
  for row in rows:
    _check_jax_row(row)
    assert (row["precision"], row["classes"], row["channels"]) == ("bf16", 5,
                                                                   1)
  stdout = capsys.readouterr().out
  _check_printed(stdout, rows)
  assert "class_synthesis one_vs_all" in stdout


def test_command_line_prints_the_table_and_writes_json(tmp_path):
  out = tmp_path / "bench.json"
  result = subprocess.run(
      [sys.executable, "-m", "introjax.bench", "--workload=classifier",
       "--batch=4", "--patch=8", "--features=4,8", "--steps=2",
       "--repeats=1", "--backend=jax", f"--json={out}"],
      cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
      timeout=600)
  assert result.returncode == 0, result.stderr
  rows = json.loads(out.read_text())
  (row,) = rows
  _check_jax_row(row)
  assert (row["batch"], row["patch"], row["channels"]) == (4, 8, 1)
  assert row["steps"] == 2 and row["features"] == [4, 8]
  _check_printed(result.stdout, rows)


def test_flop_count_is_per_step_times_steps():
  """XLA counts a while loop's body once; the benchmark counts one step and
  multiplies. One ascent step is the critic's forward pass plus its input
  gradient, about twice the convolutions' multiply-adds."""
  spec = bench.Spec(workload="synthesis", batch=4, precision="fp32",
                    patch=16, channels=3, features=(4, 8), steps=3)
  flops = bench._jax_flops_only(spec)
  assert bench._jax_flops_only(
      dataclasses.replace(spec, steps=6)) == pytest.approx(2 * flops)
  # 5×5 stride-2 SAME convs: 16² → 8² → 4², 2 FLOPs per multiply-add.
  forward = 2 * 4 * 25 * (3 * 4 * 8 * 8 + 4 * 8 * 4 * 4)
  assert 1.8 * forward * 3 < flops < 3.5 * forward * 3


@pytest.mark.parametrize("kind, precision, peak", [
    ("NVIDIA H100 80GB HBM3", "bf16", 989.4e12),
    ("NVIDIA H100 PCIe", "fp32", 378e12),
    ("NVIDIA H200", "bf16", 989.4e12),
    ("NVIDIA A100-SXM4-40GB", "fp32", 156e12),
    ("TPU v4", "bf16", 275e12),
    ("TPU v5 lite", "bf16", 197e12),
    ("TPU v5p", "bf16", 459e12),
    ("TPU v6 lite", "bf16", 918e12),
    ("TPU v5 lite", "fp32", None),
    ("cpu", "fp32", None),
])
def test_peak_flops_by_device_kind(kind, precision, peak):
  assert bench.peak_flops(kind, precision) == peak


# Against the PyTorch reference ----------------------------------------------


def _check_pairs(rows):
  """Every JAX row is followed by the PyTorch row of the same work, both
  carrying the ratio of their throughputs."""
  assert len(rows) % 2 == 0 and rows
  for jax_row, torch_row in zip(rows[::2], rows[1::2]):
    _check_jax_row(dict(jax_row, jax_over_torch=None))
    assert (jax_row["backend"], torch_row["backend"]) == ("jax",
                                                          "torch-eager")
    # XLA's buffer assignment is JAX's alone.
    assert set(torch_row) == _ROW_KEYS - {"xla_memory_bytes"}
    for key in ("workload", "mode", "batch", "precision", "critics"):
      assert jax_row[key] == torch_row[key]
    ratio = jax_row["throughput"] / torch_row["throughput"]
    assert jax_row["jax_over_torch"] == pytest.approx(ratio)
    assert torch_row["jax_over_torch"] == pytest.approx(ratio)
    assert torch_row["throughput"] == pytest.approx(
        torch_row["batch"] * torch_row["steps"] * torch_row["critics"]
        / torch_row["seconds"])
    # The same XLA FLOP count serves both rows: FLOP/s ∝ throughput.
    assert jax_row["flops_per_run"] == torch_row["flops_per_run"] > 0
    assert (jax_row["flops_per_second"] / torch_row["flops_per_second"]
            == pytest.approx(ratio))
    if torch_row["platform"] == "cpu":
      assert torch_row["peak_flops"] is None
      assert torch_row["fraction_of_peak"] is None
      assert torch_row["peak_memory_bytes"] is None
    assert torch_row["compile_seconds"] is None


def test_pytorch_reference_rows(capsys):
  pytest.importorskip(
      "torch", reason="the PyTorch reference is the optional [bench] extra")
  rows = bench.run(["synthesis", "cascade", "class_synthesis"],
                   modes=["one_vs_all"], classes=2, batches=[4], patch=8,
                   critics=2, backend="both", **_TINY)
  assert [(r["workload"], r["backend"]) for r in rows[::2]] == [
      ("synthesis", "jax"), ("cascade", "jax"), ("class_synthesis", "jax")]
  _check_pairs(rows)
  stdout = capsys.readouterr().out
  _check_printed(stdout, rows)
  assert stdout.count("torch-eager") == 3


# IntroVAE: our compiled round against the eager PyTorch port ---------------

_IV_TINY = bench.Spec(workload="introvae", batch=4, precision="fp32",
                      patch=16, channels=3, features=(4, 8), steps=1)


def test_introvae_workload_times_the_trainers_round(capsys):
  rows = bench.run(["introvae"], patch=16, features=(4, 8), steps=2,
                   repeats=1, backend="jax")
  (row,) = rows
  _check_jax_row(row)
  # §4.1's batch of 8 by default; RGB images of --patch².
  assert (row["batch"], row["patch"], row["channels"]) == (8, 16, 3)
  assert row["features"] == [4, 8] and row["unit"] == "images/s"
  _check_printed(capsys.readouterr().out, rows)


def test_introvae_defaults_and_bad_sizes():
  (spec,) = bench._specs(["introvae"], [""], None, ["fp32"], dict(
      patch=128, channels=None, features=None, steps=2, classes=10,
      critics=1))
  assert (spec.batch, spec.channels) == (8, 3)
  assert spec.features == (64, 128, 256, 512, 512)   # App. B at 128²
  config = bench.introvae_config(spec)
  assert (config.model.latent_dim, config.introvae.margin) == (256, "110")
  with pytest.raises(app.UsageError, match="no default network for "
                     "--patch=48"):
    bench.run(["introvae"], patch=48, backend="jax")


def _torch_modules(trainer, state):
  from introjax import torch_introvae as ref
  c = trainer.config
  shape = (c.model.channels, c.model.latent_dim, trainer.image_shape[2])
  encoder, generator = ref.Encoder(*shape), ref.Generator(*shape)
  ref.load_flax_params(encoder, generator, state[0], state[1])
  return encoder, generator


@pytest.mark.parametrize("size", [64, 128])
def test_introvae_torch_port_has_our_parameter_count(size):
  pytest.importorskip(
      "torch", reason="the PyTorch reference is the optional [bench] extra")
  from introjax import torch_introvae as ref
  from introjax.models import introvae as nets
  config = bench.introvae_config(dataclasses.replace(
      _IV_TINY, patch=size, features=bench._default_features("introvae",
                                                              size)))
  channels, latent = tuple(config.model.channels), config.model.latent_dim
  ours = [jax.eval_shape(net.init, jax.random.PRNGKey(0), x) for net, x in (
      (nets.Encoder(channels, latent), jax.ShapeDtypeStruct(
          (1, size, size, 3), "float32")),
      (nets.Generator(channels, 3), jax.ShapeDtypeStruct((1, latent),
                                                         "float32")))]
  count = lambda tree: sum(leaf.size for leaf in jax.tree.leaves(tree))
  assert ref.parameter_count(ref.Encoder(channels, latent, 3)) == count(
      ours[0])
  assert ref.parameter_count(ref.Generator(channels, latent, 3)) == count(
      ours[1])


def test_introvae_torch_port_takes_our_step():
  """On our initial weights and the same x, z_p and ε, the PyTorch port's
  iteration gives our L_E, our encoder gradients, our L_G (through the
  updated encoder), our generator gradients and our updated networks."""
  torch = pytest.importorskip(
      "torch", reason="the PyTorch reference is the optional [bench] extra")
  import numpy as np
  import optax
  from introjax import torch_introvae as ref
  trainer, state, images = bench.introvae_trainer(_IV_TINY)
  iv, c = trainer.config.introvae, trainer.config
  alpha, margin = iv.alpha, float(iv.margin)
  x = images[:4].astype(np.float32) / 127.5 - 1
  z_p = jax.random.normal(jax.random.PRNGKey(5), (4, c.model.latent_dim))
  key = jax.random.PRNGKey(6)
  eps = jax.random.normal(jax.random.split(key, 3)[0], z_p.shape)

  # Compiled: op by op, the networks' custom convolutions cost more.
  (loss_e, (z, _)), grads_e = jax.jit(jax.value_and_grad(
      trainer.encoder_loss, has_aux=True))(state.encoder, state.generator, x,
                                           z_p, key, alpha, margin)
  updates, _ = trainer.tx_e.update(grads_e, trainer.tx_e.init(state.encoder))
  encoder = optax.apply_updates(state.encoder, updates)
  loss_g, grads_g = jax.jit(jax.value_and_grad(trainer.generator_loss))(
      state.generator, encoder, x, z, z_p, key, alpha)
  updates, _ = trainer.tx_g.update(grads_g,
                                   trainer.tx_g.init(state.generator))
  generator = optax.apply_updates(state.generator, updates)

  torch_e, torch_g = _torch_modules(trainer, state)
  step = ref.IntroVAEStep(torch_e, torch_g, alpha, iv.beta, margin,
                          c.train.learning_rate, (c.train.b1, c.train.b2))
  as_torch = lambda a: torch.from_numpy(np.array(a, np.float32))
  torch_loss_e, torch_loss_g = step(as_torch(x.transpose(0, 3, 1, 2)),
                                    as_torch(z_p), as_torch(eps))
  # The hinge is on (untrained networks' KLs are far below m): every term
  # of eq. 11 is in L_E.
  assert float(torch_loss_e) == pytest.approx(float(loss_e), rel=1e-5)
  assert float(torch_loss_g) == pytest.approx(float(loss_g), rel=1e-5)

  def check(torch_params, ours, atol):
    for theirs, mine in zip(torch_params, ours.parameters()):
      np.testing.assert_allclose(theirs.detach().numpy(),
                                 mine.detach().numpy(), rtol=1e-3, atol=atol)

  grad_e, grad_g = _torch_modules(trainer, (grads_e, grads_g))
  scale = lambda tree: max(float(abs(g).max()) for g in jax.tree.leaves(tree))
  check([p.grad for p in torch_e.parameters()], grad_e, 1e-4 * scale(grads_e))
  check([p.grad for p in torch_g.parameters()], grad_g, 1e-4 * scale(grads_g))
  new_e, new_g = _torch_modules(trainer, (encoder, generator))
  check(torch_e.parameters(), new_e, 1e-6)
  check(torch_g.parameters(), new_g, 1e-6)


def test_introvae_torch_row(capsys):
  pytest.importorskip(
      "torch", reason="the PyTorch reference is the optional [bench] extra")
  row = bench._complete(bench.bench_torch(_IV_TINY, 1), _IV_TINY, None)
  assert row["backend"] == "torch-eager" and row["unit"] == "images/s"
  assert row["throughput"] == pytest.approx(4 / row["seconds"])
