"""The benchmark command: its table and JSON for every workload, batch list
and precision on tiny sizes, the PyTorch reference optional, and the FLOP
count behind the FLOP/s column (speed itself is never asserted in tests)."""
import dataclasses
import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import REPO, subprocess_env
from introjax import bench

_TINY = ["--features=4,8", "--steps=2", "--repeats=1"]
# The PyTorch reference is an optional extra (`bench`): without it the
# command prints JAX rows only, and the pairing checks are skipped.
_HAVE_TORCH = importlib.util.find_spec("torch") is not None
_COLUMNS = ("throughput", "unit", "ms/step", "compile s", "peak mem",
            "GFLOP/s", "% peak", "jax/torch")


def _run_bench(tmp_path, *args, env=None):
  out = tmp_path / "bench.json"
  result = subprocess.run(
      [sys.executable, "-m", "introjax.bench", *_TINY, f"--json={out}",
       *args], cwd=REPO, env=env or subprocess_env(), capture_output=True,
      text=True, timeout=600)
  assert result.returncode == 0, result.stderr
  header = next(line for line in result.stdout.splitlines()
                if line.startswith("workload"))
  assert all(column in header for column in _COLUMNS)
  return result.stdout, json.loads(out.read_text())


def _jax_rows(rows):
  return [r for r in rows if r["backend"] == "jax"]


def _check_pairs(rows):
  """Every JAX row is followed by the PyTorch row of the same work, both
  carrying the ratio of their throughputs (when PyTorch is installed)."""
  if not _HAVE_TORCH:
    assert all(r["backend"] == "jax" and r["jax_over_torch"] is None
               for r in rows)
    return
  for jax_row, torch_row in zip(rows[::2], rows[1::2]):
    assert (jax_row["backend"], torch_row["backend"]) == ("jax",
                                                          "torch-eager")
    for key in ("workload", "mode", "batch", "precision", "critics"):
      assert jax_row[key] == torch_row[key]
    ratio = jax_row["throughput"] / torch_row["throughput"]
    assert jax_row["jax_over_torch"] == pytest.approx(ratio)
    assert torch_row["jax_over_torch"] == pytest.approx(ratio)
    # The same XLA FLOP count serves both rows: FLOP/s ∝ throughput.
    assert jax_row["flops_per_run"] == torch_row["flops_per_run"] > 0
    assert (jax_row["flops_per_second"] / torch_row["flops_per_second"]
            == pytest.approx(ratio))
    # On CPU: no peak FLOP/s to compare with; JAX memory from XLA's buffer
    # assignment (the CPU reports no device peak), none from PyTorch.
    for row in (jax_row, torch_row):
      assert row["peak_flops"] is None and row["fraction_of_peak"] is None
    assert jax_row["memory_source"] == "xla"
    assert jax_row["peak_memory_bytes"] == jax_row["xla_memory_bytes"] > 0
    assert jax_row["compile_seconds"] > 0
    assert torch_row["peak_memory_bytes"] is None
    assert torch_row["compile_seconds"] is None


def test_texture_workloads_over_a_batch_list(tmp_path):
  stdout, rows = _run_bench(
      tmp_path, "--workload=synthesis,cascade", "--batch=8,4", "--patch=16",
      "--critics=2", "--backend=both")
  jax_rows = _jax_rows(rows)
  assert [(r["workload"], r["batch"]) for r in jax_rows] == [
      ("synthesis", 4), ("synthesis", 8), ("cascade", 4), ("cascade", 8)]
  _check_pairs(rows)
  for r in rows:
    critics = 2 if r["workload"] == "cascade" else 1
    assert r["critics"] == critics and r["unit"] == "sample-steps/s"
    assert r["throughput"] == pytest.approx(
        r["batch"] * 2 * critics / r["seconds"])
  # The cascade climbs two critics: about twice one critic's work per run
  # (not exactly: XLA drops the per-step statistics the cascade discards).
  synthesis, cascade = jax_rows[0], jax_rows[2]
  assert cascade["flops_per_run"] == pytest.approx(
      2 * synthesis["flops_per_run"], rel=0.2)
  assert "cascade T=2" in stdout
  assert stdout.count("torch-eager") == (4 if _HAVE_TORCH else 0)


def test_class_synthesis_modes_in_bf16(tmp_path):
  stdout, rows = _run_bench(
      tmp_path, "--workload=class_synthesis", "--mode=softmax,one_vs_all",
      "--classes=5", "--batch=10", "--patch=8", "--precision=bf16",
      "--backend=both")
  assert [r["mode"] for r in _jax_rows(rows)] == ["softmax", "one_vs_all"]
  assert {r["precision"] for r in rows} == {"bf16"}
  _check_pairs(rows)
  assert "class_synthesis one_vs_all" in stdout


def test_without_pytorch_the_reference_is_skipped(tmp_path):
  hide = tmp_path / "no_torch"
  hide.mkdir()
  (hide / "torch.py").write_text("raise ImportError('no torch here')\n")
  env = subprocess_env()
  env["PYTHONPATH"] = f"{hide}:{env['PYTHONPATH']}"
  stdout, rows = _run_bench(tmp_path, "--workload=classifier", "--batch=4",
                            "--patch=8", "--backend=both", env=env)
  assert "PyTorch is not installed" in stdout
  (row,) = rows
  assert row["backend"] == "jax" and row["jax_over_torch"] is None
  assert row["unit"] == "images/s"
  assert row["throughput"] == pytest.approx(4 * 2 / row["seconds"])


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


def test_unknown_workload_is_refused(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "introjax.bench", "--workload=synthesis,gan"],
      cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
      timeout=120)
  assert result.returncode != 0
  assert "Unknown --workload=gan" in result.stderr
