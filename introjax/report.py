r"""A readable report of what a run recorded: report.md and PNG plots.

    python -m introjax.report --workdir=runs/brick
    python -m introjax.report --workdirs=runs/igm,runs/winn --out=runs/igm_vs_winn

From each workdir it reads `metrics.jsonl` (every number of every round),
`results.json` (what eval.final measured), `launches.jsonl` (when each
launch of the round loop ran, on which devices) and the PNGs under
`samples/`. Nothing is specific to a member: metric keys are grouped by
their first word (`train_…`, `synthesis_…`, `kl_…`; a `variant/` prefix is
a line of its own), so a metric a trainer starts logging appears in the
next report without a change here. Written under --out (default
<workdir>/report): `report.md`, one PNG per group of metrics and one of the
round times. Several workdirs share each plot, one colour per run, and the
tables get one column per run.

Trainers write the report of their workdir when a run ends
(`harness.reports`). Workdirs and --out may be gs://… URLs: every file goes
through introjax/paths.py.
"""
import collections
import dataclasses
import datetime
import io
import json
import math
import os
import re

from absl import flags
from absl import logging
import numpy as np

from introjax import cli
from introjax import paths
from introjax.errors import UserError
from introjax.eval import summary

REPORT_DIR = "report"
REPORT_NAME = "report.md"
# At most this many of a series' per-round sample grids are shown: first,
# last and evenly between.
MAX_SAMPLE_ROUNDS = 4
# A round's grid: round_001.png, icl_round_002.png, stic_classes_pass_003.png,
# round_004_samples.png; its series is the name around the number.
_ROUND_PNG = re.compile(
    r"^(?P<before>.*?)_?(?:round|pass)_(?P<round>\d+)(?:_(?P<after>.+))?\.png$")
# Metrics whose names hold these go to the timings figure.
_TIMING_WORDS = ("seconds", "per_second")
_PANEL_COLUMNS = 3
# Groups drawn in a figure of their own even with one panel.
_OWN_FIGURE = ("train", "synthesis", "timings")


@dataclasses.dataclass
class Run:
  """What one workdir recorded."""
  label: str
  workdir: str
  rounds: np.ndarray                 # the rounds metrics.jsonl holds
  metrics: dict                      # key -> values per round (NaN: absent)
  results: dict                      # dotted path -> number (results.json)
  launches: list                     # rows of launches.jsonl
  round_samples: dict                # series -> [(round, path)], by round
  other_samples: list                # the other PNGs under samples/


def _read_jsonl(path):
  """The JSON rows of `path`; a torn last line (a killed write) is
  skipped."""
  rows = []
  if not paths.exists(path):
    return rows
  for line in paths.read_text(path).splitlines():
    line = line.strip()
    if not line:
      continue
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError:
      logging.warning("Skipping an unreadable line of %s.", path)
  return rows


def load_run(workdir, label=None):
  """The Run of `workdir`; a workdir with neither metrics nor results is
  refused."""
  rows = _read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  by_round = {}
  for row in rows:  # a resumed run may log a round again: the last one wins
    if "round" in row:
      by_round[int(row["round"])] = row
  rounds = np.array(sorted(by_round), dtype=int)
  keys = []
  for t in rounds:
    keys += [k for k in by_round[t] if k != "round" and k not in keys]
  metrics = {}
  for key in keys:
    values = [by_round[t].get(key) for t in rounds]
    metrics[key] = np.array([np.nan if not isinstance(v, (int, float))
                             else float(v) for v in values])
  results = {}
  results_path = os.path.join(workdir, "results.json")
  if paths.exists(results_path):
    results = summary.flatten_numbers(json.loads(paths.read_text(
        results_path)))
  if not len(rounds) and not results:
    raise UserError(f"{workdir} holds no metrics.jsonl rows and no "
                    "results.json; name the workdir of a run "
                    "(python -m introjax.main --workdir=...).")
  round_samples, other_samples = collections.defaultdict(list), []
  folder = os.path.join(workdir, "samples")
  if paths.is_dir(folder):
    for name in paths.listdir(folder):
      if not name.endswith(".png"):
        continue
      path = os.path.join(folder, name)
      match = _ROUND_PNG.match(name)
      if match:
        series = "_".join(filter(None, (match["before"], match["after"])))
        round_samples[series].append((int(match["round"]), path))
      else:
        other_samples.append(path)
  for series in round_samples.values():
    series.sort()
  return Run(label=label or _label(workdir), workdir=workdir, rounds=rounds,
             metrics=metrics, results=results,
             launches=_launches(workdir),
             round_samples=dict(round_samples), other_samples=other_samples)


