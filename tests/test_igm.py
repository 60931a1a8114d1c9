"""The IGM trainer end to end on the tiny config: learning, outputs, resume,
and every bad input stopping with one sentence while checkpoints survive.

Training dominates this file's time, so the runs are shared: `trained` is
one 2-round run, `round_1` what a run of it killed in round 2 leaves, and
`on_to_round_3` the same run carried on through the command line; a test
that writes to a shared workdir works on a copy.
"""
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from conftest import (REPO, assert_trees_equal, load_config, restore_latest,
                      subprocess_env)
from introjax import parallel
from introjax.data import images as image_data
from introjax.data.images import texture_canvas
from introjax.eval.images import grid
from introjax.models import cascade as cascade_lib
from introjax.errors import (ConfigMismatchError, ImageError, NonFiniteError,
                             WorkdirError)
from introjax.sampling import anysize
from introjax.sampling import scores
from introjax.sampling.ascent import AscentSettings, ascend
from introjax.sampling.stopping import FixedSteps, WindowedProbability
from introjax.training.igm import TextureIGM, train_and_evaluate


def restore_all(workdir, config):
  """Every array of the latest checkpoint, as numpy, and its round."""
  return restore_latest(TextureIGM(config, parallel.make_mesh()), workdir)


def run_cli(module, *args):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO,
                        env=subprocess_env(), capture_output=True, text=True,
                        timeout=300)


def copy_of(workdir, tmp_path):
  """A private copy of a shared workdir, for a test that writes to it."""
  shutil.copytree(workdir, tmp_path / "run")
  return str(tmp_path / "run")


def _rms(a, b):
  return float(np.sqrt(np.mean(np.square(np.asarray(a, np.float64) -
                                         np.asarray(b, np.float64)))))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A finished 2-round tiny IGM run (with its end-of-run report)."""
  config = load_config("igm_texture.py:tiny")
  config.log.report = True
  workdir = str(tmp_path_factory.mktemp("igm"))
  state = train_and_evaluate(config, workdir)
  return config, workdir, state


@pytest.fixture(scope="module")
def model(trained):
  """The trained run's model; shared, so tests reuse its compiled programs."""
  return TextureIGM(trained[0], parallel.make_mesh())


@pytest.fixture(scope="module")
def round_1(trained, tmp_path_factory):
  """What a run of `trained`'s config killed in round 2 leaves: its workdir
  with round 2's checkpoint and metrics taken out; and round 1's arrays."""
  config, workdir, _ = trained
  run = tmp_path_factory.mktemp("round_1") / "run"
  shutil.copytree(workdir, run)
  shutil.rmtree(run / "checkpoints" / "2")
  lines = (run / "metrics.jsonl").read_text().splitlines()
  (run / "metrics.jsonl").write_text("".join(
      line + "\n" for line in lines if json.loads(line)["round"] == 1))
  saved, last = restore_all(str(run), config)
  assert last == 1
  return run, saved


@pytest.fixture(scope="module")
def on_to_round_3(trained, tmp_path_factory):
  """`trained`'s workdir run on to round 3 through the command line, first
  with a learning rate that makes round 3's critic NaN (the checkpoint's
  arrays are read right after), then with the fix."""
  config, workdir, _ = trained
  run = str(tmp_path_factory.mktemp("round_3") / "run")
  shutil.copytree(workdir, run)
  command = ("--config=configs/igm_texture.py:tiny", f"--workdir={run}",
             "--config.rounds=3", "--config.generate.num_images=0")
  nan = run_cli("introjax.main", *command, "--config.train.learning_rate=1e30")
  after_nan = restore_all(run, config)
  fixed = run_cli("introjax.main", *command)
  return run, nan, after_nan, fixed


