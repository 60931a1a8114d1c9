"""A stand-in for Google Cloud Storage with no network: gs://bucket/key is
<root>/bucket/key on the local disk.

A gs:// path is reached three ways, and each is redirected:
  fsspec's gs protocol   introjax.paths, etils.epath and Orbax's metadata
                         files; here a folder, refusing what object
                         storage cannot do (appending)
  TensorStore's gcs kvstore, which Orbax builds for the arrays; here the
                         file kvstore at the same place
  the bucket query Orbax makes (hierarchical namespace?); here no

    python tests/gcs_stand_in.py ROOT introjax.sample --workdir=gs://b/run

runs a command-line module with the stand-in installed.
"""
import os
import runpy
import sys

import fsspec
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem


class StandInGCS(DirFileSystem):
  """gs://bucket/key as <root>/bucket/key."""

  protocol = ("gs", "gcs")
  cachable = False
  root = None

  def __init__(self, *args, **kwargs):
    del args, kwargs  # gcsfs's options (finalize_on_close, …)
    super().__init__(path=self.root, fs=LocalFileSystem(auto_mkdir=True))

  def open(self, path, mode="rb", *args, **kwargs):
    if "a" in mode:
      raise NotImplementedError(f"{path}: an object cannot be appended to.")
    return super().open(path, mode, *args, **kwargs)

  def pipe_file(self, path, value, mode="overwrite", **kwargs):
    if mode != "create":
      return super().pipe_file(path, value, **kwargs)
    local = self._join(path)
    os.makedirs(os.path.dirname(local), exist_ok=True)
    # Cloud Storage decides ifGenerationMatch=0 atomically; so does O_EXCL.
    fd = os.open(local, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    with os.fdopen(fd, "wb") as f:
      f.write(value)


def registry():
  """fsspec's table of imported filesystems (fsspec.registry is a read-only
  view of it)."""
  return sys.modules["fsspec.registry"]._registry  # pylint: disable=protected-access


def install(root, patch):
  """Routes gs:// to `root`; `patch(obj, name, value)` sets attributes (a
  pytest monkeypatch's setattr, so they are undone after)."""
  from etils.epath import backend  # pylint: disable=import-outside-toplevel
  from orbax.checkpoint._src.path import gcs_utils  # pylint: disable=import-outside-toplevel

  patch(StandInGCS, "root", str(root))
  for name in StandInGCS.protocol:
    fsspec.register_implementation(name, StandInGCS, clobber=True)
  backend.fsspec_backend._get_filesystem.cache_clear()  # pylint: disable=protected-access

  def file_kvstore(ckpt_path):
    bucket, key = gcs_utils.parse_gcs_path(ckpt_path,
                                           add_trailing_slash=False)
    return {"driver": "file", "path": os.path.join(str(root), bucket, key)}

  patch(gcs_utils, "get_kvstore_for_gcs", file_kvstore)
  patch(gcs_utils, "is_hierarchical_namespace_enabled", lambda path: False)


def uninstall():
  from etils.epath import backend  # pylint: disable=import-outside-toplevel
  for name in StandInGCS.protocol:
    registry().pop(name, None)
  backend.fsspec_backend._get_filesystem.cache_clear()  # pylint: disable=protected-access


if __name__ == "__main__":
  root, module, *argv = sys.argv[1:]
  install(root, setattr)
  sys.argv = [module, *argv]
  runpy.run_module(module, run_name="__main__", alter_sys=True)
