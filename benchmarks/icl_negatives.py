r"""Why ICL's pseudo-negatives look like noise: the final ICL classifier of a
run synthesises l new pseudo-negatives per class from p0 under several stop
rules and step caps, and each set is scored on one scale (SWD to training
images, Cls_R: an independent judge's accuracy on them, nn_mse: the mean
squared distance to the nearest training image) next to the classifier's own
view of them (its decision log-odds, eq. 11's "classified as its class", and
its own-class logit against real images of that class).

    python -m introjax.main --config=configs/icl_digits.py --workdir=runs/icl_digits
    python benchmarks/icl_negatives.py --workdir=runs/icl_digits --png=icl_negatives.png

Rules (name=stop:max_steps): "logit" is ICL's stop (the first step at which
p(k|x) > 1/2), "fixed" climbs for all max_steps, "real_logit" stops once the
own-class logit reaches the median own-class logit of real images of the
class (what a real digit scores, not just "more k than the other classes").
"""
import argparse
import dataclasses
import functools
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                ".."))
# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp
import numpy as np

from introjax import parallel
from introjax.data import datasets
from introjax.eval import evaluators
from introjax.eval.images import save_png
from introjax.sampling import scores, stopping
from introjax.sampling.ascent import ascend
from introjax.training import icl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stic_vs_icl  # noqa: E402  (its restore, nearest-image and sheet code)


def _real_own_logits(run, params):
  """(K,) the median own-class logit of the training images of each class."""
  images = run.images[:run.num_train]
  labels = np.asarray(parallel.to_host(run.labels))[:run.num_train]
  logits = np.asarray(run.heads.class_logits(params, images))
  return np.array([np.median(logits[labels == k, k])
                   for k in range(run.heads.num_negative_classes)])


def synthesise(run, params, key, stop, max_steps, real_median):
  """l pseudo-negatives per class (class-major) from p0 with `stop`."""
  settings = run.settings.replace(max_steps=max_steps)
  x0 = run._start(key)
  k = run.heads.num_negative_classes
  if stop == "real_logit":
    targets = jnp.repeat(jnp.asarray(real_median, jnp.float32), run.l)

    def climb(x, key):
      del key
      own, vjp = jax.vjp(lambda x: run.heads.own_logit(params, x), x)
      return (own - targets)[:, None], vjp(jnp.ones_like(own))[0]
    rule = stopping.LogitAbove(threshold=0.0)
  else:
    climb = scores.classified_as_own(
        functools.partial(run.heads.synthesis_scores, params))
    rule = (stopping.FixedSteps() if stop == "fixed"
            else stopping.LogitAbove(threshold=0.0))
  x, stats = jax.jit(lambda x0, key: ascend(climb, x0, key, rule, settings))(
      x0, key)
  own, decision = run.heads.synthesis_scores(params, x)
  return (parallel.to_host(x), np.repeat(np.arange(k), run.l),
          dict(own_logit=float(jnp.mean(own)),
               decision=float(jnp.mean(decision)),
               steps=float(jnp.mean(stats.steps))))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True, help="an ICL workdir")
  parser.add_argument("--rules", default="logit:200,fixed:200,fixed:1000,"
                      "real_logit:1000")
  parser.add_argument("--variant", default="icl")
  parser.add_argument("--metrics", default="swd,cls_r")
  parser.add_argument("--png", default="")
  parser.add_argument("--columns", type=int, default=6)
  args = parser.parse_args()
  run, state = stic_vs_icl._restore(icl.IntrospectiveClassifier, args.workdir)
  params = state[args.variant].params
  real_median = _real_own_logits(run, params)
  config = run.config
  config.unlock()
  config.eval.final = args.metrics
  train = (parallel.to_host(datasets.to_unit_range(run.images))[:run.num_train],
           parallel.to_host(run.labels)[:run.num_train])
  base = run.evaluation_subject({})
  sets, rows = {}, {}
  key = jax.random.PRNGKey(1)
  for spec in args.rules.split(","):
    stop, _, steps = spec.partition(":")
    name = f"{stop}, ≤{steps} steps"
    images, labels, view = synthesise(run, params, key, stop, int(steps),
                                      real_median)
    subject = dataclasses.replace(base, generated=images,
                                  generated_labels=labels, train_set=train,
                                  num_classes=len(real_median))
    rows[name] = {**view, **evaluators.evaluate(config, "final", subject),
                  "nn_mse": stic_vs_icl._nearest_mse(images, train[0])}
    sets[name] = (images, labels)
  spacing = stic_vs_icl._nearest_mse(train[0][:500], train[0], skip_self=True)
  print(f"real own-class logit (median over classes of the class medians): "
        f"{np.median(real_median):.3g}; train_nn_mse: {spacing:.4g}")
  names = ["steps", "decision", "own_logit"] + sorted(
      k for k in next(iter(rows.values()))
      if k not in ("steps", "decision", "own_logit"))
  print("| rule | " + " | ".join(names) + " |")
  print("| --- |" + " ---: |" * len(names))
  for name, m in rows.items():
    print(f"| {name} | " + " | ".join(f"{m[k]:.4g}" for k in names) + " |")
  if args.png:
    save_png(args.png, stic_vs_icl._side_by_side(sets, args.columns))


if __name__ == "__main__":
  main()