def test_tiny_run_learns_and_writes_its_outputs(trained, model):
  config, workdir, state = trained
  # Round 1's critic, trained on the texture against p0's noise, separates
  # positive patches from fresh noise.
  first = cascade_lib.critic(state.cascade, 0)
  critic = jax.jit(lambda x: model.logits(first, x))
  positives = anysize.extract_patches(
      model.positive, anysize.random_origins(
          jax.random.PRNGKey(0), 1, 64, model.canvas_shape[:2], model.patch),
      model.patch)
  noise = 0.3 * jax.random.normal(jax.random.PRNGKey(1), positives.shape)
  accuracy = (jnp.mean(critic(positives) > 0) + jnp.mean(critic(noise) < 0)) / 2
  assert accuracy > 0.9
  # Every round's synthesis raised the mean logit of its negatives.
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rounds = [json.loads(line) for line in f]
  assert [r["round"] for r in rounds] == [1, 2]
  for r in rounds:
    assert r["synthesis_logit_end"] > r["synthesis_logit_start"]
  # Synthesis stops by IGM's windowed rule (the config's window and
  # probability), and it fires: canvases stop before the step cap.
  assert model.rule == WindowedProbability(
      window=config.synthesis.window,
      threshold=config.synthesis.stop_probability)
  assert sum(r["synthesis_stopped_early"] for r in rounds) > 0
  assert min(r["synthesis_steps_mean"] for r in rounds) < (
      config.synthesis.max_steps)
  # The cascade holds one critic per round.
  assert int(state.cascade.count) == state.cascade.capacity == config.rounds
  samples = os.listdir(os.path.join(workdir, "samples"))
  assert {"round_001.png", "round_002.png", "final_32x32.png"} <= set(samples)
  final = Image.open(os.path.join(workdir, "samples", "final_32x32.png"))
  assert final.size == (32, 32)
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))


def test_tiny_run_ends_with_its_report(trained):
  _, workdir, _ = trained
  out = os.path.join(workdir, "report")
  text = open(os.path.join(out, "report.md")).read()
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rounds = [json.loads(line) for line in f]
  for key in rounds[-1]:
    if key != "round":
      assert f"`{key}`" in text, key
  # The critic's mean logits on positives and negatives are logged, on
  # either side of 0 once it separates them.
  for r in rounds:
    assert r["train_logit_positive"] > 0 > r["train_logit_negative"]
  for name in ("train.png", "synthesis.png", "timings.png"):
    assert Image.open(os.path.join(out, name)).size[0] >= 400
  assert "![samples round 2](../samples/round_002.png)" in text
  with open(os.path.join(workdir, "launches.jsonl")) as f:
    start, launch = map(json.loads, f)  # at the start, at the end
  assert start["started"] == launch["started"] and "ended" not in start
  assert (launch["trainer"], launch["first_round"], launch["last_round"],
          launch["device_count"]) == ("igm", 1, 2, jax.device_count())
  assert launch["wall_seconds"] > 0


def test_igm_single_keeps_one_critic(tmp_path, tiny_config):
  tiny_config.cascade.single = True
  tiny_config.generate.num_images = 0
  # IGM-single climbs from noise with its own step cap (IGM's stays).
  tiny_config.cascade.single_steps = 9
  state = train_and_evaluate(tiny_config, str(tmp_path))
  assert int(state.cascade.count) == state.cascade.capacity == 1
  rounds = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert [r["synthesis_step_cap"] for r in rounds] == [9, 9]
  assert max(r["synthesis_steps_max"] for r in rounds) <= 9
  tiny_config.cascade.single = False
  assert TextureIGM(tiny_config, parallel.make_mesh()).settings.max_steps == (
      tiny_config.synthesis.max_steps)


def test_resumed_run_equals_uninterrupted_run(trained, round_1, tmp_path,
                                             monkeypatch):
  uninterrupted = trained[1]
  config = load_config("igm_texture.py:tiny")
  # The final texture is not part of the checkpoints compared below.
  config.generate.num_images = 0
  workdir = copy_of(round_1[0], tmp_path)
  real_round = TextureIGM.run_round

  def killed_in_round_2(self, state, t):
    if t == 2:
      raise KeyboardInterrupt("killed")
    return real_round(self, state, t)

  monkeypatch.setattr(TextureIGM, "run_round", killed_in_round_2)
  with pytest.raises(KeyboardInterrupt):
    train_and_evaluate(config, workdir)
  monkeypatch.setattr(TextureIGM, "run_round", real_round)
  assert restore_all(workdir, config)[1] == 1
  train_and_evaluate(config, workdir)
  resumed, last = restore_all(workdir, config)
  expected, _ = restore_all(uninterrupted, config)
  assert last == 2
  assert_trees_equal(resumed, expected)


