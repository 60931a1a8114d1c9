"""introjax.compare: IGM-single and WINN-single trained on one texture,
scored with the same crops and projections, side by side."""
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from conftest import REPO, load_config, restore_latest, subprocess_env
from introjax import checkpoint as ckpt_lib
from introjax import compare
from introjax import parallel
from introjax.errors import UserError
from introjax.training import igm
from introjax.training import winn


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
  root = tmp_path_factory.mktemp("compare")
  igm_config = load_config("igm_texture.py:tiny")
  igm_config.cascade.single, igm_config.rounds = True, 1
  igm_config.generate.num_images = 0
  igm.train_and_evaluate(igm_config, str(root / "igm_single"))
  winn_config = load_config("winn_texture.py:tiny")
  winn_config.rounds = 1
  winn_config.generate.num_images = 0
  # The same texture at the same size as the IGM run.
  winn_config.data.image_size = igm_config.data.image_size
  winn_config.data.pad = igm_config.data.pad
  winn.train_and_evaluate(winn_config, str(root / "winn_single"))
  # A model of a larger texture: the same critics saved with a config whose
  # data.image_size differs (the data's identity is all compare reads
  # of it), which saves training one more model.
  model = winn.TextureWINN(winn_config, parallel.make_mesh())
  items, latest = restore_latest(model, str(root / "winn_single"))
  source = ckpt_lib.Checkpointer(str(root / "winn_single"))
  try:
    meta = source.restore_meta(latest)
  finally:
    source.close()
  meta["config"]["data"]["image_size"] += 8
  larger = ckpt_lib.Checkpointer(str(root / "winn_larger"))
  try:
    larger.save(latest, items, meta)
  finally:
    larger.close()
  return root


def test_models_scored_on_the_same_crops(workdirs):
  igm_dir, winn_dir = str(workdirs / "igm_single"), str(workdirs / "winn_single")
  rows, real, samples = compare.compare([igm_dir, winn_dir, igm_dir], 16, 8, 0)
  assert [r["model"] for r in rows] == ["IGM-single", "WINN-single",
                                        "IGM-single"]
  # Deterministic given the seed: the same model scores the same twice.
  assert rows[0]["swd_mean"] == rows[2]["swd_mean"]
  np.testing.assert_array_equal(samples[0], samples[2])
  assert rows[0]["swd_mean"] != rows[1]["swd_mean"]
  assert real.shape == samples[1].shape == (8, 16, 16, 1)
  assert "| IGM-single |" in compare.markdown(rows)


def test_command_writes_table_and_picture(workdirs, tmp_path):
  dirs = [str(workdirs / "igm_single"), str(workdirs / "winn_single")]
  done = subprocess.run(
      [sys.executable, "-m", "introjax.compare", f"--workdirs={','.join(dirs)}",
       "--size=16", "--num_images=4", f"--out={tmp_path}"],
      cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
      timeout=300)
  assert done.returncode == 0, done.stderr
  assert "| WINN-single |" in done.stdout
  rows = json.load(open(tmp_path / "compare.json"))
  assert [r["workdir"] for r in rows] == dirs
  picture = Image.open(tmp_path / "compare.png")
  # Three 2×2 grids of 16-pixel images (2-pixel gaps), 8-pixel gaps between.
  assert picture.size == (3 * 34 + 2 * 8, 34)
  assert os.path.exists(tmp_path / "compare.md")


def test_models_of_different_data_are_refused(workdirs):
  with pytest.raises(UserError, match="data.image_size"):
    compare.compare([str(workdirs / "winn_single"),
                     str(workdirs / "winn_larger")], 16, 4, 0)
