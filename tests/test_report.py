"""The per-run report (introjax/report.py) from hand-written workdirs: its
plots are readable images, report.md names every metric and links only
files that exist, several runs share plots and tables, and the end of a run
writes it without ever losing the run. (A member's tiny run writing its
report: tests/test_igm.py.)"""
import json
import logging
import os
import re
import subprocess
import sys

import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image
import pytest

from conftest import REPO, subprocess_env
from introjax import report
from introjax.errors import UserError
from introjax.eval.images import save_png
from introjax.objectives import losses
from introjax.training import harness

ROUNDS = 10


def _write_run(workdir, seed=0, with_eval=True, torn=False):
  """A workdir as a two-variant member leaves it: metrics.jsonl (a loss
  spanning decades, steps with their cap, stop counts, a 0/1 flag, a
  constant, a metric from round 2 on), results.json, launches.jsonl and
  per-round sample grids."""
  rng = np.random.default_rng(seed)
  os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
  rows = []
  for t in range(1, ROUNDS + 1):
    row = {"round": t, "round_seconds": 30.0 if t == 1 else 2.0 + 0.1 * t}
    for v, scale in (("baseline", 1.0), ("icl", 2.0)):
      row[f"{v}/train_loss"] = scale * 10.0 ** (1 - 0.4 * t)
      row[f"{v}/train_accuracy"] = 0.5 + 0.04 * t
      row[f"{v}/train_finite"] = 1.0
      row[f"{v}/train_steps"] = 100.0
      if t > 1:
        row[f"{v}/synthesis_steps_mean"] = 50.0 - t
        row[f"{v}/synthesis_steps_max"] = 60.0 - t
        row[f"{v}/synthesis_step_cap"] = 60.0
        row[f"{v}/synthesis_stopped_early"] = float(t)
        row[f"{v}/synthesis_samples"] = 16.0
        row[f"{v}/synthesis_logit_start"] = -3.0 + 0.1 * t
        row[f"{v}/synthesis_logit_end"] = 1.0 + 0.05 * t
    if with_eval:
      row["swd_mean"] = 40.0 / t + rng.random()
      row["collapse"] = float(t > 7)
    rows.append(row)
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
    if torn:
      f.write('{"round": 11, "baseline/train_lo')  # a write cut by a kill
  results = {"dataset": "digits", "seed": seed,
             "test_error": {"baseline": 0.12 + 0.01 * seed, "icl": 0.09},
             "robustness": {"eps": [0.1], "icl": {"error": [0.3]}}}
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f)
  with open(os.path.join(workdir, harness.LAUNCHES_NAME), "w") as f:
    for hour, (first, last) in ((10, (1, 4)), (11, (5, ROUNDS))):
      start = {"started": f"2026-12-03T{hour}:00:00+00:00", "trainer": "icl",
               "backend": "cpu", "device_kind": "cpu", "device_count": 1,
               "process_count": 1, "first_round": None, "last_round": None}
      f.write(json.dumps(start) + "\n")  # what the start records
      f.write(json.dumps({**start, "first_round": first, "last_round": last,
                          "ended": "later", "wall_seconds": 12.5}) + "\n")
  for t in range(1, ROUNDS + 1):
    for v in ("baseline", "icl"):
      save_png(os.path.join(workdir, "samples", f"{v}_round_{t:03d}.png"),
               (255 * rng.random((24, 48, 1))).astype(np.uint8))
  save_png(os.path.join(workdir, "samples", "final_32x32.png"),
           (255 * rng.random((32, 32, 1))).astype(np.uint8))
  return rows, results


def _links(markdown):
  return re.findall(r"\]\(([^)]+)\)", markdown)


def _assert_readable_pngs(out):
  pngs = [p for p in os.listdir(out) if p.endswith(".png")]
  assert pngs
  for name in pngs:
    image = Image.open(os.path.join(out, name))
    width, height = image.size
    assert 400 <= width <= 4000 and 250 <= height <= 4000, (name, image.size)
    pixels = np.asarray(image.convert("L"), np.float64)
    assert pixels.std() > 5, name  # drawn on, not a blank canvas
  return pngs


def test_report_of_one_run_plots_every_metric_and_links_existing_files(
    tmp_path):
  workdir = str(tmp_path / "run")
  rows, _ = _write_run(workdir, torn=True)
  path = report.write_report(workdir)
  out = os.path.dirname(path)
  assert out == os.path.join(workdir, "report")
  pngs = _assert_readable_pngs(out)
  assert {"train.png", "synthesis.png", "timings.png", "other.png"} == set(
      pngs)
  text = open(path).read()
  keys = {k for r in rows for k in r if k != "round"}
  for key in keys:
    assert f"`{key}`" in text, key
  for key in ("test_error.baseline", "test_error.icl",
              "robustness.icl.error"):  # numbers in lists are not results
    assert (f"`{key}`" in text) == (key != "robustness.icl.error"), key
  links = _links(text)
  for link in links:
    assert os.path.isfile(os.path.join(out, link)), link
  # Each variant's grids: 4 of 10 rounds, the first and the last among them.
  for v in ("baseline", "icl"):
    shown = [l for l in links if f"/{v}_round_" in l]
    assert [os.path.basename(l) for l in shown] == [
        f"{v}_round_{t:03d}.png" for t in (1, 4, 7, 10)]
  assert "../samples/final_32x32.png" in links
  # Constants are named, not plotted; the launches' devices are in a table.
  assert "`baseline/train_steps` = 100" in text
  assert "| 1–4 | 12.5 | 1 × cpu (cpu) | 1 |" in text
  assert "| 5–10 | 12.5 |" in text and "no end recorded" not in text


