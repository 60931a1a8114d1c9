r"""Scores the class-conditional samples of a STIC run and the last round's
pseudo-negatives of an ICL run on the same data with the same evaluators:
SWD to real training images, Cls_R and Cls_G (the same independent judges,
the same evaluation key), so the two methods are compared on one scale.

    python -m introjax.main --config=configs/stic_digits.py --workdir=runs/stic
    python -m introjax.main --config=configs/icl_digits.py --workdir=runs/icl_digits
    python benchmarks/stic_vs_icl.py --stic=runs/stic --icl=runs/icl_digits

Prints a Markdown table (and --out writes it): one row per STIC sampler
variant and one for ICL; --png writes the sets side by side (a row per
class, the first --columns samples of each). The `nn_mse` column is each
sample's mean squared distance to its nearest training image (on [-1, 1];
`train_nn_mse`, the same for training images to their nearest other one,
gives the scale): a sampler that copies training images scores far below
the training set's own spacing.
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
from introjax.eval.images import grid, readable_scale, save_png
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


def _nearest_mse(images, train, skip_self=False):
  """Mean over `images` of the MSE to the nearest of `train` (the first
  len(images) rows of `train` are the images themselves if skip_self)."""
  flat = images.reshape(len(images), -1).astype(np.float64)
  bank = train.reshape(len(train), -1).astype(np.float64)
  d = ((flat ** 2).sum(1)[:, None] - 2 * flat @ bank.T +
       (bank ** 2).sum(1)[None]) / flat.shape[1]
  if skip_self:
    d[np.arange(len(images)), np.arange(len(images))] = np.inf
  return float(d.min(axis=1).mean())


def _side_by_side(sets, columns):
  """One sheet: each set's grid (a row per class), 8 pixels apart."""
  sheets = []
  for images, labels in sets.values():
    rows = [images[labels == c][:columns] for c in np.unique(labels)]
    block = np.concatenate(rows)
    scale = readable_scale(block.shape[1])
    block = block.repeat(scale, axis=1).repeat(scale, axis=2)
    sheets.append(grid(block, columns))
  height = max(s.shape[0] for s in sheets)
  gap = np.full((height, 8, sheets[0].shape[2]), 255, np.uint8)
  padded = [np.pad(s, ((0, height - s.shape[0]), (0, 0), (0, 0)),
                   constant_values=255) for s in sheets]
  return np.concatenate(sum(([s, gap] for s in padded), [])[:-1], axis=1)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--stic", required=True, help="a STIC workdir")
  parser.add_argument("--icl", required=True, help="an ICL workdir")
  parser.add_argument("--metrics", default="swd,cls_r,cls_g")
  parser.add_argument("--out", default="")
  parser.add_argument("--png", default="")
  parser.add_argument("--columns", type=int, default=6)
  args = parser.parse_args()
  stic_run, stic_state = _restore(stic.SynthesizeItClassifier, args.stic)
  icl_run, icl_state = _restore(icl.IntrospectiveClassifier, args.icl)
  sets = {v: stic_run.class_samples(stic_state, v) for v in stic_state
          if stic.synthesises(v)}
  sets["icl"] = icl_samples(icl_run, icl_state)
  config = stic_run.config
  config.unlock()
  config.eval.final = args.metrics
  train = stic_run._subject(samples=sets["icl"]).train_set[0]
  rows = {}
  for name, samples in sets.items():
    rows[name] = evaluators.evaluate(config, "final",
                                     stic_run._subject(samples=samples))
    rows[name]["nn_mse"] = _nearest_mse(samples[0], train)
  spacing = _nearest_mse(train[:500], train, skip_self=True)
  print(f"train_nn_mse (500 training images to their nearest other one): "
        f"{spacing:.4g}")
  names = sorted({k for m in rows.values() for k in m})
  lines = ["| samples | n | " + " | ".join(names) + " |",
           "| --- | --- |" + " --- |" * len(names)]
  for name, m in rows.items():
    lines.append(f"| {name} | {len(sets[name][1])} | " +
                 " | ".join(f"{m[k]:.4g}" for k in names) + " |")
  text = "\n".join(lines)
  print(text)
  if args.png:
    save_png(args.png, _side_by_side(sets, args.columns))
  if args.out:
    with open(args.out, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  main()