def test_sample_and_style_transfer_from_saved_model(trained, model):
  config, workdir, state = trained
  textures, stats = model.generate(state.cascade, 2, 40, jax.random.PRNGKey(3))
  assert textures.shape == (2, 40, 40, 1)
  assert np.isfinite(textures).all() and np.abs(textures).max() <= 1.0
  assert stats.steps.shape == (config.rounds, 2)

  content = jnp.linspace(-0.5, 0.5, 30 * 30).reshape(30, 30, 1)
  styled = {}
  for alpha in (0.0, config.style.alpha, 1.0):
    styled[alpha], stats = model.stylize(state.cascade, content, alpha,
                                         config.style.steps,
                                         jax.random.PRNGKey(0))
    assert styled[alpha].shape == content.shape
    assert np.all(stats.last_logit > stats.first_logit)
  # α = 1: fidelity only, and the content is its minimum.
  np.testing.assert_allclose(styled[1.0], content, atol=1e-6)
  # The documented α moves the content towards the texture nearly as far as
  # the texture term alone (the averaged fidelity term is weak against the
  # logits), but the fidelity term holds it back, and the content's layout
  # stays: not its input, not noise.
  mixed, texture_only = styled[config.style.alpha], styled[0.0]
  moved = _rms(mixed, content)
  assert 0.5 * _rms(texture_only, content) < moved < 0.95 * _rms(
      texture_only, content), (moved, _rms(texture_only, content))
  assert moved > 0.01
  assert np.corrcoef(np.ravel(mixed), np.ravel(content))[0, 1] > 0.9


def test_style_objective_is_the_mean_logit_less_the_mean_squared_change():
  """IGM §4.2's style direction is the exact gradient of (1−α)·(mean patch
  logit) − α·(per-pixel mean of (x − c)²), checked in float64 against an
  explicit loop over canvases and patches; with α = 1 an image returns to
  its content under the texture sampler's Adam."""
  rng = np.random.default_rng(0)
  patch, per_canvas = 4, 3
  w = rng.normal(size=(patch, patch, 2))
  logits_fn = lambda p: (jnp.tanh(p * w.astype(p.dtype)) + p ** 2).sum(
      axis=(1, 2, 3))
  content = rng.uniform(-0.8, 0.8, (2, 9, 7, 2))
  with jax.enable_x64(True):
    x = jnp.asarray(rng.uniform(-0.8, 0.8, (2, 9, 7, 2)))
    content = jnp.asarray(content)
    key = jax.random.PRNGKey(3)
    alpha = 0.3
    logits, grad = scores.style_transfer(logits_fn, patch, per_canvas,
                                         content, alpha)(x, key)
    origins = np.asarray(anysize.random_origins(key, 2, per_canvas, (9, 7),
                                                patch))

    def objective(canvas, b):
      total = 0.0
      for y0, x0 in origins[b]:
        total += logits_fn(canvas[None, y0:y0 + patch, x0:x0 + patch])[0]
      fidelity = ((canvas - content[b]) ** 2).sum() / canvas.size
      return (1 - alpha) * total / per_canvas - alpha * fidelity

    for b in range(2):
      expected = jax.grad(objective)(x[b], b)
      np.testing.assert_allclose(grad[b], expected, rtol=1e-10, atol=1e-12)
      for i, (y0, x0) in enumerate(origins[b]):
        np.testing.assert_allclose(
            logits[b, i], logits_fn(x[b][None, y0:y0 + patch, x0:x0 + patch])[0],
            rtol=1e-12)

  # α = 1 from a perturbed content image: the fidelity term alone brings it
  # back.
  c = jnp.asarray(np.asarray(content), jnp.float32)
  start = c + 0.1 * jnp.asarray(rng.choice([-1.0, 1.0], c.shape), jnp.float32)
  adam = AscentSettings(optimizer="adam", learning_rate=0.01, b1=0.5,
                        max_steps=30)
  back, _ = ascend(scores.style_transfer(logits_fn, patch, per_canvas, c, 1.0),
                   start, jax.random.PRNGKey(0), FixedSteps(), adam)
  assert _rms(back, c) < 0.3 * _rms(start, c), (_rms(back, c), _rms(start, c))


