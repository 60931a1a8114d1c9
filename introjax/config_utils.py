"""Config files and command-line overrides.

A config file defines `get_config(variant="")`; `--config=path.py:variant`
picks a variant and `--config.a.b=value` overrides any field.
"""
import importlib.util
import os
import re

from introjax.errors import ConfigError


def load_config_file(spec):
  """The ConfigDict of `path.py[:variant]`."""
  path, _, variant = spec.partition(":")
  if not os.path.exists(path):
    raise ConfigError(f"Config file {path!r} does not exist; pass "
                      "--config=configs/<name>.py.")
  module_spec = importlib.util.spec_from_file_location("_introjax_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(variant) if variant else module.get_config()


def config_keys(config, prefix=""):
  """Every leaf field of `config` as a dotted path."""
  keys = []
  for name, value in config.items():
    if hasattr(value, "items"):
      keys += config_keys(value, f"{prefix}{name}.")
    else:
      keys.append(prefix + name)
  return keys


def unknown_overrides(argv, config):
  """The `--config.x.y=...` keys in argv that `config` does not have."""
  known = set(config_keys(config))
  keys = [m.group(1) for a in argv
          if (m := re.match(r"--config\.([\w.]+)(=|$)", a))]
  return [k for k in keys if k not in known]


# Other spellings of a config key, accepted on the command line. Every
# optimiser step of a round runs inside one compiled loop, so the finest
# profiler trace is one round: "a trace of a few steps" is profile_round.
ALIASES = {"profile_steps": "profile_round"}


def resolve_aliases(argv):
  """argv with `--config.<alias>=…` spelled as the key it stands for."""
  def resolve(arg):
    m = re.match(r"--config\.([\w.]+)(=.*|$)", arg)
    if m and m.group(1) in ALIASES:
      return f"--config.{ALIASES[m.group(1)]}{m.group(2)}"
    return arg
  return [resolve(a) for a in argv]


def check_overrides(argv):
  """Raises ConfigError naming unknown `--config.` keys and the valid ones."""
  spec = next((a.split("=", 1)[1] for a in argv
               if a.startswith("--config=")), None)
  if spec is None:
    return
  config = load_config_file(spec)
  unknown = unknown_overrides(argv, config)
  if unknown:
    raise ConfigError(
        f"Unknown config key{'s' if len(unknown) > 1 else ''} "
        f"{', '.join(unknown)} for {spec}; the valid keys are: "
        f"{', '.join(sorted(config_keys(config)))}.")