def _launches(workdir):
  """launches.jsonl's launches, the end record of each superseding its
  start record (same "started")."""
  by_start = {}
  for row in _read_jsonl(os.path.join(workdir, "launches.jsonl")):
    by_start[row.get("started"), row.get("device_kind")] = row
  return list(by_start.values())


def _normalized(workdir):
  """`workdir` without a trailing slash (normpath would also fold gs:// to
  gs:/)."""
  return workdir.rstrip("/") if paths.is_remote(workdir) else \
      os.path.normpath(workdir)


def _label(workdir):
  return os.path.basename(_normalized(workdir)) or workdir


# Grouping metric keys into figures and panels -------------------------------


def split_key(key):
  """(line, name): "icl/train_loss" -> ("icl", "train_loss"); a key without
  a prefix is its own run's line ("")."""
  line, _, name = key.partition("/")
  return (line, name) if name else ("", line)


def _words(name):
  return re.split(r"[_/]", name)


def group_of(name):
  """The figure a metric goes to: timings, or its first word."""
  if any(w in name for w in _TIMING_WORDS):
    return "timings"
  return _words(name)[0]


def panel_of(name):
  """The axes a metric goes to: a name of three or more words shares its
  axes with the names that differ from it in the last word only
  (synthesis_steps_mean, synthesis_steps_max); a step cap joins its steps."""
  words = _words(name)
  if words[-1] == "cap" and len(words) >= 3:
    return "_".join(words[:-1]) + "s"
  if len(words) >= 3:
    return "_".join(words[:-1])
  return name


def _is_flag(values):
  finite = values[np.isfinite(values)]
  return finite.size and np.isin(finite, (0.0, 1.0)).all()


@dataclasses.dataclass
class Line:
  run: str
  variant: str
  name: str          # the metric's name without its variant prefix
  key: str           # the key as logged
  rounds: np.ndarray
  values: np.ndarray
  derived: bool = False


def _derived(run):
  """(lines computed from logged ones, the logged keys they replace in the
  plots): the fraction of samples that stopped early, from
  <p>stopped_early / <p>samples."""
  out, replaced = {}, set()
  for key, values in run.metrics.items():
    if key.endswith("stopped_early"):
      prefix = key[:-len("stopped_early")]
      total = run.metrics.get(prefix + "samples")
      if total is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
          out[prefix + "stopped_early_fraction"] = np.where(
              total > 0, values / total, np.nan)
        replaced |= {key, prefix + "samples"}
  return out, replaced


def lines_by_panel(runs):
  """{group: {panel: [Line]}} over every run, in logged order; panels whose
  every value is one number are left out (listed by `constant_keys`)."""
  groups = collections.OrderedDict()
  for run in runs:
    derived, replaced = _derived(run)
    for key, values in list(run.metrics.items()) + list(derived.items()):
      if key in replaced:
        continue  # shown as the derived fraction
      variant, name = split_key(key)
      group, panel = group_of(name), panel_of(name)
      if key in derived or _is_flag(values):
        panel = name  # a fraction or a 0/1 flag never shares a quantity's axes
      groups.setdefault(group, collections.OrderedDict()).setdefault(
          panel, []).append(Line(run.label, variant, name, key, run.rounds,
                                 values, key in derived))
  for group in list(groups):
    for panel in list(groups[group]):
      if _constant(groups[group][panel]) is not None:
        del groups[group][panel]
    if not groups[group]:
      del groups[group]
  # Groups of one panel share one figure, so no figure holds a lone plot.
  single = [g for g, panels in groups.items() if len(panels) == 1
            and g not in _OWN_FIGURE]
  if len(single) > 1:
    other = collections.OrderedDict()
    for g in single:
      other.update(groups.pop(g))
    groups["other"] = other
  if "timings" in groups:  # last: how long, after what
    groups.move_to_end("timings")
  return groups


def _constant(lines):
  values = np.concatenate([l.values[np.isfinite(l.values)] for l in lines])
  if values.size and np.all(values == values[0]):
    return float(values[0])
  return None