def test_grouping_by_prefix_variants_and_the_stop_fraction(tmp_path):
  workdir = str(tmp_path / "run")
  rows, _ = _write_run(workdir)
  groups = report.lines_by_panel([report.load_run(workdir)])
  assert list(groups) == ["train", "synthesis", "other", "timings"]
  steps = groups["synthesis"]["synthesis_steps"]
  assert sorted((l.variant, l.name) for l in steps) == sorted(
      (v, f"synthesis_{n}") for v in ("baseline", "icl")
      for n in ("steps_mean", "steps_max", "step_cap"))
  # The raw counts give way to their fraction, NaN where not logged.
  assert "synthesis_stopped_early" not in groups["synthesis"]
  fraction = groups["synthesis"]["synthesis_stopped_early_fraction"]
  expected = [np.nan] + [t / 16 for t in range(2, ROUNDS + 1)]
  for line in fraction:
    np.testing.assert_allclose(line.values, expected)
  # 0/1 flags and lone metrics: one panel each, together in "other".
  assert set(groups["other"]) == {"swd_mean", "collapse"}
  assert "train_finite" not in groups["train"]  # constant 1

  # A loss falling over decades is drawn on a log axis, accuracy is not.
  figure = report.plot_group(str(tmp_path / "train.png"), "train",
                             groups["train"])
  scales = {ax.get_title(): ax.get_yscale() for ax in figure.axes
            if ax.get_visible()}
  assert scales == {"train_loss": "log", "train_accuracy": "linear"}
  legend = [t.get_text() for t in figure.legends[0].get_texts()]
  assert legend == ["baseline", "icl"]


def test_side_by_side_report_of_two_runs(tmp_path):
  a, b = str(tmp_path / "runs" / "a"), str(tmp_path / "runs" / "b")
  _write_run(a, seed=0)
  _write_run(b, seed=1, with_eval=False)
  path = report.write_report([a, b], self_contained=True)
  out = os.path.dirname(path)
  assert out == str(tmp_path / "runs" / "report_a_vs_b")
  _assert_readable_pngs(out)
  text = open(path).read()
  assert text.startswith("# Report: a vs b")
  assert "| `test_error.baseline` | 0.12 | 0.13 |" in text
  # b logged no SWD: its column says so.
  assert re.search(r"\| `swd_mean` \| [0-9.]+ \| – \|", text)
  # The copies travel with the report.
  links = _links(text)
  assert links and all(os.path.isfile(os.path.join(out, l)) for l in links)
  assert any(l.startswith("samples/a/") for l in links)
  assert any(l.startswith("samples/b/") for l in links)
  # One panel, a line per run and variant, labelled by both.
  groups = report.lines_by_panel([report.load_run(a), report.load_run(b)])
  figure = report.plot_group(str(tmp_path / "train.png"), "train",
                             groups["train"])
  legend = [t.get_text() for t in figure.legends[0].get_texts()]
  assert legend == ["a, baseline", "a, icl", "b, baseline", "b, icl"]
  # The panel's own legend names its metrics' line styles.
  steps = report.plot_group(str(tmp_path / "synthesis.png"), "synthesis",
                            groups["synthesis"])
  assert [t.get_text() for t in steps.axes[0].get_legend().get_texts()] == [
      "mean", "max", "cap"]


def test_a_workdir_without_records_is_refused(tmp_path):
  with pytest.raises(UserError, match="no metrics.jsonl rows"):
    report.load_run(str(tmp_path))


def test_a_failed_report_is_one_warning_and_the_run_is_kept(
    tmp_path, monkeypatch, caplog):
  def broken(workdir):
    raise RuntimeError("no fonts")
  monkeypatch.setattr(harness.report_lib, "write_report", broken)
  train = harness.reports(lambda trainer, config, workdir: "state")
  config = ml_collections.ConfigDict({"log": {"report": True}})
  with caplog.at_level(logging.WARNING):
    assert train("igm", config, str(tmp_path)) == "state"
  warnings = [r.getMessage() for r in caplog.records
              if r.levelno == logging.WARNING]
  assert len(warnings) == 1 and "RuntimeError: no fonts" in warnings[0]
  # log.report=False: no report is tried.
  calls = []
  monkeypatch.setattr(harness.report_lib, "write_report", calls.append)
  config.log.report = False
  assert train("igm", config, workdir=str(tmp_path)) == "state"
  assert not calls


def test_bce_logs_the_mean_logits_on_positives_and_negatives():
  logits = np.array([2.0, 1.0, 3.0, -1.0, 0.5, -2.5])
  loss, aux = losses.BCELoss()(lambda x: jnp.asarray(logits),
                               {"x": np.zeros((6, 1))}, None)
  np.testing.assert_allclose(aux["logit_positive"], 2.0, rtol=1e-6)
  np.testing.assert_allclose(aux["logit_negative"], -1.0, rtol=1e-6)
  expected = (np.log1p(np.exp(-logits[:3])).sum()
              + np.log1p(np.exp(logits[3:])).sum()) / 6
  np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_command_line_writes_the_report(tmp_path):
  workdir = str(tmp_path / "run")
  _write_run(workdir)
  out = tmp_path / "elsewhere"
  result = subprocess.run(
      [sys.executable, "-m", "introjax.report", f"--workdirs={workdir}",
       f"--out={out}"], cwd=REPO, env=subprocess_env(), capture_output=True,
      text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  assert (out / "report.md").exists() and (out / "train.png").exists()
