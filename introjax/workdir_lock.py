"""One run per workdir.

A run's process 0 holds `<workdir>/.lock` (JSON: host, pid, the pid's start
time, when) while it trains; a second run started on the same workdir stops
with a sentence naming the holder. A lock whose process is gone (killed,
even with kill -9) is taken over, so rerunning the same command still
resumes. The other processes of a multi-host run do not lock: they are the
same run and share the workdir (one folder all hosts see).

A holder on another host cannot be checked from here; the sentence then
says which file to delete once that run is over.

On Cloud Storage (gs://) the lock is an object, created on the condition
that no object has its name (paths.create_new), which the service decides
atomically: of two runs starting together one gets it, as with O_EXCL on a
local disk. What the object cannot say is whether its holder still lives:
that is checked, as locally, only on the holder's own host, so a run killed
on a machine that is gone (a deleted pod) leaves a lock to delete by hand;
and a lock is not renewed while held, so nothing expires on its own. On
either store, taking over a dead holder's lock deletes it before creating
ours: two runs doing that in the same instant could both go on.
"""
import contextlib
import json
import os
import socket
import time

import jax

from introjax import paths
from introjax.errors import WorkdirError

LOCK_NAME = ".lock"


def _start_time(pid):
  """The kernel's start time of `pid` (Linux), so a recycled pid is not
  mistaken for the holder; None where /proc is not there."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return int(f.read().rsplit(")", 1)[1].split()[19])
  except (OSError, IndexError, ValueError):
    return None


def _alive(holder):
  pid = holder.get("pid")
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True   # someone else's live process
  except (TypeError, OverflowError):
    return False
  started = holder.get("started")
  return started is None or _start_time(pid) in (None, started)


def _read(path):
  try:
    return json.loads(paths.read_text(path))
  except (OSError, ValueError):
    return None


def _write_new(path, holder):
  """Creates the lock file only if there is none (atomic)."""
  paths.create_new(path, json.dumps(holder).encode("utf-8"))


@contextlib.contextmanager
def hold(workdir):
  """Holds `workdir`'s lock for the enclosed run (process 0 only)."""
  if jax.process_index() != 0:
    yield
    return
  path = os.path.join(workdir, LOCK_NAME)
  me = {"host": socket.gethostname(), "pid": os.getpid(),
        "started": _start_time(os.getpid()), "since": time.time()}
  for _ in range(3):
    try:
      _write_new(path, me)
      break
    except FileExistsError:
      holder = _read(path)
      if holder == me:
        # Ours: a storage client retried a create that had succeeded.
        break
      if holder is None:
        # Being written this instant, or torn: look again.
        time.sleep(0.1)
        holder = _read(path)
      if holder is not None and holder.get("host") != me["host"]:
        raise WorkdirError(
            f"--workdir={workdir} is in use by a run on host "
            f"{holder.get('host')} (pid {holder.get('pid')}); use another "
            f"--workdir, or delete {path} once that run is over.") from None
      if holder is not None and _alive(holder):
        raise WorkdirError(
            f"--workdir={workdir} is in use by another run on this host "
            f"(pid {holder.get('pid')}); wait for it to finish, stop it, or "
            "use another --workdir.") from None
      # Left by a run that is gone: take it over.
      paths.remove(path)
  else:
    raise WorkdirError(f"Could not take the lock {path}; delete it if no "
                       "run is using this --workdir.")
  try:
    yield
  finally:
    if (_read(path) or {}).get("pid") == me["pid"]:
      paths.remove(path)
