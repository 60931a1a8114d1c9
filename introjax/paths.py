"""Every file the project reads or writes goes through here, so a workdir
may be a local folder or a Google Cloud Storage URL (gs://bucket/run).

Built on etils.epath, which Orbax and TFDS use too; gs:// needs the
optional cloud-storage client (`pip install -e ".[gcs]"`: gcsfs, through
which epath reaches the bucket, and google-cloud-storage, which Orbax uses
to list checkpoints). Without it a gs:// path stops the command with one
sentence naming the extra.

Object storage is not a disk: it has no folders, cannot append to an object
and cannot rename one atomically, but an object appears only once its upload
is complete. Each function below says what it does on either.
"""
import io
import os

from etils import epath

from introjax.errors import UserError

GCS_EXTRA = 'pip install -e ".[gcs]"'
_gcs_ready = False


def is_remote(path):
  """Whether `path` is a URL (gs://…) rather than a local path."""
  return "://" in os.fspath(path)


def _require_gcs(path):
  """Stops with one sentence when gs:// cannot be reached for want of the
  client libraries (a filesystem already registered for gs counts)."""
  global _gcs_ready
  if _gcs_ready:
    return
  import fsspec  # pylint: disable=import-outside-toplevel
  if "gs" not in fsspec.registry:
    try:
      import gcsfs  # pylint: disable=import-outside-toplevel,unused-import
      from google.cloud import storage  # pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
      raise UserError(
          f"{os.fspath(path)} is on Google Cloud Storage, which needs the "
          f"optional cloud-storage client: install it with {GCS_EXTRA} (or "
          'pip install "introjax[gcs]").') from None
  _gcs_ready = True


def path(p):
  """`p` as an epath.Path (a local path stays as given)."""
  if os.fspath(p).startswith("gs://"):
    _require_gcs(p)
  return epath.Path(p)


def absolute(p):
  """`p` with a local path made absolute (Orbax wants that); a URL as is."""
  return str(path(p)) if is_remote(p) else os.path.abspath(p)


def makedirs(p):
  """Creates the local folder `p` and its parents. On object storage
  nothing: an object's name holds its whole path, so folders need no
  creating (and gcsfs would create a missing bucket, not fail)."""
  if is_remote(p):
    path(p)
  else:
    os.makedirs(p, exist_ok=True)


def write_bytes(p, data):
  """Replaces `p`'s contents with `data`. Locally through a temporary file
  renamed over `p`, so a reader never sees half a file; on object storage
  directly, as an upload becomes visible only when complete."""
  if is_remote(p):
    path(p).write_bytes(data)
    return
  makedirs(os.path.dirname(p) or ".")
  tmp = f"{p}.tmp"
  with open(tmp, "wb") as f:
    f.write(data)
  os.replace(tmp, p)


def write_text(p, text):
  write_bytes(p, text.encode("utf-8"))


def append_text(p, text):
  """Adds `text` at the end of `p` (created if missing). Locally an append;
  an object cannot be appended to, so on object storage it is read and
  written back whole (for a log of a line a round, a small object)."""
  if not is_remote(p):
    with open(p, "a", encoding="utf-8") as f:
      f.write(text)
    return
  old = read_bytes(p) if exists(p) else b""
  write_bytes(p, old + text.encode("utf-8"))


def create_new(p, data):
  """Writes `data` to `p` only if nothing is there, atomically; raises
  FileExistsError otherwise. Locally O_CREAT | O_EXCL; on Cloud Storage an
  upload on the condition that no object has the name (ifGenerationMatch=0),
  which the service decides atomically, so of two writers one wins."""
  if not is_remote(p):
    fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    return
  path(p)
  import fsspec  # pylint: disable=import-outside-toplevel
  fs, fs_path = fsspec.core.url_to_fs(os.fspath(p))
  fs.pipe_file(fs_path, data, mode="create")


def read_bytes(p):
  return path(p).read_bytes()


def read_text(p):
  return read_bytes(p).decode("utf-8")


def readable(p):
  """`p` for a reader that takes a path or a file object (np.load, image
  decoders): a local path as is, a URL's contents in memory."""
  return io.BytesIO(read_bytes(p)) if is_remote(p) else p


def exists(p):
  return path(p).exists()


def is_file(p):
  return path(p).is_file()


def is_dir(p):
  """Whether `p` is a folder; on object storage, whether any object's name
  starts with `p`/."""
  return path(p).is_dir()


def listdir(p):
  """The names in the folder `p`, sorted (on object storage, the next part
  of the name of each object under `p`/)."""
  if not is_remote(p):
    return sorted(os.listdir(p))
  return sorted(child.name for child in path(p).iterdir())


def remove(p):
  """Deletes the file `p`; a missing one is no error."""
  path(p).unlink(missing_ok=True)
