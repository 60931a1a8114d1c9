"""The seed sweep: its commands and its mean ± std summary."""
import json
import subprocess
import sys

import numpy as np

from conftest import REPO, subprocess_env
from introjax.eval import summary


def test_summary_is_mean_and_sample_std_of_every_number(tmp_path):
  runs = [{"seed": s, "mode": "softmax",
           "test_error": {"baseline": b, "icl": i},
           "robustness": {"baseline": {"icl": {"correction_rate": c}}}}
          for s, b, i, c in [(0, 0.10, 0.08, 0.5), (1, 0.12, 0.07, 0.7),
                             (2, 0.11, 0.09, 0.6)]]
  for s, run in enumerate(runs):
    (tmp_path / f"seed_{s}").mkdir()
    (tmp_path / f"seed_{s}" / "results.json").write_text(json.dumps(run))
  result = subprocess.run(
      [sys.executable, "launch/sweep.py", "--config=configs/icl_digits.py",
       f"--root={tmp_path}", "--seeds=0,1,2", "--summarize_only"],
      cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
      timeout=120)
  assert result.returncode == 0, result.stderr
  table = summary.summarize(summary.load_results(
      [tmp_path / f"seed_{s}" for s in range(3)]))
  assert "seed" not in table and "mode" not in table
  mean, std, n = table["test_error.baseline"]
  np.testing.assert_allclose([mean, std, n], [0.11, 0.01, 3], rtol=1e-9)
  mean, std, _ = table["robustness.baseline.icl.correction_rate"]
  np.testing.assert_allclose([mean, std], [0.6, 0.1], rtol=1e-9)
  written = (tmp_path / "summary.md").read_text()
  assert "| test_error.icl | 0.08 | 0.01 | 3 |" in written


def test_print_only_lists_one_command_per_seed():
  result = subprocess.run(
      [sys.executable, "launch/sweep.py", "--config=configs/icl_mnist.py",
       "--root=runs/x", "--seeds=3,4", "--print_only", "--",
       "--config.icl.mode=one_vs_all"],
      cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
      timeout=120)
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 2
  assert "--workdir=runs/x/seed_4" in lines[1]
  assert lines[1].endswith("--config.seed=4 --config.icl.mode=one_vs_all")