def constant_keys(runs):
  """{key: value} of the logged metrics that never changed in any run."""
  out = {}
  for key in dict.fromkeys(k for r in runs for k in r.metrics):
    values = np.concatenate([r.metrics[key][np.isfinite(r.metrics[key])]
                             for r in runs if key in r.metrics])
    if values.size and np.all(values == values[0]):
      out[key] = float(values[0])
  return out


# Plots ----------------------------------------------------------------------


def _pyplot_free_figure(**kwargs):
  """A Figure on the Agg canvas, without pyplot: no display, no global
  state (a notebook's backend is left alone)."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  figure = Figure(**kwargs)
  FigureCanvasAgg(figure)
  return figure


def _unit(name):
  for word, unit in (("seconds", "seconds"), ("per_second", "per second"),
                     ("stopped", "fraction of samples"),
                     ("fraction", "fraction"), ("accuracy", "fraction"),
                     ("error", "error"), ("steps", "steps"),
                     ("step", "steps"), ("logit", "logit"),
                     ("threshold", "logit"), ("loss", "loss"),
                     ("kl", "nats"), ("swd", "distance"), ("fid", "FID")):
    if word in _words(name) or word in name:
      return unit
  return name.replace("_", " ")


_CAP_STYLE = ("0.45", (0, (6, 3)))  # a step cap: grey, long dashes
_DASHES = ["-", "--", ":", "-."]


def _suffix(line, panel):
  return line.name[len(panel):].lstrip("_") or line.name


def _series_label(run, variant, series):
  parts = []
  if len({r for r, _ in series}) > 1:
    parts.append(run)
  if len({v for _, v in series}) > 1:
    parts.append(variant or "(no prefix)")
  return ", ".join(parts)


def _palette():
  import matplotlib
  return matplotlib.colormaps["tab10"].colors


def _draw_panel(ax, panel, lines, colours):
  """A colour per (run, variant) (`colours`, the same in every panel of a
  figure, whose legend names them), a line style per metric of the panel,
  named in the panel's legend."""
  from matplotlib.lines import Line2D
  from matplotlib.ticker import MaxNLocator
  names = list(dict.fromkeys(l.name for l in lines if not
                             l.name.endswith("cap")))
  few = max(len(l.rounds) for l in lines) <= 30
  marker = dict(marker="o", markersize=3.5) if few else {}
  for line in lines:
    if line.name.endswith("cap"):
      colour, style = _CAP_STYLE
    else:
      colour = colours[(line.run, line.variant)]
      style = _DASHES[names.index(line.name) % len(_DASHES)]
    ax.plot(line.rounds, line.values, color=colour, linestyle=style,
            linewidth=1.6, **marker)
  if len(names) > 1 or len(names) < len({l.name for l in lines}):
    by_name = {l.name: l for l in lines}
    handles = [Line2D([], [], color="0.15", linestyle=_DASHES[i % 4],
                      label=_suffix(by_name[n], panel))
               for i, n in enumerate(names)]
    handles += [Line2D([], [], color=_CAP_STYLE[0], linestyle=_CAP_STYLE[1],
                       label=_suffix(l, panel)) for l in
                dict((l.name, l) for l in lines
                     if l.name.endswith("cap")).values()]
    ax.legend(handles=handles, fontsize=8, loc="best", framealpha=0.85)
  values = np.concatenate([l.values[np.isfinite(l.values)] for l in lines])
  log = bool(values.size and values.min() > 0
             and values.max() / values.min() >= 100)
  if log:  # values spanning decades
    ax.set_yscale("log")
  suffixes = list(dict.fromkeys(_suffix(l, panel) for l in lines))
  title = panel + (f" ({', '.join(suffixes)})" if len(suffixes) > 1 else "")
  unit = _unit(panel)
  if any(l.derived for l in lines):
    title += ", derived"
    ax.set_ylim(-0.03, 1.03)
  elif _is_flag(values):
    unit = "flag (0 no, 1 yes)"
    ax.set_ylim(-0.08, 1.08)
    ax.set_yticks([0, 1])
  ax.set_title(title, fontsize=11)
  ax.set_xlabel("round")
  ax.set_ylabel(unit + (" (log scale)" if log else ""))
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  ax.grid(True, alpha=0.3)


def series_colours(lines):
  """{(run, variant): colour} in the order `lines` name them."""
  palette = _palette()
  series = dict.fromkeys((l.run, l.variant) for l in lines)
  return {s: palette[i % len(palette)] for i, s in enumerate(series)}


