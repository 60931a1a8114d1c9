"""The seed sweep: its commands and its mean ± std summary."""
import importlib.util
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


def _sweep(*args):
  return subprocess.run([sys.executable, "launch/sweep.py", *args], cwd=REPO,
                        env=subprocess_env(), capture_output=True, text=True,
                        timeout=120)


def test_grid_is_every_combination_with_one_workdir_each():
  result = _sweep("--config=configs/icl_digits.py", "--root=r", "--seeds=0,1",
                  "--grid=train.learning_rate=0.01,0.001;icl.mode=softmax,"
                  "one_vs_all", "--print_only", "--", "--config.rounds=3")
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 8
  workdirs = [l.split("--workdir=")[1].split()[0] for l in lines]
  assert len(set(workdirs)) == 8
  assert workdirs[0] == ("r/train.learning_rate=0.01__icl.mode=softmax/"
                         "seed_0")
  last = lines[-1]
  assert "seed_1" in last and "--config.seed=1" in last
  assert ("--config.train.learning_rate=0.001 --config.icl.mode=one_vs_all "
          "--config.rounds=3") in last


def test_points_and_pod_commands():
  result = _sweep("--config=configs/igm_texture.py", "--root=gs://b/r",
                  "--seeds=0", "--points=cascade.single=True,train.max_steps=5;"
                  "cascade.single=False", "--emit_pod_commands",
                  "--skip_aot_check",
                  "--pod_args=--name=v4 --zone=z --accelerator_type=v4-32")
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  assert lines == [
      "python launch/tpu_pod.py --name=v4 --zone=z --accelerator_type=v4-32 "
      "--config=configs/igm_texture.py --workdir=gs://b/r/cascade.single=True__"
      "train.max_steps=5/seed_0 -- --config.seed=0 --config.cascade.single=True "
      "--config.train.max_steps=5",
      "python launch/tpu_pod.py --name=v4 --zone=z --accelerator_type=v4-32 "
      "--config=configs/igm_texture.py --workdir=gs://b/r/cascade.single=False/"
      "seed_0 -- --config.seed=0 --config.cascade.single=False"]


def test_malformed_grid_is_refused_in_one_sentence():
  result = _sweep("--config=c.py", "--root=r", "--grid=train.learning_rate",
                  "--print_only")
  assert result.returncode == 2
  assert "not key=value" in result.stderr


def test_grid_summary_has_one_row_per_point(tmp_path):
  """Texture runs have no results.json: their last metrics line counts."""
  losses = {("True", 0): 0.5, ("True", 1): 0.7, ("False", 0): 0.2,
            ("False", 1): 0.4}
  for (single, seed), loss in losses.items():
    folder = tmp_path / f"cascade.single={single}" / f"seed_{seed}"
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text(
        json.dumps({"round": 1, "train_loss": 9.0}) + "\n" +
        json.dumps({"round": 2, "train_loss": loss, "round_seconds": 1.0}) +
        "\n")
  result = _sweep("--config=configs/igm_texture.py", f"--root={tmp_path}",
                  "--seeds=0,1", "--grid=cascade.single=True,False",
                  "--summarize_only")
  assert result.returncode == 0, result.stderr
  written = (tmp_path / "summary.md").read_text()
  assert "| point | train_loss |" in written
  assert "| cascade.single=True | 0.6 ± 0.14 (2) |" in written
  assert "| cascade.single=False | 0.3 ± 0.14 (2) |" in written
  assert "round_seconds" not in written


def test_pod_commands_wait_for_the_compile_check(monkeypatch, capsys):
  spec = importlib.util.spec_from_file_location("sweep",
                                                REPO / "launch" / "sweep.py")
  sweep = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(sweep)
  checked = []

  def no_fit(command, **kwargs):
    checked.append(command)
    return subprocess.CompletedProcess(command, 1 if len(checked) == 2 else 0)

  monkeypatch.setattr(sweep.subprocess, "run", no_fit)
  argv = ["--config=configs/igm_texture.py", "--root=gs://b/r", "--seeds=0,1",
          "--points=pool.rounds=2;pool.rounds=99999999",
          "--emit_pod_commands", "--pod_args=--name=v --accelerator_type=v4-32"]
  assert sweep.main(argv) == 1
  captured = capsys.readouterr()
  assert not captured.out   # no command for any point
  assert "pool.rounds=99999999" in captured.err and "v4-32" in captured.err
  # One check per point (seeds share shapes), for the slice's type.
  assert [c[c.index("-m") + 1] for c in checked] == ["introjax.aot"] * 2
  assert "--topology=v4-32" in checked[1]
  assert "--config.pool.rounds=99999999" in checked[1]

  checked.clear()
  monkeypatch.setattr(sweep.subprocess, "run", lambda command, **kwargs: (
      checked.append(command) or subprocess.CompletedProcess(command, 0)))
  assert sweep.main(argv) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  assert len(lines) == 4 and all("--skip_aot_check" in l for l in lines)
