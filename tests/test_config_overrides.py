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
  assert {"igm.single", "icl.mode", "eval.inception_weights",
          "winn.cascade", "dtype"} <= keys
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
# in "Launching elsewhere") or every member that generates images (FID and
# the Inception score), so every such config must take them.
_EVERY_CONFIG = ("dtype", "profile_round", "seed", "rounds")
_EVERY_GENERATOR = ("eval.inception_weights", "eval.inception_splits",
                    "eval.inception_batch")
_GENERATORS = ("igm", "winn", "igm_images", "winn_images")


@pytest.mark.parametrize("name", sorted(
    p.name for p in (REPO / "configs").glob("*.py")))
def test_every_config_takes_the_overrides_offered_for_every_run(name):
  for variant in _variants(name):
    config = load_config(name + (f":{variant}" if variant else ""))
    keys = set(config_utils.config_keys(config))
    wanted = _EVERY_CONFIG + (
        _EVERY_GENERATOR if config.trainer in _GENERATORS else ())
    assert set(wanted) <= keys, (name, variant, set(wanted) - keys)


def _variants(name):
  """The variants a config's docstring lists (lines '  name   text')."""
  doc = _docstring(REPO / "configs" / name)
  listed = re.findall(r"^\s{2}(\w+)\s{2,}", doc, re.M)
  return [""] + [v for v in listed if v not in ("none",)]
