"""gs:// workdirs, without a network: a stand-in Cloud Storage
(gcs_stand_in.py) behind the same path layer, and a tiny run on it end to
end (train, resume, sample, report), none of it landing on the local disk;
and the one sentence when the cloud-storage client is missing."""
import json
import os
import re
import struct
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

import gcs_stand_in
from conftest import (REPO, assert_trees_equal, load_config, restore_latest,
                      subprocess_env)
from introjax import parallel
from introjax import paths
from introjax import saved
from introjax import workdir_lock
from introjax.errors import UserError, WorkdirError
from introjax.eval import summary
from introjax.training import harness
from introjax.training.igm import TextureIGM, train_and_evaluate

RUN = "gs://bucket/run"
MISSING = ('gs://bucket/run is on Google Cloud Storage, which needs the '
           'optional cloud-storage client: install it with pip install -e '
           '".[gcs]" (or pip install "introjax[gcs]").')


def _config(report=False):
  config = load_config("igm_texture.py:tiny")
  config.rounds = 3
  config.generate.size = 16
  config.log.report = report
  return config


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
  """The stand-in's folder; the working directory is an empty folder, so
  anything written locally by mistake (a folder named gs:) shows."""
  root = tmp_path_factory.mktemp("bucket")
  cwd = tmp_path_factory.mktemp("cwd")
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(paths, "_gcs_ready", False)
    patch.chdir(cwd)
    gcs_stand_in.install(root, patch.setattr)
    try:
      yield root, cwd
    finally:
      gcs_stand_in.uninstall()


def _events(folder):
  """{(round, tag): value} from every TensorBoard event file in `folder`,
  read as TFRecords (length, its CRC, the Event, its CRC)."""
  from tensorboardX.proto import event_pb2  # pylint: disable=import-outside-toplevel
  scalars = {}
  for name in sorted(os.listdir(folder)):
    if not name.startswith("events.out.tfevents."):
      continue
    data = (folder / name).read_bytes()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack("<Q", data[offset:offset + 8])
      event = event_pb2.Event.FromString(
          data[offset + 12:offset + 12 + length])
      offset += 12 + length + 4
      for value in event.summary.value:
        scalars[(event.step, value.tag)] = value.simple_value
    assert offset == len(data), name  # whole records only
  return scalars


@pytest.fixture(scope="module")
def trained(bucket):
  """Three rounds on gs://bucket/run; then, as if killed in round 3, its
  round-3 checkpoint and metrics taken out and the run resumed, writing
  the report at its end."""
  root, _ = bucket
  config = _config()
  train_and_evaluate(config, RUN)
  model = TextureIGM(config, parallel.make_mesh())
  uninterrupted = restore_latest(model, RUN)
  store = root / "bucket" / "run"
  rounds_kept = sorted(os.listdir(store / "checkpoints"))
  (store / "checkpoints" / "3").rename(root / "round_3_before")
  metrics = (store / "metrics.jsonl").read_text().splitlines()
  (store / "metrics.jsonl").write_text(metrics[0] + "\n" + metrics[1] + "\n")
  train_and_evaluate(_config(report=True), RUN)
  return store, rounds_kept, uninterrupted, restore_latest(model, RUN)


def test_run_and_resume_write_only_to_the_bucket(bucket, trained):
  root, cwd = bucket
  store, rounds_kept, uninterrupted, resumed = trained
  assert os.listdir(cwd) == [] and not os.path.exists(REPO / "gs:")
  # Orbax kept the last two rounds, deleting round 1 through the layer.
  assert rounds_kept == ["2", "3"]
  assert sorted(os.listdir(store / "checkpoints")) == ["2", "3"]
  # The resumed round 3 starts from round 2's checkpoint read back from the
  # bucket: the same arrays as the uninterrupted run's.
  assert resumed[1] == uninterrupted[1] == 3
  assert_trees_equal(resumed[0], uninterrupted[0])
  # metrics.jsonl rewritten whole each round (an object cannot be appended
  # to; the stand-in refuses), keeping the rounds before the resume.
  lines = [json.loads(l) for l in
           (store / "metrics.jsonl").read_text().splitlines()]
  assert [l["round"] for l in lines] == [1, 2, 3]
  # TensorBoard's event files, written through the layer, hold every
  # scalar of every round.
  events = _events(store)
  for line in lines:
    for tag, value in line.items():
      if tag != "round":
        assert events[(line["round"], tag)] == pytest.approx(value, rel=1e-6)
  pngs = sorted(os.listdir(store / "samples"))
  assert pngs == ["final_16x16.png", "round_001.png", "round_002.png",
                  "round_003.png"], pngs
  assert not (store / workdir_lock.LOCK_NAME).exists()  # released
  # Each launch's start and end lines (an object rewritten whole, like
  # metrics.jsonl): rounds 1-3, then the resumed round 3.
  launches = [json.loads(l) for l in
              (store / harness.LAUNCHES_NAME).read_text().splitlines()]
  assert [(l["first_round"], l.get("last_round"), "ended" in l)
          for l in launches] == [(None, None, False), (1, 3, True),
                                 (None, None, False), (3, 3, True)]
  # The report the resumed run wrote at its end: its plots and the sample
  # grids it links to are in the bucket, its launch table has both launches.
  _assert_report(store)
  assert not [n for n in os.listdir(store) if n.endswith(".tmp")
              or n.startswith(".write_test")]


