r"""Trains on a Cloud TPU VM slice (one host or a multi-host pod).

    python launch/tpu_pod.py --name=introjax-v4 --zone=us-central2-b \
        --accelerator_type=v4-32 --runtime_version=tpu-ubuntu2204-base \
        --config=configs/icl_cifar10.py --workdir=gs://my-bucket/runs/cifar10 \
        --teardown -- --config.data.augment=True

Steps, each one `gcloud compute tpus tpu-vm` command:
  0. here, before anything is rented: `python -m introjax.aot` compiles
     every step of the run for the slice's topology and stops the launch
     with one sentence if it would not fit in the chips' memory (needs
     libtpu locally, `pip install -e ".[aot]"`; --skip_aot_check skips it);
  1. create the slice, unless `describe` finds one of that name (then reuse it);
  2. copy this checkout's HEAD to every worker (`git archive` + `scp
     --worker=all`), or with --repo=URL clone it there, and
     `pip install -e '.[tpu,gcs]'` (gcs: the gs:// workdir's client) on every worker;
  3. run ONE `python3 -m introjax.main --config=… --workdir=… [overrides]` on
     all workers at once (`ssh --worker=all`): every worker runs the same
     command and introjax.main joins them with jax.distributed.initialize();
  4. with --teardown, delete the slice afterwards, whether the run succeeded
     or not (checkpoints in a gs:// workdir survive it; rerunning resumes).
--teardown_only deletes the slice and does nothing else. --dry_run prints the
commands instead of running them. On a multi-host slice the workdir must be
one folder all workers share (gs://…): each worker writes its own shards of
every checkpoint there.

The runtime version goes with the TPU generation, e.g. tpu-ubuntu2204-base
(v4), v2-alpha-tpuv5-lite (v5e), v2-alpha-tpuv5 (v5p), v2-alpha-tpuv6e (v6e);
`gcloud compute tpus tpu-vm versions list --zone=ZONE` lists them.
"""
import argparse
import os
import shlex
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
from introjax import config_utils  # pylint: disable=g-import-not-at-top
from introjax import errors  # pylint: disable=g-import-not-at-top

REMOTE_DIR = "~/introjax"   # the checkout on every worker
ARCHIVE = "introjax_src.tar.gz"


class LaunchError(Exception):
  """A one-sentence reason the launch cannot go on."""


def _parser():
  p = argparse.ArgumentParser(
      prog="tpu_pod.py", description=__doc__.split("\n")[0],
      usage="%(prog)s --name=NAME --zone=ZONE --accelerator_type=TYPE "
            "--runtime_version=RUNTIME --config=FILE --workdir=DIR [options] "
            "[-- --config.key=value ...]")
  p.add_argument("--name", help="the TPU VM (slice) name")
  p.add_argument("--zone", help="e.g. us-central2-b")
  p.add_argument("--project", help="default: gcloud's configured project")
  p.add_argument("--accelerator_type", help="e.g. v4-8, v4-32, v5litepod-16")
  p.add_argument("--runtime_version", help="e.g. tpu-ubuntu2204-base")
  p.add_argument("--spot", action="store_true", help="create a Spot slice")
  p.add_argument("--config", help="a config file (and variant), relative "
                 "to the repository root, e.g. configs/icl_mnist.py")
  p.add_argument("--workdir", help="gs://bucket/path, shared by all workers")
  p.add_argument("--repo", help="clone this git URL on the workers instead "
                 "of copying the local checkout")
  p.add_argument("--ref", default="HEAD", help="the commit, branch or tag "
                 "to copy or clone (default: HEAD)")
  p.add_argument("--detach", action="store_true", help="start the run in "
                 "the background on every worker (log in ~/introjax_run.log) "
                 "and return; not with --teardown")
  p.add_argument("--teardown", action="store_true",
                 help="delete the slice after the run")
  p.add_argument("--teardown_only", action="store_true",
                 help="only delete the slice")
  p.add_argument("--dry_run", action="store_true",
                 help="print the commands instead of running them")
  p.add_argument("--skip_aot_check", action="store_true",
                 help="do not compile the run for the slice here first "
                 "(python -m introjax.aot)")
  return p


