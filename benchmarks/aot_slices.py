r"""BENCHMARKS.md's "Compiled for TPU slices" rows from `introjax.aot --json`
reports: one row per (config, slice, step).

    for topo in v5e:16x16 v4:2x2x4 v5p:4x4x4; do
      JAX_PLATFORMS=cpu python -m introjax.aot --config=configs/icl_cifar10.py \
          --topology=$topo --steps="classification (data,synthesis" --json \
          > reports/icl_${topo/:/_}.json
    done
    python benchmarks/aot_slices.py reports/*.json

Times are estimates from the compiled programs (XLA's own where it gives
one the chip's peaks allow, else the larger of FLOPs / peak bf16 FLOP/s and
bytes / HBM bandwidth from the chip's datasheet: `aot.estimated_seconds`),
per iteration of the step's loop and per round
(× the loop's iterations), not measurements.
"""
import json
import sys

GiB = 1 << 30


def _size(n):
  return f"{n / GiB:.2f} GiB" if n >= GiB / 10 else f"{n / (1 << 20):.1f} MiB"


def _collectives(step):
  if step.get("refused"):
    return "XLA: out of HBM"
  parts = [f"{kind} ×{c['count']} (largest {_size(c['max'])})"
           for kind, c in sorted(step["collectives"].items())]
  return ", ".join(parts) or "none"


def rows(report):
  chip = report["chip"]
  for step in report["steps"]:
    per_iteration = step["estimated_seconds"]
    how = step["estimate_basis"]
    watched = ", ".join(
        f"{name} {_size(b)}: {'GATHERED' if name in step['gathered'] else 'no'}"
        for name, b in step["watched_bytes"].items())
    yield (f"| {report['config']} | {report['topology']} "
           f"({report['devices']} × {chip['name']}) | {step['name']} | "
           f"{_size(step['argument_bytes'])} | {_size(step['temp_bytes'])} | "
           f"{_size(step['resident_bytes'])} | "
           f"**{_size(step['total_bytes'])}** "
           f"({100 * step['total_bytes'] / chip['hbm_bytes']:.0f}%) | "
           f"{step['flops'] / 1e9:.3g} | {step['bytes_accessed'] / 1e9:.3g} | "
           f"{per_iteration * 1e3:.3g} ms ({how}) × {step['iterations']} = "
           f"{per_iteration * step['iterations']:.3g} s | "
           f"{_collectives(step)} | {watched} |")


HEADER = ("| config | slice | step | arguments | temporaries | resident | "
          "total per device (of HBM) | GFLOP / iteration / device | "
          "GB accessed / iteration / device | est. time per iteration × "
          "iterations = per round | collectives in the program | pool / "
          "dataset per device: gathered? |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|")


def main(paths):
  print(HEADER)
  for path in paths:
    with open(path) as f:
      text = f.read()
    if not text.strip():
      continue
    for row in rows(json.loads(text)):
      print(row)


if __name__ == "__main__":
  main(sys.argv[1:])
