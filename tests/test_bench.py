"""The benchmark command runs every workload and writes its table and JSON
(a smoke test on tiny sizes; speed itself is never asserted in tests)."""
import json
import subprocess
import sys

import pytest

from conftest import REPO, subprocess_env


@pytest.mark.parametrize("workload, extra", [
    ("synthesis", ["--patch=16"]),
    ("classifier", ["--patch=8", "--channels=1"]),
    ("class_synthesis", ["--patch=8", "--channels=1", "--mode=one_vs_all"]),
])
def test_bench_workload_writes_a_table_and_json(tmp_path, workload, extra):
  out = tmp_path / "bench.json"
  result = subprocess.run(
      [sys.executable, "-m", "introjax.bench", f"--workload={workload}",
       "--backend=jax", "--batch=10", "--classes=5", "--features=4,8",
       "--steps=2", "--repeats=1", f"--json={out}", *extra],
      cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
      timeout=300)
  assert result.returncode == 0, result.stderr
  assert workload in result.stdout
  (row,) = json.loads(out.read_text())
  assert row["backend"] == "jax" and row["throughput"] > 0
  assert row["compile_seconds"] > 0