def plot_group(path, title, panels, colours=None):
  """One PNG of `panels` ({panel: [Line]}), small multiples in rows of
  three, a colour per (run, variant) (`colours`, default
  `series_colours` of the panels) named once under the title; returns the
  figure."""
  from matplotlib.lines import Line2D
  lines_shown = [l for lines in panels.values() for l in lines]
  colours = colours or series_colours(lines_shown)
  series = [s for s in colours if s in {(l.run, l.variant)
                                        for l in lines_shown}]
  n = len(panels)
  cols = min(_PANEL_COLUMNS, n)
  rows = math.ceil(n / cols)
  legend_columns = min(len(series), 2 * cols + 1)
  legend_rows = math.ceil(len(series) / legend_columns) if len(series) > 1 \
      else 0
  top = 0.75 + 0.28 * legend_rows  # inches above the panels
  width, height = 5.2 * cols, 3.6 * rows + 0.2 + top
  figure = _pyplot_free_figure(figsize=(width, height), dpi=100)
  # Fixed margins in inches (a layout engine costs as much as the drawing).
  axes = figure.subplots(rows, cols, squeeze=False, gridspec_kw=dict(
      left=0.85 / width, right=1 - 0.2 / width, bottom=0.55 / height,
      top=1 - top / height, wspace=0.32, hspace=0.5))
  for ax, (panel, lines) in zip(axes.flat, panels.items()):
    _draw_panel(ax, panel, lines, colours)
  for ax in axes.flat[n:]:
    ax.set_visible(False)
  figure.suptitle(title, fontsize=13, y=1 - 0.12 / height, va="top")
  if legend_rows:
    marker = dict(marker="o", markersize=4)
    figure.legend(
        handles=[Line2D([], [], color=colours[s], linewidth=2,
                        label=_series_label(*s, series), **marker)
                 for s in series],
        loc="upper center", bbox_to_anchor=(0.5, 1 - 0.42 / height),
        ncol=legend_columns, fontsize=10, frameon=False)
  png = io.BytesIO()  # then written through paths: `path` may be gs://…
  figure.savefig(png, format="png")
  paths.write_bytes(path, png.getvalue())
  return figure


# The markdown ---------------------------------------------------------------


def _fmt(value):
  if value is None or (isinstance(value, float) and not math.isfinite(value)):
    return "–"
  if float(value).is_integer() and abs(value) < 1e9:
    return str(int(value))
  return f"{value:.4g}"


def _relative(path, out):
  if paths.is_remote(path) != paths.is_remote(out):
    return path  # no relative path leads from a disk into a bucket
  return os.path.relpath(path, out).replace(os.sep, "/")


def _last(values):
  finite = np.flatnonzero(np.isfinite(values))
  return float(values[finite[-1]]) if finite.size else None


def _table(header, rows):
  lines = ["| " + " | ".join(header) + " |",
           "|" + " --- |" * len(header)]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return lines + [""]


def _picked(series):
  """At most MAX_SAMPLE_ROUNDS of `series` [(round, path)]: the first, the
  last and evenly between."""
  if len(series) <= MAX_SAMPLE_ROUNDS:
    return series
  index = np.unique(np.round(np.linspace(0, len(series) - 1,
                                         MAX_SAMPLE_ROUNDS)).astype(int))
  return [series[i] for i in index]


def _image_link(path, out, copy_to):
  """The markdown path of a sample PNG: its own, or a copy under
  `copy_to` (a report that travels without its workdir)."""
  if copy_to is not None:
    target = os.path.join(copy_to, os.path.basename(path))
    paths.write_bytes(target, paths.read_bytes(path))
    path = target
  return _relative(path, out)


def _samples_lines(run, out, self_contained):
  copy_to = (os.path.join(out, "samples", re.sub(r"[^A-Za-z0-9_.-]", "_",
                                                 run.label))
             if self_contained else None)
  lines = []
  for series, items in run.round_samples.items():
    picked = _picked(items)
    shown = (f"{len(picked)} of {len(items)} rounds" if len(picked) <
             len(items) else f"{len(items)} round(s)")
    folder = os.path.dirname(items[0][1])
    lines += [f"**{series or 'samples'}** ({shown}; every round is in "
              f"`{folder if self_contained else _relative(folder, out)}/`)",
              ""]
    lines += _table([f"round {t}" for t, _ in picked],
                    [[f"![{series or 'samples'} round {t}]({_image_link(p, out, copy_to)})"
                      for t, p in picked]])
  for path in run.other_samples:
    name = os.path.basename(path)
    lines += [f"**{name}**", "", f"![{name}]({_image_link(path, out, copy_to)})",
              ""]
  return lines


