r"""Fresh class chains from a saved STIC run's classifiers, with Score-STIC's
learned-score guidance on and off: is a bad Score-STIC sample the guidance's
doing or its classifier's? (BENCHMARKS.md, "STIC §5's variants".)

    python benchmarks/score_stic_chains.py --workdir=runs/stic_variants \
        --guidance=0.05,0 --png=docs/score_stic_chains.png

20 chains a class from p0, 100 sampler steps, each variant's own sampler;
Cls_R by a judge trained on the run's real training images; the share of
pixels within 0.05 of the clip; SWD (×10³, from the 8×8 level) against as
many real images.
"""
import argparse

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from introjax import checkpoint as ckpt_lib
from introjax import parallel
from introjax import saved
from introjax.data import datasets
from introjax.eval import judge
from introjax.eval import swd
from introjax.eval.images import save_grid
from introjax.training import stic


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--guidance", default="0.05,0")
  parser.add_argument("--per_class", type=int, default=20)
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--png", default="")
  args = parser.parse_args()
  checkpoints = ckpt_lib.Checkpointer(args.workdir)
  round_index, meta = saved._latest_meta(checkpoints, args.workdir, None)  # pylint: disable=protected-access
  config = ml_collections.ConfigDict(meta["config"])
  train, _ = datasets.load_classification(config.data)
  real = np.asarray(datasets.to_unit_range(jnp.asarray(train.images)))
  judge_fn, judge_params = judge.train_judge(real, train.labels, train.num_classes,
                                             *judge.settings(config))
  runs = [("stic", None)] + [("score_stic", float(g))
                             for g in args.guidance.split(",")]
  grids = []
  for variant, guidance in runs:
    run_config = ml_collections.ConfigDict(config.to_dict())
    if guidance is not None:
      run_config.stic.score.guidance = guidance
    model = stic.SynthesizeItClassifier(run_config, parallel.make_mesh(),
                                        shapes=meta["shapes"])
    items = checkpoints.restore(round_index, model.restore_targets(meta))
    if variant not in items["variants"]:
      continue
    x, y = model.sample_classes(
        items["variants"][variant]["params"], items["references"]["images"],
        list(range(model.k)), args.per_class, args.steps,
        jax.random.PRNGKey(0), variant=variant)
    rows = np.random.default_rng(0).choice(len(real), len(x), replace=False)
    distance = swd.sliced_wasserstein(real[rows], x, 0,
                                      min_resolution=8)["mean"]
    label = variant if guidance is None else f"{variant} guidance {guidance:g}"
    print(f"| {label} | {judge.accuracy(judge_fn, judge_params, x, y):.3f} | "
          f"{np.mean(np.abs(x) > 0.95):.2f} | {distance:.1f} |", flush=True)
    grids.append(x.reshape(model.k, args.per_class, *x.shape[1:])[:, :5])
  checkpoints.close()
  if args.png:   # a row per class, 5 chains of each run side by side
    save_grid(args.png, np.concatenate(grids, axis=1).reshape(
        -1, *grids[0].shape[2:]), columns=5 * len(grids), scale=model.display_scale)


if __name__ == "__main__":
  main()
