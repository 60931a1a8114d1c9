"""Every override the README and the config files' docstrings show is
accepted by the config it is shown for.

A line (with its `\\` continuations) that names `--config=configs/X.py[:v]`
sets the config its overrides are checked against. A line that shows
overrides alone (a table row, prose) speaks of the configs of its section:
each override must be a key of the config named last before it or of
another config named in the same section (a heading starts one).
`--config.x=y` is the README's placeholder.
"""
import ast
import pathlib
import re

import pytest

from conftest import REPO, load_config
from introjax import config_utils

_CONFIG = re.compile(r"--config=configs/(\w+\.py)(?::(\w+))?")
_OVERRIDE = re.compile(r"--config\.([\w.]+)=")


def _logical_lines(text):
  return re.sub(r"\\\n\s*", " ", text).splitlines()


def shown_overrides(text, default=None):
  """[(config specs, key, line)] for every `--config.key=` in `text`: the
  line's own config, or the last named and the others of its section."""
  found, current, section = [], default, []
  lines = _logical_lines(text)
  for i, line in enumerate(lines):
    if line.startswith("#"):
      section = []
    named = [n + (f":{v}" if v else "") for n, v in _CONFIG.findall(line)]
    if named:
      current = named[-1]
      section += named
    if not named:
      # The rest of the section may name its configs further down.
      rest = []
      for later in lines[i + 1:]:
        if later.startswith("#"):
          break
        rest += [n + (f":{v}" if v else "") for n, v in _CONFIG.findall(later)]
      specs = tuple(dict.fromkeys([current, *section, *rest]))
    else:
      specs = (current,)
    for key in _OVERRIDE.findall(line):
      if key != "x":
        found.append((specs, key, line.strip()))
  return found


def _docstring(path):
  return ast.get_docstring(ast.parse(path.read_text())) or ""


def _cases():
  cases = shown_overrides((REPO / "README.md").read_text())
  for path in sorted((REPO / "configs").glob("*.py")):
    cases += shown_overrides(_docstring(path), default=path.name)
  return cases


CASES = _cases()


def test_the_readme_and_docstrings_show_overrides():
  # The parse found the documented overrides (a broken parse finds none).
  keys = {key for _, key, _ in CASES}
  assert {"cascade.single", "icl.mode", "eval.inception_weights",
          "cascade.critics", "dtype"} <= keys
  assert all(specs[0] for specs, _, _ in CASES), [
      c for c in CASES if not c[0][0]]


@pytest.mark.parametrize("specs, key, line", CASES,
                         ids=[f"{s[0]}-{k}" for s, k, _ in CASES])
def test_documented_override_is_a_key_of_its_config(specs, key, line):
  key = config_utils.ALIASES.get(key, key)
  having = [s for s in specs if s and key in config_utils.config_keys(
      load_config(s))]
  assert having, f"{line!r} shows --config.{key}, which {specs} lack"


def test_shown_overrides_follow_the_configs_they_speak_of():
  text = ("# A\npython -m introjax.main --config=configs/a.py:tiny \\\n"
          "    --config.p.q=1\n| row | `--config.z=2` |\n"
          "--config=configs/b.py --config.w=3\n# B\n`--config.v=4`\n"
          "--config=configs/c.py\n")
  assert [(s, k) for s, k, _ in shown_overrides(text)] == [
      (("a.py:tiny",), "p.q"), (("a.py:tiny", "b.py"), "z"),
      (("b.py",), "w"), (("b.py", "c.py"), "v")]


# Overrides the README offers for every run (bf16 "any trainer", profiling
# in "Launching elsewhere", the evaluators and FID's settings, which any
# member may name, the end-of-run report), so every config must take them.
_EVERY_CONFIG = ("dtype", "profile_round", "seed", "rounds",
                 "eval.per_round", "eval.final", "eval.every_rounds",
                 "eval.inception_weights", "eval.inception_splits",
                 "eval.inception_batch", "log.report")


@pytest.mark.parametrize("name", sorted(
    p.name for p in (REPO / "configs").glob("*.py")))
def test_every_config_takes_the_overrides_offered_for_every_run(name):
  for variant in _variants(name):
    config = load_config(name + (f":{variant}" if variant else ""))
    keys = set(config_utils.config_keys(config))
    assert set(_EVERY_CONFIG) <= keys, (name, variant,
                                        set(_EVERY_CONFIG) - keys)


def _variants(name):
  """The variants a config's docstring lists (lines '  name   text')."""
  doc = _docstring(REPO / "configs" / name)
  listed = re.findall(r"^\s{2}(\w+)\s{2,}", doc, re.M)
  return [""] + [v for v in listed if v not in ("none",)]


def test_sections_are_named_by_axis_not_by_member():
  """Every config says the same axis with the same section: no member
  section holds what another member calls cascade, negatives, p0 or
  pool, and `winn` (where it exists) is the WINN classifier's own."""
  axes = {"cascade", "negatives", "p0", "pool"}
  for path in sorted((REPO / "configs").glob("*.py")):
    config = load_config(path.name)
    assert "igm" not in config, path.name
    if config.trainer == "icl":
      assert set(config.icl) == {"mode", "variants", "positive_class"}
      assert {"alpha", "gp_weight", "synthesis"} <= set(config.winn)
      assert {"negatives", "p0", "pool"} <= set(config), path.name
    elif config.trainer == "stic":
      # Its chains start from p0; its own section holds no other axis.
      assert "winn" not in config and "p0" in config, path.name
      assert not axes & set(config.stic), path.name
    elif config.trainer == "introvae":
      # No sampler: none of the sampling axes.
      assert "winn" not in config and not axes & set(config), path.name
    else:
      assert "winn" not in config and axes <= set(config), path.name


def test_an_old_spelling_names_the_new_one():
  with pytest.raises(config_utils.ConfigError,
                     match=r"--config.igm.single is now --config.cascade."
                     r"single; --config.winn.init is now --config.p0.name"):
    config_utils.check_overrides(["--config=configs/igm_texture.py",
                                  "--config.igm.single=True",
                                  "--config.winn.init=gaussian"])


def test_an_old_checkpoints_config_reads_in_todays_layout():
  today = load_config("winn_texture.py:tiny").to_dict()
  old = config_utils.json_copy(today)
  old["winn"] = {"cascade": old.pop("cascade")["critics"]}
  negatives, p0, pool = old.pop("negatives"), old.pop("p0"), old.pop("pool")
  old["winn"].update(
      patch_size=old["data"].pop("patch_size"),
      negative_size=negatives["size"],
      negatives_per_round=negatives["per_round"],
      patches_per_image=negatives["patches_per_image"], init=p0["name"],
      init_std=p0["std"], pool_rounds=pool["rounds"],
      recency_decay=pool["recency_decay"])
  del old["eval"]["per_round"]
  old["log"]["swd"] = True
  upgraded = config_utils.upgrade(old)
  assert upgraded == {**today, "log": {**today["log"]}}
  assert "winn" in old and "swd" in old["log"]      # the input is untouched
  # IGM's p0 was Gaussian without saying so.
  igm = load_config("igm_texture.py:tiny").to_dict()
  igm["igm"] = {"single": igm.pop("cascade")["single"],
                "init_std": igm["p0"]["std"]}
  del igm["p0"]
  upgraded = config_utils.upgrade(igm)
  assert upgraded["p0"] == {"std": 0.3, "name": "gaussian"}
  # IGM-single climbed synthesis.max_steps before cascade.single_steps.
  igm["synthesis"]["max_steps"] = 77
  assert config_utils.upgrade(igm)["cascade"] == {"single": False,
                                                  "single_steps": 77}
