"""8 simulated CPU devices give the same IGM and WINN texture rounds as 1
device.

XLA_FLAGS must be set before JAX starts, so the comparison runs in a child
process (tests/multidevice_check.py) that builds both meshes.
"""
import subprocess
import sys

from conftest import REPO, subprocess_env


def test_eight_devices_match_one_device():
  result = subprocess.run(
      [sys.executable, str(REPO / "tests" / "multidevice_check.py")],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env=subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=8"))
  assert result.returncode == 0, result.stdout + result.stderr[-3000:]
  assert "devices: 8" in result.stdout
  assert "TextureIGM: 1-device and 8-device results match" in result.stdout
  assert "TextureWINN: 1-device and 8-device results match" in result.stdout


def test_pool_is_split_and_never_gathered():
  result = subprocess.run(
      [sys.executable, str(REPO / "tests" / "pool_sharding_check.py")],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env=subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=8"))
  assert result.returncode == 0, result.stdout + result.stderr[-3000:]
  assert "pool sharded, never gathered" in result.stdout
  assert "image positives sharded, never gathered" in result.stdout
