"""Mean ± standard deviation of runs that differ only in their seed.

Each run leaves results.json in its workdir; every number in it (test errors,
each entry of the FGSM table) is summarised under its dotted path.
"""
import json
import os

import numpy as np

from introjax import paths


def flatten_numbers(tree, prefix=""):
  """{dotted path: number} of every int/float leaf (bools excluded)."""
  out = {}
  if isinstance(tree, dict):
    for key, value in tree.items():
      out.update(flatten_numbers(value, f"{prefix}{key}."))
  elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
    out[prefix[:-1]] = float(tree)
  return out


def load_results(workdirs):
  runs = []
  for workdir in workdirs:
    runs.append(json.loads(paths.read_text(
        os.path.join(workdir, "results.json"))))
  return runs


def summarize(runs, skip=("seed",)):
  """{path: (mean, std over runs, n)} of the numbers every run has; std is
  the sample standard deviation (ddof=1), 0 for a single run."""
  flat = [flatten_numbers(r) for r in runs]
  common = set(flat[0]).intersection(*flat[1:]) - set(skip)
  summary = {}
  for path in sorted(common):
    values = np.array([f[path] for f in flat])
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    summary[path] = (float(values.mean()), std, len(values))
  return summary


def summary_markdown(summary, title):
  lines = [f"# {title}", "", "| quantity | mean | std | runs |",
           "| --- | --- | --- | --- |"]
  for path, (mean, std, n) in summary.items():
    lines.append(f"| {path} | {mean:.4g} | {std:.2g} | {n} |")
  return "\n".join(lines) + "\n"


def load_final(workdir):
  """A finished run's final numbers: results.json (classifiers), else the
  last round of metrics.jsonl (texture models)."""
  path = os.path.join(workdir, "results.json")
  if paths.exists(path):
    return json.loads(paths.read_text(path))
  lines = [line for line in paths.read_text(
      os.path.join(workdir, "metrics.jsonl")).splitlines() if line.strip()]
  return json.loads(lines[-1])


def grid_markdown(rows, title):
  """One row per sweep point ({point: summarize(...)}), one column per
  quantity all points share: "mean ± std (runs)"."""
  common = sorted(set.intersection(*(set(s) for s in rows.values())))
  lines = [f"# {title}", "", "| point | " + " | ".join(common) + " |",
           "| --- |" + " --- |" * len(common)]
  for point, summary in rows.items():
    cells = [f"{summary[q][0]:.4g} ± {summary[q][1]:.2g} ({summary[q][2]})"
             for q in common]
    lines.append(f"| {point} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"
