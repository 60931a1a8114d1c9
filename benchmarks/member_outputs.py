r"""Records what every member produces on its tiny config, and compares two
recordings: the check that a refactor kept behaviour.

    python benchmarks/member_outputs.py --out=before.npz          # record
    python benchmarks/member_outputs.py --out=after.npz --compare=before.npz

Each member trains through the command line (`python -m introjax.main`,
so config parsing is part of what is compared) into a temporary workdir;
the IGM and WINN texture runs also draw new textures and a style transfer
through `python -m introjax.sample`. Recorded: every number of every round
of `metrics.jsonl` (timings left out), `results.json` of the classifiers,
and the pixels of every PNG the run wrote.

Numbers must agree to float32 rounding (relative 1e-5, integers exactly)
and images to one grey level per pixel; `--members=a,b` runs a subset.
Exit status 1 when the comparison finds a difference.
"""
import argparse
import io
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]

# name: (config, overrides, sample commands (extra introjax.sample flags))
MEMBERS = {
    "igm": ("igm_texture.py:tiny", [], [
        ["--size=24", "--num_images=2"],
        ["--size=24", "--num_images=1", "--critics=1"],
        ["--content=camera", "--alpha=0.3", "--content_size=48"]]),
    "igm_single": ("igm_texture.py:tiny", ["--config.cascade.single=True"], []),
    "winn_texture": ("winn_texture.py:tiny", [], [
        ["--size=32", "--num_images=2"]]),
    "winn_cascade": ("winn_texture.py:tiny", ["--config.cascade.critics=3"], [
        ["--size=32", "--num_images=2", "--critics=2"]]),
    "igm_faces": ("igm_celeba.py:tiny", [], []),
    "winn_faces": ("winn_celeba.py:tiny", [], []),
    # One classifier run crosses the learning-rate decay.
    "icl_softmax": ("icl_digits.py:tiny", ["--config.train.decay_round=2"],
                    []),
    "icl_one_vs_all": ("icl_digits.py:tiny", ["--config.icl.mode=one_vs_all"],
                       []),
    "icl_binary": ("icl_digits.py:tiny", ["--config.icl.mode=binary",
                                          "--config.icl.positive_class=3"], []),
    "winn_classifier": ("winn_mnist_cls.py:tiny", [], []),
}

_SKIPPED = ("round_seconds",)


def _run(args, env):
  result = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env,
                          capture_output=True, text=True)
  if result.returncode:
    raise SystemExit(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")


def record_member(name, workroot, env):
  """{key: array} of one member's outputs."""
  config, overrides, samples = MEMBERS[name]
  workdir = os.path.join(workroot, name)
  _run(["introjax.main", f"--config=configs/{config}",
        f"--workdir={workdir}", *overrides], env)
  for i, flags in enumerate(samples):
    _run(["introjax.sample", f"--workdir={workdir}",
          f"--out={os.path.join(workdir, 'samples', f'sample_{i}.png')}",
          *flags], env)
  out = {}
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      row = json.loads(line)
      for key, value in _flat(row).items():
        if key not in _SKIPPED:
          out[f"{name}/metrics/{row['round']}/{key}"] = np.asarray(value)
  results = os.path.join(workdir, "results.json")
  if os.path.exists(results):
    with open(results) as f:
      for key, value in _flat(json.load(f)).items():
        out[f"{name}/results/{key}"] = np.asarray(value)
  folder = os.path.join(workdir, "samples")
  for png in sorted(os.listdir(folder)):
    with open(os.path.join(folder, png), "rb") as f:
      out[f"{name}/png/{png}"] = np.asarray(Image.open(io.BytesIO(f.read())))
  return out


def _flat(tree, prefix=""):
  if isinstance(tree, dict):
    flat = {}
    for k, v in tree.items():
      flat.update(_flat(v, f"{prefix}{k}/"))
    return flat
  if isinstance(tree, (list, tuple)) and tree and isinstance(
      tree[0], (dict, list)):
    flat = {}
    for i, v in enumerate(tree):
      flat.update(_flat(v, f"{prefix}{i}/"))
    return flat
  return {prefix.rstrip("/"): tree}


def compare(before, after):
  """Lines describing every difference (empty: the same)."""
  problems = []
  for key in sorted(set(before) | set(after)):
    if key not in after:
      problems.append(f"{key}: missing after")
      continue
    if key not in before:
      problems.append(f"{key}: new after")
      continue
    a, b = before[key], after[key]
    if a.shape != b.shape:
      problems.append(f"{key}: shape {a.shape} → {b.shape}")
    elif "/png/" in key:
      diff = np.abs(a.astype(int) - b.astype(int))
      if diff.max() > 1:
        problems.append(f"{key}: pixels differ by up to {diff.max()} "
                        f"(mean {diff.mean():.3f})")
    elif a.dtype.kind in "fc":
      if not np.allclose(a, b, rtol=1e-5, atol=1e-7, equal_nan=True):
        problems.append(f"{key}: {a} → {b}")
    elif not np.array_equal(a, b):
      problems.append(f"{key}: {a} → {b}")
  return problems


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="the recording (.npz)")
  parser.add_argument("--compare", default="", help="an earlier recording")
  parser.add_argument("--members", default=",".join(MEMBERS),
                      help=f"comma-separated subset of {', '.join(MEMBERS)}")
  args = parser.parse_args(argv)
  names = args.members.split(",")
  unknown = set(names) - set(MEMBERS)
  if unknown:
    parser.error(f"unknown members {sorted(unknown)}")
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join(
      [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(
          os.pathsep) if p]))
  recorded = {}
  with tempfile.TemporaryDirectory(prefix="introjax-members-") as root:
    for name in names:
      print(f"{name} …", flush=True)
      recorded.update(record_member(name, root, env))
  np.savez_compressed(args.out, **recorded)
  print(f"{len(recorded)} outputs of {len(names)} members in {args.out}")
  if args.compare:
    with np.load(args.compare) as f:
      before = {k: f[k] for k in f.files
                if k.split("/", 1)[0] in names}
    problems = compare(before, recorded)
    for line in problems:
      print(line)
    print("the same" if not problems else f"{len(problems)} differences")
    return 1 if problems else 0
  return 0


if __name__ == "__main__":
  sys.exit(main())