def test_generation_ignores_the_unused_part_of_the_cascade(trained, model):
  state = trained[2]
  first = cascade_lib.critic(state.cascade, 0)
  alone = cascade_lib.put(cascade_lib.empty_cascade(first, 1), first, 0)
  roomy = cascade_lib.put(cascade_lib.empty_cascade(first, 3), first, 0)
  key = jax.random.PRNGKey(5)
  x_alone, stats_alone = model.generate(alone, 2, 24, key)
  x_roomy, stats_roomy = model.generate(roomy, 2, 24, key)
  np.testing.assert_array_equal(x_alone, x_roomy)
  np.testing.assert_array_equal(stats_alone.steps[0], stats_roomy.steps[0])
  assert not stats_roomy.steps[1:].any()


def test_nonfinite_loss_on_the_command_line_is_one_sentence(trained,
                                                            on_to_round_3):
  config, workdir, _ = trained
  _, nan, (restored, last), _ = on_to_round_3
  assert nan.returncode != 0
  assert "Traceback" not in nan.stderr
  errors = [line for line in nan.stderr.splitlines()
            if line.startswith("introjax: error:")]
  assert errors == nan.stderr.strip().splitlines()[-1:], nan.stderr[-2000:]
  (error,) = errors
  assert "NaN or Inf" in error and "round 3" in error
  assert "lower train.learning_rate" in error
  assert error.endswith(".") and ". " not in error  # one sentence
  # Round 2's checkpoint is still the latest, untouched.
  assert last == 2
  assert_trees_equal(restored, restore_all(workdir, config)[0])


def test_rerun_after_the_fix_resumes_and_grows_the_cascade(trained,
                                                           on_to_round_3):
  config, _, state = trained
  run, _, _, fixed = on_to_round_3
  assert fixed.returncode == 0, fixed.stderr[-2000:]
  assert "Resumed from round 2" in fixed.stderr
  with open(os.path.join(run, "metrics.jsonl")) as f:
    assert [json.loads(line)["round"] for line in f] == [1, 2, 3]
  longer, last = restore_all(run, config)
  assert last == 3
  cascade = longer["critics"]
  assert int(cascade.count) == cascade.capacity == 3
  for i in range(2):
    assert_trees_equal(cascade_lib.critic(cascade, i),
                       cascade_lib.critic(state.cascade, i))


def test_only_the_last_two_checkpoints_are_kept(on_to_round_3):
  run = on_to_round_3[0]
  rounds = [name for name in os.listdir(os.path.join(run, "checkpoints"))
            if name.isdigit()]
  assert sorted(rounds) == ["2", "3"]


def test_sample_command_uses_only_the_first_critics(trained, model, tmp_path):
  _, workdir, state = trained
  out = str(tmp_path / "s.png")
  result = run_cli("introjax.sample", f"--workdir={workdir}", "--size=40",
                   "--num_images=2", "--critics=1", "--seed=3",
                   f"--out={out}")
  assert result.returncode == 0, result.stderr
  assert "with round 2's 1 critic(s)" in result.stderr
  written = np.asarray(Image.open(out)).astype(int)
  assert written.shape == (40, 2 * 40 + 2)  # two textures, a 2-pixel gap
  # Exactly what the first critic alone draws, not what both draw.
  key = jax.random.PRNGKey(3)
  first, _ = model.generate(cascade_lib.first(state.cascade, 1), 2, 40, key)
  both, _ = model.generate(state.cascade, 2, 40, key)
  np.testing.assert_array_equal(written, grid(first)[..., 0])
  assert np.abs(written - grid(both)[..., 0]).mean() > 1
  # A third critic is refused in one sentence.
  result = run_cli("introjax.sample", f"--workdir={workdir}", "--critics=3")
  assert result.returncode != 0
  assert "has 2 trained critic(s); ask for between 1 and 2, not 3" in (
      result.stderr)
  assert "Traceback" not in result.stderr


