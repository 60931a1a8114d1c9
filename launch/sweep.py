r"""Runs one config over several seeds and summarises the results.

    python launch/sweep.py --config=configs/icl_digits.py \
        --root=runs/icl_digits_seeds --seeds=0,1,2 [-- --config.icl.mode=one_vs_all]

Each seed trains in ROOT/seed_N (rerunning resumes, as with introjax.main);
then ROOT/summary.md holds the mean ± std of every number in the runs'
results.json (test errors, FGSM table). --print_only prints the commands
instead, for dispatching them to other machines; --summarize_only summarises
finished runs.
"""
import argparse
import os
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                ".."))
from introjax.eval import summary as summary_lib  # pylint: disable=g-import-not-at-top


def commands(config, root, seeds, extra):
  return [[sys.executable, "-m", "introjax.main", f"--config={config}",
           f"--workdir={os.path.join(root, f'seed_{s}')}",
           f"--config.seed={s}", *extra] for s in seeds]


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  extra = argv[argv.index("--") + 1:] if "--" in argv else []
  own = argv[:argv.index("--")] if "--" in argv else argv
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", required=True)
  parser.add_argument("--root", required=True)
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--print_only", action="store_true")
  parser.add_argument("--summarize_only", action="store_true")
  args = parser.parse_args(own)
  seeds = [int(s) for s in args.seeds.split(",")]
  runs = commands(args.config, args.root, seeds, extra)
  if args.print_only:
    print("\n".join(shlex.join(c) for c in runs))
    return 0
  if not args.summarize_only:
    for seed, command in zip(seeds, runs):
      print(f"[sweep] seed {seed}: {shlex.join(command)}", flush=True)
      code = subprocess.call(command)
      if code:
        print(f"[sweep] seed {seed} failed (exit {code}); stopping.",
              file=sys.stderr)
        return code
  workdirs = [os.path.join(args.root, f"seed_{s}") for s in seeds]
  summary = summary_lib.summarize(summary_lib.load_results(workdirs))
  title = f"{args.config} {' '.join(extra)} over seeds {args.seeds}".strip()
  text = summary_lib.summary_markdown(summary, title)
  with open(os.path.join(args.root, "summary.md"), "w") as f:
    f.write(text)
  print(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