def _launch_rows(run):
  rows = []
  for launch in run.launches:
    first, last = launch.get("first_round"), launch.get("last_round")
    trained = (f"{first}–{last}" if first is not None else "none"
               if "ended" in launch else "no end recorded (running, or "
               "killed)")
    wall = launch.get("wall_seconds")
    rows.append([launch.get("started", "?"), trained,
                 f"{wall:.1f}" if isinstance(wall, (int, float)) else "–",
                 f"{launch.get('device_count', '?')} × "
                 f"{launch.get('device_kind', '?')} "
                 f"({launch.get('backend', '?')})",
                 str(launch.get("process_count", "?"))])
  return rows


def _round_time_lines(runs):
  rows = []
  for run in runs:
    seconds = run.metrics.get("round_seconds")
    if seconds is None or not np.isfinite(seconds).any():
      continue
    finite = seconds[np.isfinite(seconds)]
    later = finite[1:] if finite.size > 1 else finite
    rows.append([run.label, str(finite.size), f"{finite.sum():.1f}",
                 f"{finite[0]:.1f}", f"{np.median(later):.1f}"])
  if not rows:
    return []
  return _table(["run", "rounds", "total s", "first round s (compiles)",
                 "median later round s"], rows)


def build_markdown(runs, out, figures, self_contained=False):
  single = len(runs) == 1
  title = runs[0].label if single else " vs ".join(r.label for r in runs)
  lines = [f"# Report: {title}", "",
           f"Written {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} by "
           "`python -m introjax.report` from "
           + ", ".join(f"`{r.workdir}`" for r in runs) + ".", ""]
  header = ["run", "trainer", "rounds logged", "devices"]
  rows = []
  for run in runs:
    trainer = next((l["trainer"] for l in run.launches if l.get("trainer")),
                   "?")
    devices = sorted({f"{l.get('device_count', '?')} × "
                      f"{l.get('device_kind', '?')}" for l in run.launches})
    rows.append([run.label, trainer,
                 f"{len(run.rounds)} ({run.rounds.min()}–{run.rounds.max()})"
                 if len(run.rounds) else "0", ", ".join(devices) or "–"])
  lines += _table(header, rows)

  results = list(dict.fromkeys(k for r in runs for k in r.results))
  if results:
    lines += ["## Final results (results.json)", ""]
    lines += _table(["metric"] + [r.label for r in runs],
                    [[f"`{k}`"] + [_fmt(r.results.get(k)) for r in runs]
                     for k in results])

  if figures:
    lines += ["## Metrics over rounds", ""]
    for group, (path, panels) in figures.items():
      keys = list(dict.fromkeys(l.key for ls in panels.values() for l in ls))
      lines += [f"### {group}", "", f"![{group}]({_relative(path, out)})", "",
                "Shows " + ", ".join(f"`{k}`" for k in keys) + ".", ""]

  keys = list(dict.fromkeys(k for r in runs for k in r.metrics))
  if keys:
    constant = constant_keys(runs)
    lines += ["## Every logged metric (metrics.jsonl)", ""]
    if single:
      run = runs[0]
      rows = []
      for k in keys:
        v = run.metrics[k]
        finite = v[np.isfinite(v)]
        rows.append([f"`{k}`", _fmt(float(finite[0]) if finite.size else None),
                     _fmt(_last(v)),
                     _fmt(float(finite.min()) if finite.size else None),
                     _fmt(float(finite.max()) if finite.size else None)])
      lines += _table(["metric", "first", "last", "min", "max"], rows)
    else:
      lines += ["The last round's value of each run.", ""]
      lines += _table(["metric"] + [r.label for r in runs],
                      [[f"`{k}`"] + [_fmt(_last(r.metrics[k])) if k in
                                     r.metrics else "–" for r in runs]
                       for k in keys])
    plotted = {l.key for _, panels in figures.values()
               for ls in panels.values() for l in ls}
    constant = {k: v for k, v in constant.items() if k not in plotted}
    if constant:
      lines += ["Not plotted, the same in every round: " + ", ".join(
          f"`{k}` = {_fmt(v)}" for k, v in constant.items()) + ".", ""]

  lines += ["## Samples", ""]
  for run in runs:
    if not single:
      lines += [f"### {run.label}", ""]
    sample_lines = _samples_lines(run, out, self_contained)
    lines += sample_lines or ["No PNGs under samples/.", ""]

  lines += ["## Timings and devices", ""]
  lines += _round_time_lines(runs)
  for run in runs:
    rows = _launch_rows(run)
    if rows:
      lines += [f"Launches of {run.label} (launches.jsonl):", ""]
      lines += _table(["started", "rounds trained", "wall s", "devices",
                       "processes"], rows)
  return "\n".join(lines)


