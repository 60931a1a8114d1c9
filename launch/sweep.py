r"""Runs one config over a grid (or list) of overrides and several seeds, and
summarises the results.

    python launch/sweep.py --config=configs/icl_digits.py \
        --root=runs/icl_digits_seeds --seeds=0,1,2 [-- --config.icl.mode=one_vs_all]
    python launch/sweep.py --config=configs/icl_digits.py --root=runs/lr \
        --grid="train.learning_rate=0.01,0.001;icl.mode=softmax,one_vs_all"
    python launch/sweep.py --config=configs/igm_texture.py --root=runs/pts \
        --points="cascade.single=True,train.learning_rate=0.01;cascade.single=False"

--grid: axes separated by ";", each "key=v1,v2,…"; every combination is a
point. --points: points separated by ";", each "key=v,key=v,…". Values may
not contain "," or ";" (give tuples through the overrides after "--").

Each (point, seed) trains in ROOT/<point>/seed_N, <point> spelling its
overrides (ROOT/seed_N without a grid); rerunning resumes, as with
introjax.main. Runs go one after another; ROOT/summary.md then holds one
row per point: the mean ± std over seeds of every number of the runs'
final results (results.json, else the last line of metrics.jsonl).
--print_only prints the introjax.main commands instead, --emit_pod_commands
the launch/tpu_pod.py commands (with --pod_args) for a TPU slice, after
compiling every point for the slice's --accelerator_type here
(`python -m introjax.aot`, once per point: seeds do not change shapes) and
printing nothing if one would not fit (--skip_aot_check skips it; the
emitted commands then check for themselves); --summarize_only summarises
finished runs.
"""
import argparse
import itertools
import os
import re
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                ".."))
from introjax import paths  # pylint: disable=g-import-not-at-top
from introjax.eval import summary as summary_lib  # pylint: disable=g-import-not-at-top


class SweepError(ValueError):
  """A malformed --grid or --points."""


def _assignment(text, flag):
  key, sep, value = text.partition("=")
  if not sep or not key.strip() or not value.strip():
    raise SweepError(f"{flag} has {text!r}, which is not key=value; write "
                     "e.g. train.learning_rate=0.01.")
  return key.strip().removeprefix("--config.").removeprefix("config."), \
      value.strip()


def parse_grid(text):
  """"a=1,2;b=x,y" -> the 4 points [(("a","1"),("b","x")), …] in order."""
  axes = []
  for axis in filter(None, (a.strip() for a in text.split(";"))):
    key, values = _assignment(axis, "--grid")
    axes.append([(key, v.strip()) for v in values.split(",") if v.strip()])
  return [tuple(p) for p in itertools.product(*axes)]


def parse_points(text):
  """"a=1,b=x;a=2" -> [(("a","1"),("b","x")), (("a","2"),)]."""
  return [tuple(_assignment(a, "--points") for a in point.split(",")
                if a.strip())
          for point in text.split(";") if point.strip()]


def point_name(point):
  """A folder name spelling the point's overrides ("" without any)."""
  name = "__".join(f"{k}={v}" for k, v in point)
  return re.sub(r"[^A-Za-z0-9_.=+-]", "-", name)


def point_flags(point):
  return [f"--config.{k}={v}" for k, v in point]


def workdir(root, point, seed):
  return os.path.join(root, point_name(point), f"seed_{seed}")


def runs(config, root, points, seeds, extra):
  """[(point, seed, workdir, introjax.main arguments)] for every run."""
  return [(p, s, workdir(root, p, s),
           [f"--config={config}", f"--workdir={workdir(root, p, s)}",
            f"--config.seed={s}", *point_flags(p), *extra])
          for p in points for s in seeds]


def commands(config, root, seeds, extra, points=((),)):
  """The introjax.main commands, one per (point, seed)."""
  return [[sys.executable, "-m", "introjax.main", *args]
          for *_, args in runs(config, root, points, seeds, extra)]


def pod_commands(config, root, seeds, extra, points, pod_args):
  """The launch/tpu_pod.py command of each (point, seed)."""
  out = []
  for _, _, folder, args in runs(config, root, points, seeds, extra):
    overrides = [a for a in args if a.startswith("--config.")]
    out.append(["python", "launch/tpu_pod.py", *shlex.split(pod_args),
                f"--config={config}", f"--workdir={folder}", "--",
                *overrides])
  return out


