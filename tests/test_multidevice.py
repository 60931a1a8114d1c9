"""On 8 simulated CPU devices: the IGM and WINN texture rounds and ICL
rounds equal 1 device's, and resumed runs equal uninterrupted ones; the pool
and the image datasets are split and never gathered; the split evaluation
equals the whole one; conv2d's kernel gradient inside `shard_map` sums over
the devices.

XLA_FLAGS must be set before JAX starts, so every check runs in one child
process (tests/multidevice_check.py), which prints a line per check; each
test here reads its check's line. Selecting some of these tests runs only
their checks.
"""
import subprocess
import sys

import pytest

from conftest import REPO, subprocess_env
from multidevice_check import CHECKS


@pytest.fixture(scope="module")
def eight_devices(request):
  """(stdout, stderr, {check: its line}, {check: its traceback}) of one run
  of the checks the selected tests of this module need."""
  wanted = {item.callspec.params["check"] for item in request.session.items
            if item.module is request.module and hasattr(item, "callspec")}
  result = subprocess.run(
      [sys.executable, str(REPO / "tests" / "multidevice_check.py"),
       *[name for name in CHECKS if name in wanted]],
      cwd=REPO, capture_output=True, text=True, timeout=1800,
      env=subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=8",
                         JAX_PLATFORMS="cpu"))
  lines = {}
  for line in result.stdout.splitlines():
    word, _, rest = line.partition(" ")
    if word in ("ok", "FAIL"):
      lines[rest.split(":")[0].split(" ")[0]] = line
  tracebacks = {}
  for part in ("\n" + result.stderr).split("\n--- ")[1:]:
    name, _, text = part.partition(" ---\n")
    tracebacks[name] = text
  return result.stdout, result.stderr, lines, tracebacks


@pytest.mark.parametrize("check", list(CHECKS))
def test_on_eight_devices(check, eight_devices):
  stdout, stderr, lines, tracebacks = eight_devices
  assert "devices: 8" in stdout, stdout + stderr[-3000:]
  line = lines.get(check, f"no line for {check}: the process stopped")
  assert line.startswith(f"ok {check} "), (
      f"{line}\n{tracebacks.get(check, stderr)[-3000:]}")
