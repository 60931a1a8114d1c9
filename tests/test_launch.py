"""launch/tpu_pod.py: the gcloud commands it plans, its refusals, and what
it does when a step fails. Nothing here reaches the network: the dry run
prints, and the real path runs against a stand-in for subprocess."""
import importlib.util
import shlex
import subprocess
import sys

import pytest

from conftest import REPO, subprocess_env

_spec = importlib.util.spec_from_file_location(
    "tpu_pod", REPO / "launch" / "tpu_pod.py")
tpu_pod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tpu_pod)

BASE = ["--name=intro-pod", "--zone=us-central2-b", "--project=my-proj",
        "--accelerator_type=v4-32", "--runtime_version=tpu-ubuntu2204-base",
        "--config=configs/icl_digits.py:tiny",
        "--workdir=gs://my-bucket/runs/digits"]
OVERRIDES = ["--config.seed=3", "--config.icl.mode=one_vs_all"]
TPU_VM = ["gcloud", "compute", "tpus", "tpu-vm"]


def _dry_run(capsys, argv):
  assert tpu_pod.main(["--dry_run"] + argv) == 0
  out = capsys.readouterr().out
  return [shlex.split(line) for line in out.splitlines()
          if not line.startswith("#")]


def _gcloud(commands, verb):
  found = [c for c in commands if c[:5] == TPU_VM + [verb]]
  assert found, f"no `gcloud compute tpus tpu-vm {verb}` in {commands}"
  return found


def _remote(command):
  """The --command= of a tpu-vm ssh."""
  return next(a for a in command if a.startswith("--command="))[10:]


def test_dry_run_prints_create_install_run_and_delete(capsys):
  commands = _dry_run(capsys, BASE + ["--teardown", "--"] + OVERRIDES)
  verbs = [c[4] for c in commands if c[:4] == TPU_VM]
  assert verbs == ["describe", "create", "scp", "ssh", "ssh", "delete"]
  for c in commands:
    if c[:4] == TPU_VM:
      assert "--zone=us-central2-b" in c and "--project=my-proj" in c, c
      assert c[5] == "intro-pod" or c[4] == "scp", c

  (create,) = _gcloud(commands, "create")
  assert "--accelerator-type=v4-32" in create
  assert "--version=tpu-ubuntu2204-base" in create

  (scp,) = _gcloud(commands, "scp")
  assert "--worker=all" in scp and scp[6] == "intro-pod:introjax_src.tar.gz"
  install, run = _gcloud(commands, "ssh")
  assert "--worker=all" in install and "--worker=all" in run
  assert 'pip install -q -e ".[tpu,gcs]"' in _remote(install)

  expected = shlex.join(
      ["python3", "-m", "introjax.main",
       "--config=configs/icl_digits.py:tiny",
       "--workdir=gs://my-bucket/runs/digits", *OVERRIDES])
  assert _remote(run) == f"cd ~/introjax && {expected}"

  (delete,) = _gcloud(commands, "delete")
  assert "--quiet" in delete


def test_dry_run_with_a_repo_clones_and_deletes_only_when_asked(capsys):
  commands = _dry_run(capsys, BASE + [
      "--repo=https://example.com/introjax.git", "--ref=v0.1.0"])
  assert not [c for c in commands if c[:5] == TPU_VM + ["delete"]]
  assert not [c for c in commands if c[:5] == TPU_VM + ["scp"]]
  install = _remote(_gcloud(commands, "ssh")[0])
  assert "git clone -q https://example.com/introjax.git ~/introjax" in install
  assert "checkout -q v0.1.0" in install


def test_teardown_only_needs_just_name_and_zone(capsys):
  commands = _dry_run(capsys, ["--name=intro-pod", "--zone=us-central2-b",
                               "--teardown_only"])
  assert commands == [TPU_VM + ["delete", "intro-pod", "--quiet",
                                "--zone=us-central2-b"]]


