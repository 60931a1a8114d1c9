r"""Compares trained texture models on the same texture: sliced Wasserstein
distance to the data, and their samples side by side.

    python -m introjax.compare --workdirs=runs/igm_single,runs/winn_brick \
        --size=64 --num_images=64 --out=runs/compare

Each workdir's saved cascade (IGM, IGM-single, WINN-single or a WINN
cascade) draws `--num_images` new textures of `--size`² from p0, and each set
is scored against the same random crops of the texture with the same
projections, so the numbers differ only by the models. Written under --out:
`compare.png` (the data's crops, then each model's samples, left to right),
`compare.md` and `compare.json`.
"""
import dataclasses
import json
import os
import time

from absl import flags
from absl import logging
import jax
import numpy as np

from introjax import cli
from introjax import paths
from introjax.errors import UserError
from introjax.eval import evaluators
from introjax.eval.images import grid, save_png
from introjax.saved import load_model

_WORKDIRS = flags.DEFINE_list("workdirs", None, "Training workdirs of texture "
                              "models trained on one texture.", required=True)
_SIZE = flags.DEFINE_integer("size", 64, "Side of each sample (≥ 16).")
_NUM = flags.DEFINE_integer("num_images", 64, "Samples per model.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling and SWD seed.")
_OUT = flags.DEFINE_string("out", None, "Output folder (default: "
                           "<first workdir>/compare).")

# What must agree for two models to have learned the same data.
_SAME_DATA = ("data.texture", "data.image_path", "data.image_size",
              "data.pad", "data.channels")


def _lookup(config, dotted):
  for part in dotted.split("."):
    config = config.get(part)
  return config


def compare(workdirs, size, num, seed):
  """[{workdir, model, round, critics, seconds, swd_*}], crops of the
  texture and each model's samples (host arrays)."""
  if size < 16:
    raise UserError(f"--size={size} is below 16, the coarsest level of the "
                    "sliced Wasserstein distance; use at least 16.")
  key = jax.random.PRNGKey(seed)
  k_sample, k_swd = jax.random.split(key)
  rows, samples, first = [], [], None
  for workdir in workdirs:
    # The first model's positives are the crops every set is scored against.
    model, cascade, round_index = load_model(workdir, with_data=first is None)
    if first is None:
      first = model
    for field in _SAME_DATA:
      ours, theirs = _lookup(model.config, field), _lookup(first.config, field)
      if ours != theirs:
        raise UserError(
            f"{workdir} was trained with {field}={ours!r} but {workdirs[0]} "
            f"with {theirs!r}; compare models of the same texture.")
    began = time.perf_counter()
    textures, _ = model.generate(cascade, num, size, k_sample)
    textures = jax.device_get(textures)
    seconds = time.perf_counter() - began
    rows.append({"workdir": workdir, "model": model.describe(),
                 "round": round_index, "critics": int(cascade.count),
                 "seconds": round(seconds, 1),
                 **evaluators.run("swd", dataclasses.replace(
                     first.evaluation_subject(textures), key=k_swd))})
    samples.append(textures)
    logging.info("%s (%s, round %d): SWD %.1f", workdir, model.describe(),
                 round_index, rows[-1]["swd_mean"])
  real = first.positive_patches(k_sample, num, size)
  return rows, jax.device_get(real), samples


def markdown(rows):
  resolutions = sorted({k for r in rows for k in r
                        if k.startswith("swd_") and k != "swd_mean"},
                       key=lambda k: -int(k[4:]))
  head = ["workdir", "model", "round", "critics", "SWD mean"] + [
      f"SWD {k[4:]}" for k in resolutions] + ["sampling s"]
  lines = ["| " + " | ".join(head) + " |",
           "|" + "---|" * len(head)]
  for r in rows:
    cells = [r["workdir"], r["model"], str(r["round"]), str(r["critics"]),
             f"{r['swd_mean']:.1f}"] + [f"{r[k]:.1f}" for k in resolutions] + [
                 f"{r['seconds']:.1f}"]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def side_by_side(blocks, gap=8):
  """Grids of equal height, left to right, with white gaps."""
  sheets = [grid(b) for b in blocks]
  height = max(s.shape[0] for s in sheets)
  channels = sheets[0].shape[2]
  parts = []
  for i, sheet in enumerate(sheets):
    padded = np.full((height, sheet.shape[1], channels), 255, np.uint8)
    padded[:sheet.shape[0]] = sheet
    parts.append(padded)
    if i < len(sheets) - 1:
      parts.append(np.full((height, gap, channels), 255, np.uint8))
  return np.concatenate(parts, axis=1)


def main(argv):
  del argv
  rows, real, samples = compare(_WORKDIRS.value, _SIZE.value, _NUM.value,
                                _SEED.value)
  out = _OUT.value or os.path.join(_WORKDIRS.value[0], "compare")
  paths.makedirs(out)
  save_png(os.path.join(out, "compare.png"), side_by_side([real] + samples))
  table = markdown(rows)
  paths.write_text(
      os.path.join(out, "compare.md"),
      f"{_NUM.value} samples of {_SIZE.value}×{_SIZE.value} per model "
      f"against as many random crops of the texture (SWD ×10³; "
      f"compare.png: the crops, then each model left to right).\n\n" + table)
  paths.write_text(os.path.join(out, "compare.json"),
                   json.dumps(rows, indent=1))
  print(table, end="")
  logging.info("Wrote %s", out)


def run(argv=None):
  cli.run_app(main, argv)


if __name__ == "__main__":
  run()