def accelerator_type(pod_args):
  """--accelerator_type=… of tpu_pod.py's flags, or None."""
  for arg in shlex.split(pod_args):
    if arg.startswith("--accelerator_type="):
      return arg.partition("=")[2]
  return None


def check_points(config, points, extra, pod_args):
  """Compiles every point for the slice of `pod_args` here (introjax.aot);
  returns the exit status of the first point that does not fit, else 0."""
  repo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
  accelerator = accelerator_type(pod_args)
  if accelerator is None:
    print("sweep.py: --emit_pod_commands checks every point for the slice "
          "first; put --accelerator_type=… in --pod_args or pass "
          "--skip_aot_check.", file=sys.stderr)
    return 2
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join(
      [repo] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                if p]))
  for point in points:
    command = [sys.executable, "-m", "introjax.aot", f"--config={config}",
               f"--topology={accelerator}", *point_flags(point), *extra]
    result = subprocess.run(command, env=env, stdout=subprocess.DEVNULL)
    if result.returncode:
      print(f"sweep.py: point {point_name(point) or '(config)'} does not "
            f"pass the compile check for {accelerator} (its reason is "
            "above); no pod command is printed.", file=sys.stderr)
      return result.returncode
  return 0


def summary_table(config, root, points, seeds, extra):
  """summary.md's text: one row per point over its seeds."""
  rows = {}
  for point in points:
    folders = [workdir(root, point, s) for s in seeds]
    rows[point_name(point) or "(config)"] = summary_lib.summarize(
        [summary_lib.load_final(f) for f in folders],
        skip=("seed", "round", "round_seconds", "rounds"))
  title = f"{config} {' '.join(extra)} over seeds " \
          f"{','.join(map(str, seeds))}".strip()
  if len(points) == 1:
    return summary_lib.summary_markdown(next(iter(rows.values())), title)
  return summary_lib.grid_markdown(rows, title)


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  extra = argv[argv.index("--") + 1:] if "--" in argv else []
  own = argv[:argv.index("--")] if "--" in argv else argv
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", required=True)
  parser.add_argument("--root", required=True)
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--grid", default="")
  parser.add_argument("--points", default="")
  parser.add_argument("--print_only", action="store_true")
  parser.add_argument("--emit_pod_commands", action="store_true")
  parser.add_argument("--pod_args", default="", help="tpu_pod.py's own "
                      "flags for --emit_pod_commands, e.g. \"--name=v4 "
                      "--zone=us-central2-b --accelerator_type=v4-32 "
                      "--runtime_version=tpu-ubuntu2204-base\"")
  parser.add_argument("--skip_aot_check", action="store_true",
                      help="--emit_pod_commands without compiling the "
                      "points for the slice here first")
  parser.add_argument("--summarize_only", action="store_true")
  args = parser.parse_args(own)
  try:
    if args.grid and args.points:
      raise SweepError("Give --grid or --points, not both.")
    points = (parse_grid(args.grid) if args.grid else
              parse_points(args.points) if args.points else [()])
    if not points:
      raise SweepError("--grid/--points name no point; write e.g. "
                       "--grid=train.learning_rate=0.01,0.001.")
  except SweepError as e:
    print(f"sweep.py: {e}", file=sys.stderr)
    return 2
  seeds = [int(s) for s in args.seeds.split(",")]
  if args.emit_pod_commands:
    pod_args = args.pod_args
    if not args.skip_aot_check:
      code = check_points(args.config, points, extra, pod_args)
      if code:
        return code
      pod_args = f"{pod_args} --skip_aot_check".strip()   # checked here
    print("\n".join(shlex.join(c) for c in pod_commands(
        args.config, args.root, seeds, extra, points, pod_args)))
    return 0
  todo = runs(args.config, args.root, points, seeds, extra)
  if args.print_only:
    print("\n".join(shlex.join([sys.executable, "-m", "introjax.main", *a])
                    for *_, a in todo))
    return 0
  if not args.summarize_only:
    for point, seed, _, run_args in todo:
      command = [sys.executable, "-m", "introjax.main", *run_args]
      label = f"{point_name(point) or 'config'} seed {seed}"
      print(f"[sweep] {label}: {shlex.join(command)}", flush=True)
      code = subprocess.call(command)
      if code:
        print(f"[sweep] {label} failed (exit {code}); stopping.",
              file=sys.stderr)
        return code
  text = summary_table(args.config, args.root, points, seeds, extra)
  paths.write_text(os.path.join(args.root, "summary.md"), text)
  print(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