def test_missing_arguments_are_refused_in_one_line():
  result = subprocess.run(
      [sys.executable, "launch/tpu_pod.py", "--zone=us-central2-b",
       "--dry_run"], cwd=REPO, env=subprocess_env(), capture_output=True,
      text=True, timeout=60)
  assert result.returncode == 2
  assert not result.stdout
  assert len(result.stderr.strip().splitlines()) == 1, result.stderr
  assert "missing --name" in result.stderr
  assert "--accelerator_type" in result.stderr and "--workdir" in result.stderr


@pytest.mark.parametrize("extra, words", [
    (["--", "--config.no_such_key=1"], "no_such_key"),
    (["--detach", "--teardown"], "--teardown_only"),
    (["--", "--config.seed=1", "--dry_run"], "--dry_run"),
])
def test_bad_requests_are_refused_in_one_line(capsys, extra, words):
  argv = [a for a in BASE if not a.startswith("--config=")]
  argv.append("--config=configs/icl_digits.py")
  assert tpu_pod.main(["--dry_run"] + argv + extra) == 2
  captured = capsys.readouterr()
  assert not captured.out
  assert len(captured.err.strip().splitlines()) == 1
  assert words in captured.err


class _FakeGcloud:
  """Stands in for subprocess: `describe` answers `exists`; the step whose
  verb is `fails` exits 1."""

  def __init__(self, exists, fails=None):
    self.exists, self.fails, self.calls = exists, fails, []

  def run(self, command, **kwargs):
    del kwargs
    self.calls.append(command)
    return subprocess.CompletedProcess(command, 0 if self.exists else 1)

  def call(self, command):
    self.calls.append(command)
    return 1 if len(command) > 4 and command[4] == self.fails else 0


def _execute(monkeypatch, fake, argv):
  monkeypatch.setattr(tpu_pod.subprocess, "run", fake.run)
  monkeypatch.setattr(tpu_pod.subprocess, "call", fake.call)
  args = tpu_pod._parser().parse_args(argv)
  tpu_pod.execute(tpu_pod.plan(args, OVERRIDES), echo=lambda line: None)
  return [c[4] if c[:4] == TPU_VM else c[0] for c in fake.calls]


def test_an_existing_slice_is_reused(monkeypatch):
  steps = _execute(monkeypatch, _FakeGcloud(exists=True), BASE)
  assert steps == ["env", "describe", "git", "scp", "ssh", "ssh"]


def test_a_failed_run_still_tears_the_slice_down(monkeypatch):
  fake = _FakeGcloud(exists=False, fails="ssh")
  with pytest.raises(tpu_pod.LaunchError, match="'install' failed"):
    _execute(monkeypatch, fake, BASE + ["--teardown", "--skip_aot_check"])
  steps = [c[4] if c[:4] == TPU_VM else c[0] for c in fake.calls]
  assert steps == ["describe", "create", "git", "scp", "ssh", "delete"]


def test_the_compile_check_runs_first_and_a_failure_rents_nothing(
    monkeypatch, capsys):
  commands = _dry_run(capsys, BASE + ["--"] + OVERRIDES)
  check = commands[0]
  assert check[:2] == ["env", "JAX_PLATFORMS=cpu"]
  assert check[4:6] == ["-m", "introjax.aot"]
  assert "--topology=v4-32" in check and check[-2:] == OVERRIDES
  assert check[6].endswith("configs/icl_digits.py:tiny")
  skipped = _dry_run(capsys, BASE + ["--skip_aot_check"])
  assert not [c for c in skipped if c[0] == "env"]

  class _NoFit(_FakeGcloud):
    def call(self, command):
      self.calls.append(command)
      return 1 if command[0] == "env" else 0

  fake = _NoFit(exists=False)
  with pytest.raises(tpu_pod.LaunchError, match="before any slice"):
    _execute(monkeypatch, fake, BASE + ["--teardown"])
  # Nothing was described, created or deleted: no slice was touched.
  assert [c[0] for c in fake.calls] == ["env"]