def _check(args, overrides):
  needed = ["name", "zone"]
  if not args.teardown_only:
    needed += ["accelerator_type", "runtime_version", "config", "workdir"]
  missing = [f"--{n}" for n in needed if not getattr(args, n)]
  if missing:
    raise LaunchError(f"missing {', '.join(missing)} (see --help).")
  stray = [a for a in overrides if not a.startswith("--config.")]
  if stray:
    raise LaunchError(f"after -- come only --config.key=value overrides, "
                      f"not {' '.join(stray)}; put launcher options before "
                      "--.")
  if args.detach and args.teardown:
    raise LaunchError("--detach returns while the run goes on, so "
                      "--teardown would delete the slice under it; use "
                      "--teardown_only once the run has finished.")


def _tpu_vm(args, verb, *rest):
  """`gcloud compute tpus tpu-vm VERB …` with the zone (and project)."""
  command = ["gcloud", "compute", "tpus", "tpu-vm", verb, *rest,
             f"--zone={args.zone}"]
  if args.project:
    command.append(f"--project={args.project}")
  return command


def _on_all_workers(args, remote_command):
  return _tpu_vm(args, "ssh", args.name, "--worker=all",
                 f"--command={remote_command}")


def introjax_command(args, overrides):
  return ["python3", "-m", "introjax.main", f"--config={args.config}",
          f"--workdir={args.workdir}", *overrides]


def aot_command(config, accelerator_type, overrides):
  """The local compile check of `config` (relative to the repository root)
  for a slice of `accelerator_type`: `python -m introjax.aot` on the CPU,
  importing this checkout."""
  path = os.pathsep.join(
      [REPO_ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(
          os.pathsep) if p])
  return ["env", "JAX_PLATFORMS=cpu", f"PYTHONPATH={path}", sys.executable,
          "-m", "introjax.aot", f"--config={os.path.join(REPO_ROOT, config)}",
          f"--topology={accelerator_type}", *overrides]


def plan(args, overrides):
  """The launch as (step, argv) pairs, in order. Step "create" runs only
  when "describe" finds no slice; "aot" and "local" run on this machine."""
  steps = []
  local_config = args.config and os.path.exists(
      os.path.join(REPO_ROOT, args.config.partition(":")[0]))
  if not args.teardown_only and not args.skip_aot_check and local_config:
    steps.append(("aot", aot_command(args.config, args.accelerator_type,
                                     overrides)))
  if not args.teardown_only:
    steps.append(("describe", _tpu_vm(args, "describe", args.name,
                                      "--format=value(state)")))
    create = _tpu_vm(args, "create", args.name,
                     f"--accelerator-type={args.accelerator_type}",
                     f"--version={args.runtime_version}")
    if args.spot:
      create.append("--spot")
    steps.append(("create", create))
    install = f'cd {REMOTE_DIR} && python3 -m pip install -q -e ".[tpu,gcs]"'
    if args.repo:
      ref = shlex.quote(args.ref)
      fetch = (f"if [ -d {REMOTE_DIR}/.git ]; then git -C {REMOTE_DIR} fetch "
               f"-q origin {ref} && git -C {REMOTE_DIR} checkout -q --force "
               f"FETCH_HEAD; else git clone -q {shlex.quote(args.repo)} "
               f"{REMOTE_DIR} && git -C {REMOTE_DIR} checkout -q {ref}; fi")
      steps.append(("install", _on_all_workers(args, f"{fetch} && {install}")))
    else:
      # Committed files only: what runs on the pod is a commit you can name.
      local = os.path.join("/tmp", f"{args.name}_{ARCHIVE}")
      steps.append(("local", ["git", "-C", REPO_ROOT, "archive",
                              "--format=tar.gz", f"--output={local}",
                              args.ref]))
      steps.append(("copy", _tpu_vm(args, "scp", local,
                                    f"{args.name}:{ARCHIVE}",
                                    "--worker=all")))
      unpack = (f"mkdir -p {REMOTE_DIR} && tar -xzf ~/{ARCHIVE} -C "
                f"{REMOTE_DIR}")
      steps.append(("install", _on_all_workers(args, f"{unpack} && {install}")))
    run = shlex.join(introjax_command(args, overrides))
    if args.detach:
      run = (f"setsid nohup {run} > ~/introjax_run.log 2>&1 < /dev/null &")
    steps.append(("run", _on_all_workers(args, f"cd {REMOTE_DIR} && {run}")))
  if args.teardown or args.teardown_only:
    steps.append(("delete", _tpu_vm(args, "delete", args.name, "--quiet")))
  return steps