def test_sample_command_renders_a_content_image(trained, model, tmp_path):
  config, workdir, state = trained
  path = str(tmp_path / "content.png")
  ramp = np.linspace(40, 215, 30 * 30).reshape(30, 30)
  ramp[8:20, 10:22] = 230  # a bright square on a ramp
  Image.fromarray(ramp.astype(np.uint8)).save(path)
  out = str(tmp_path / "styled.png")
  result = run_cli("introjax.sample", f"--workdir={workdir}",
                   f"--content={path}", "--content_size=30", f"--out={out}")
  assert result.returncode == 0, result.stderr
  assert "Stylized" in result.stderr
  written = np.asarray(Image.open(out)).astype(int)
  # The config's α and steps, through every critic, from this content.
  content = image_data.load_image(path, size=30, channels=1)
  expected, _ = model.stylize(state.cascade, content, config.style.alpha,
                              config.style.steps, jax.random.PRNGKey(0))
  as_png = lambda x: grid(np.asarray(x)[None])[..., 0].astype(int)
  np.testing.assert_array_equal(written, as_png(expected))
  moved = np.abs(written - as_png(content)).mean()
  noise = jnp.clip(0.3 * jax.random.normal(jax.random.PRNGKey(1),
                                           content.shape), -1, 1)
  assert moved > 0.5  # the style changed it …
  # … and it is still the content: far closer to it than to p0's noise.
  assert moved < np.abs(written - as_png(noise)).mean() / 3


def test_unknown_config_key_names_valid_keys(tmp_path):
  result = run_cli("introjax.main", "--config=configs/igm_texture.py:tiny",
                   f"--workdir={tmp_path}", "--config.igm.patchsize=8")
  assert result.returncode != 0
  assert "Unknown config key igm.patchsize" in result.stderr
  assert "data.patch_size" in result.stderr
  assert "Traceback" not in result.stderr


@pytest.mark.parametrize("make_source, message", [
    (lambda d: str(d / "missing.png"), "does not exist"),
    (lambda d: _write(d / "junk.png", b"not a png"), "Could not read"),
    (lambda d: _small_png(d / "small.png", 12), "smaller than the 16×16"),
])
def test_bad_image_is_one_clear_sentence(tmp_path, tiny_config, make_source,
                                         message):
  tiny_config.data.image_path = make_source(tmp_path)
  tiny_config.data.image_size = 0  # keep the file's own size
  with pytest.raises(ImageError, match=message):
    train_and_evaluate(tiny_config, str(tmp_path / "run"))


def _write(path, data):
  path.write_bytes(data)
  return str(path)


def _small_png(path, side):
  Image.fromarray(np.zeros((side, side), np.uint8)).save(path)
  return str(path)


def test_image_resized_below_patch_is_refused(tmp_path, tiny_config):
  tiny_config.data.image_size = 8
  with pytest.raises(ImageError, match="resized to 8 pixels"):
    train_and_evaluate(tiny_config, str(tmp_path))


def test_unwritable_workdir(tmp_path, tiny_config):
  blocker = tmp_path / "file"
  blocker.write_text("x")
  with pytest.raises(WorkdirError, match="Cannot write to --workdir"):
    train_and_evaluate(tiny_config, str(blocker / "run"))


def test_incompatible_checkpoint_is_refused_and_kept(round_1, tiny_config,
                                                    tmp_path):
  workdir, saved = copy_of(round_1[0], tmp_path), round_1[1]
  tiny_config.model.features = (8, 32)
  with pytest.raises(ConfigMismatchError, match="model.features"):
    train_and_evaluate(tiny_config, workdir)
  config = load_config("igm_texture.py:tiny")
  restored, last = restore_all(workdir, config)
  assert last == 1
  assert_trees_equal(restored, saved)


# A NaN in the classification step is checked through the command line
# (test_nonfinite_loss_on_the_command_line_is_one_sentence).
def test_nonfinite_synthesis_stops_the_run_and_keeps_checkpoint(
    round_1, tiny_config, tmp_path):
  workdir, saved = copy_of(round_1[0], tmp_path), round_1[1]
  tiny_config.synthesis.learning_rate = 1e38
  tiny_config.synthesis.clip = 0.0
  with pytest.raises(NonFiniteError, match="lower synthesis.learning_rate"):
    train_and_evaluate(tiny_config, workdir)
  config = load_config("igm_texture.py:tiny")
  restored, last = restore_all(workdir, config)
  assert last == 1
  assert_trees_equal(restored, saved)


def test_positive_canvas_is_reflect_padded():
  image = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
  canvas = texture_canvas(image, 2)
  assert canvas.shape == (8, 8, 1)
  np.testing.assert_array_equal(canvas[2:6, 2:6], image)
  np.testing.assert_array_equal(canvas[1, 2:6], image[1])
