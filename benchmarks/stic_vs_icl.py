r"""Scores the class-conditional samples of a STIC run and the last round's
pseudo-negatives of an ICL run on the same data with the same evaluators:
SWD to real training images, Cls_R and Cls_G (the same independent judges,
the same evaluation key), so the two methods are compared on one scale.

    python -m introjax.main --config=configs/stic_digits.py --workdir=runs/stic
    python -m introjax.main --config=configs/icl_digits.py --workdir=runs/icl_digits
    python benchmarks/stic_vs_icl.py --stic=runs/stic --icl=runs/icl_digits

Prints a Markdown table (and --out writes it): one row per STIC sampler
variant and one for ICL.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                ".."))
# pylint: disable=g-import-not-at-top,wrong-import-position
import ml_collections
import numpy as np

from introjax import checkpoint as ckpt_lib
from introjax import parallel
from introjax.eval import evaluators
from introjax.training import icl
from introjax.training import stic


def _restore(cls, workdir):
  checkpoints = ckpt_lib.Checkpointer(workdir)
  try:
    latest = checkpoints.latest_round()
    meta = checkpoints.restore_meta(latest)
    run = cls(ml_collections.ConfigDict(meta["config"]), parallel.make_mesh())
    state = run.from_items(checkpoints.restore(latest,
                                               run.restore_targets(meta)))
  finally:
    checkpoints.close()
  return run, state


def icl_samples(run, state, variant="icl"):
  """The newest round's pseudo-negatives of `variant`, class-major, and
  their classes."""
  pool = state[variant].pool
  start = (int(np.asarray(pool.cursor)) - run.per_round) % run.capacity
  images = parallel.to_host(pool.images[start:start + run.per_round])
  return images, np.repeat(np.arange(run.heads.num_negative_classes), run.l)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--stic", required=True, help="a STIC workdir")
  parser.add_argument("--icl", required=True, help="an ICL workdir")
  parser.add_argument("--metrics", default="swd,cls_r,cls_g")
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  stic_run, stic_state = _restore(stic.SynthesizeItClassifier, args.stic)
  icl_run, icl_state = _restore(icl.IntrospectiveClassifier, args.icl)
  sets = {v: stic_run.class_samples(stic_state, v) for v in stic_state
          if stic.synthesises(v)}
  sets["icl"] = icl_samples(icl_run, icl_state)
  config = stic_run.config
  config.unlock()
  config.eval.final = args.metrics
  rows = {}
  for name, samples in sets.items():
    rows[name] = evaluators.evaluate(config, "final",
                                     stic_run._subject(samples=samples))
  names = sorted({k for m in rows.values() for k in m})
  lines = ["| samples | n | " + " | ".join(names) + " |",
           "| --- | --- |" + " --- |" * len(names)]
  for name, m in rows.items():
    lines.append(f"| {name} | {len(sets[name][1])} | " +
                 " | ".join(f"{m[k]:.4g}" for k in names) + " |")
  text = "\n".join(lines)
  print(text)
  if args.out:
    with open(args.out, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  main()