def test_sample_command_reads_and_writes_the_bucket(bucket, trained):
  root, cwd = bucket
  store = trained[0]
  result = subprocess.run(
      [sys.executable, str(REPO / "tests" / "gcs_stand_in.py"), str(root),
       "introjax.sample", f"--workdir={RUN}", "--size=16", "--num_images=2",
       "--seed=1"], cwd=cwd, env=subprocess_env(), capture_output=True,
      text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert (f"with round 3's 3 critic(s): {RUN}/samples/sample_16x16_seed1.png"
          in result.stderr), result.stderr
  image = np.asarray(Image.open(store / "samples" / "sample_16x16_seed1.png"))
  assert image.shape == (16, 2 * 16 + 2)  # two grey textures, a 2-pixel gap
  assert image[:, :16].std() > 5 and image[:, 18:].std() > 5
  assert os.listdir(cwd) == []


def _assert_report(store):
  markdown = (store / "report" / "report.md").read_text()
  links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", markdown)
  plots = [l for l in links if not l.startswith("../")]
  assert "train.png" in plots and "timings.png" in plots, links
  assert "../samples/round_003.png" in links, links
  for link in links:
    image = Image.open(store / "report" / link)
    assert image.format == "PNG" and image.size[0] > 0, link
  assert "| 1–3 |" in markdown and "| 3–3 |" in markdown


def test_report_command_reads_and_writes_the_bucket(bucket, trained):
  root, cwd = bucket
  store = trained[0]
  for name in os.listdir(store / "report"):
    (store / "report" / name).unlink()
  result = subprocess.run(
      [sys.executable, str(REPO / "tests" / "gcs_stand_in.py"), str(root),
       "introjax.report", f"--workdir={RUN}"], cwd=cwd, env=subprocess_env(),
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert f"Report in {RUN}/report/report.md" in result.stderr, result.stderr
  _assert_report(store)
  assert os.listdir(cwd) == [] and not os.path.exists(REPO / "gs:")


def test_results_and_summaries_go_through_the_bucket(bucket):
  root, _ = bucket
  harness.write_results("gs://bucket/results", {"error": 0.25},
                        markdown="| error |\n| 0.25 |\n")
  folder = root / "bucket" / "results"
  assert json.loads((folder / "results.json").read_text()) == {"error": 0.25}
  assert (folder / "results.md").read_text() == "| error |\n| 0.25 |\n"
  assert summary.load_final("gs://bucket/results") == {"error": 0.25}


def test_the_lock_is_one_object_only_one_run_creates(bucket):
  root, _ = bucket
  workdir = "gs://bucket/locked"
  harness.prepare_workdir(workdir)
  lock = root / "bucket" / "locked" / workdir_lock.LOCK_NAME
  with workdir_lock.hold(workdir):
    holder = json.loads(lock.read_text())
    assert holder["pid"] == os.getpid()
    # A second run on this host while the holder lives is refused, and
    # the holder's lock stays.
    with pytest.raises(WorkdirError, match="in use by another run on this "
                       f"host \\(pid {os.getpid()}\\)"):
      with workdir_lock.hold(workdir):
        pass
    assert json.loads(lock.read_text()) == holder
  assert not lock.exists()
  # A lock left by a process that is gone is taken over.
  lock.write_text(json.dumps({"host": holder["host"], "pid": 2**22 + 1,
                              "started": 1, "since": 0}))
  with workdir_lock.hold(workdir):
    assert json.loads(lock.read_text())["pid"] == os.getpid()
  assert not lock.exists()


def test_missing_client_is_one_sentence(tmp_path, monkeypatch):
  # In-process (introjax.sample and introjax.compare load through saved.py).
  monkeypatch.setattr(paths, "_gcs_ready", False)
  monkeypatch.setitem(sys.modules, "gcsfs", None)  # import gcsfs fails
  for name in ("gs", "gcs"):
    monkeypatch.delitem(gcs_stand_in.registry(), name, raising=False)
  with pytest.raises(UserError) as error:
    saved.saved_trainer(RUN)
  assert str(error.value) == MISSING
  # The command line: one line, no traceback, no local folder named gs:.
  shadow = tmp_path / "shadow" / "gcsfs"
  shadow.mkdir(parents=True)
  (shadow / "__init__.py").write_text(
      "raise ImportError(\"No module named 'gcsfs'\")\n")
  env = subprocess_env()
  env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "shadow"),
                                       env["PYTHONPATH"]])
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  result = subprocess.run(
      [sys.executable, "-m", "introjax.main",
       f"--config={REPO / 'configs' / 'igm_texture.py'}:tiny",
       f"--workdir={RUN}"], cwd=cwd, env=env, capture_output=True, text=True,
      timeout=300)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == f"introjax: error: {MISSING}"
  assert "Traceback" not in result.stderr
  assert os.listdir(cwd) == []