def _figure_title(group, runs):
  names = {"train": "classification step (critic / classifier fit)",
           "synthesis": "synthesis (sampling by ascent / Langevin)",
           "timings": "timings", "other": "other metrics"}
  label = runs[0].label if len(runs) == 1 else ", ".join(r.label for r in runs)
  return f"{label}: {names.get(group, group + ' metrics')} over rounds"


def write_report(workdirs, out=None, self_contained=False):
  """Writes report.md and its PNGs for `workdirs` (one or several runs)
  into `out` (default <workdir>/report for one run, else a folder beside
  the first named after all of them); returns report.md's path."""
  if isinstance(workdirs, str):
    workdirs = [workdirs]
  labels = [_label(w) for w in workdirs]
  if len(set(labels)) < len(labels):  # runs/a/seed_0 and runs/b/seed_0
    labels = [_normalized(w).replace(os.sep, "/") for w in workdirs]
  runs = [load_run(w, l) for w, l in zip(workdirs, labels)]
  if out is None:
    out = (os.path.join(workdirs[0], REPORT_DIR) if len(runs) == 1 else
           os.path.join(os.path.dirname(_normalized(workdirs[0])),
                        "report_" + "_vs_".join(_label(w) for w in workdirs)))
  paths.makedirs(out)
  figures = collections.OrderedDict()
  groups = lines_by_panel(runs)
  # One colour per (run, variant) in every figure of the report.
  colours = series_colours([l for panels in groups.values()
                            for lines in panels.values() for l in lines])
  for group, panels in groups.items():
    path = os.path.join(out, f"{re.sub(r'[^A-Za-z0-9_.-]', '_', group)}.png")
    plot_group(path, _figure_title(group, runs), panels, colours)
    figures[group] = (path, panels)
  path = os.path.join(out, REPORT_NAME)
  paths.write_text(path, build_markdown(runs, out, figures, self_contained))
  return path


def _define_flags():
  """The command line's flags, defined only when this module is the
  program (the trainers import it, and their own flags include --workdir)."""
  return dict(
      workdir=flags.DEFINE_string("workdir", None, "A run's workdir."),
      workdirs=flags.DEFINE_list("workdirs", None, "Several runs' workdirs, "
                                 "comma-separated, shown side by side."),
      out=flags.DEFINE_string("out", None, "Where report.md and its PNGs go "
                              "(default <workdir>/report; for several runs "
                              "report_<a>_vs_<b> beside the first)."),
      self_contained=flags.DEFINE_bool(
          "self_contained", False, "Copy the sample PNGs the report shows "
          "into --out, so the folder can be moved without the workdirs."))


_FLAGS = {}


def main(argv):
  if len(argv) > 1:
    raise UserError(f"Unexpected arguments: {' '.join(argv[1:])}; name runs "
                    "with --workdir or --workdirs.")
  workdir, several = _FLAGS["workdir"].value, _FLAGS["workdirs"].value
  if bool(workdir) == bool(several):
    raise UserError("Name one run with --workdir=runs/x or several with "
                    "--workdirs=runs/a,runs/b (not both).")
  workdirs = [workdir] if workdir else several
  for w in workdirs:
    if not paths.is_dir(w):
      raise UserError(f"No workdir {w}; name a folder a run wrote.")
  path = write_report(workdirs, _FLAGS["out"].value,
                      _FLAGS["self_contained"].value)
  logging.info("Report in %s", path)


if __name__ == "__main__":
  _FLAGS.update(_define_flags())
  cli.run_app(main)