_NOTES = {
    "aot": "# compile every step for the slice here; stop if it cannot fit",
    "describe": "# reuse the slice if it exists (exit status 0) ...",
    "create": "# ... else create it",
    "local": "# this checkout's committed files, for every worker",
    "copy": "# copied to every worker",
    "install": "# install on every worker",
    "run": "# the same command on every worker at once",
    "delete": "# tear the slice down",
}


def execute(steps, echo=print):
  """Runs the steps; a failing step stops the launch, and a planned "delete"
  runs whatever happened before it (unless the compile check stopped the
  launch before any slice was touched), so a failed run costs no idle
  slice."""
  exists = False
  # A launch the compile check stops has touched no slice: nothing to delete.
  touched = not any(name == "aot" for name, _ in steps)
  try:
    for name, command in steps:
      if name == "delete":
        continue
      touched = touched or name != "aot"
      echo(f"[tpu_pod] {shlex.join(command)}")
      if name == "describe":
        exists = subprocess.run(command, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL).returncode == 0
        continue
      if name == "create" and exists:
        echo("[tpu_pod] the slice exists; reusing it.")
        continue
      code = subprocess.call(command)
      if code and name == "aot":
        raise LaunchError(
            "the compile check stopped the launch before any slice was "
            "created (its reason is above); change the config or the "
            "accelerator type, or pass --skip_aot_check.")
      if code:
        raise LaunchError(f"step {name!r} failed with exit status {code}: "
                          f"{shlex.join(command)}")
  finally:
    for name, command in steps:
      if name == "delete" and touched:
        echo(f"[tpu_pod] {shlex.join(command)}")
        if subprocess.call(command):
          echo("[tpu_pod] the delete failed; check `gcloud compute tpus "
               "tpu-vm list` so no slice is left running.")


def check_config(args, overrides):
  """Refuses a missing local config file or unknown --config. keys here,
  before a slice is paid for (skipped with --repo: the file is remote)."""
  if args.teardown_only or args.repo:
    return
  path = args.config.partition(":")[0]
  if not os.path.exists(os.path.join(REPO_ROOT, path)):
    raise LaunchError(f"--config={args.config}: no file {path} in "
                      f"{REPO_ROOT}; give a path relative to the repository "
                      "root.")
  try:
    config_utils.check_overrides(
        [f"--config={os.path.join(REPO_ROOT, args.config)}", *overrides])
  except errors.UserError as e:
    raise LaunchError(str(e)) from e


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  overrides = argv[argv.index("--") + 1:] if "--" in argv else []
  own = argv[:argv.index("--")] if "--" in argv else argv
  args = _parser().parse_args(own)
  try:
    _check(args, overrides)
    if (args.workdir and not args.teardown_only
        and not args.workdir.startswith("gs://")):
      print(f"[tpu_pod] warning: --workdir={args.workdir} is not on GCS; on "
            "a multi-host slice every worker must write to the same folder "
            "(gs://…).", file=sys.stderr)
    check_config(args, overrides)
    steps = plan(args, overrides)
    if args.dry_run:
      for name, command in steps:
        print(_NOTES[name])
        print(shlex.join(command))
      return 0
    execute(steps)
  except LaunchError as e:
    print(f"tpu_pod.py: error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
