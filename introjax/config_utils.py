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


# Keys that moved when config sections were named by axis (cascade,
# negatives, p0, pool) rather than by member: old checkpoints are read with
# `upgrade`, and an old spelling on the command line is refused with the new.
_MOVED_FIELDS = {"patch_size": "data.patch_size",
                 "negative_size": "negatives.size",
                 "negatives_per_round": "negatives.per_round",
                 "patches_per_image": "negatives.patches_per_image",
                 "init": "p0.name", "init_std": "p0.std",
                 "pool_rounds": "pool.rounds",
                 "recency_decay": "pool.recency_decay"}
RENAMED = {"igm.single": "cascade.single", "winn.cascade": "cascade.critics",
           "icl.negatives_per_class": "negatives.per_class",
           "icl.init_std": "p0.std", "icl.pool_rounds": "pool.rounds",
           "log.swd": "eval.per_round",
           **{f"{member}.{old}": new for member in ("igm", "winn")
              for old, new in _MOVED_FIELDS.items()}}


def upgrade(config_dict):
  """A saved config (a dict, as checkpoints hold it) in today's layout: the
  RENAMED keys moved, p0.name "gaussian" where it was implicit, IGM-single's
  step cap where it was synthesis.max_steps."""
  config_dict = json_copy(config_dict)
  moved = False
  for old, new in RENAMED.items():
    section, _, field = old.partition(".")
    if field in config_dict.get(section, {}) and old != "log.swd":
      value = config_dict[section].pop(field)
      new_section, _, new_field = new.partition(".")
      config_dict.setdefault(new_section, {})[new_field] = value
      moved = True
  if config_dict.get("log", {}).pop("swd", False):
    config_dict.setdefault("eval", {}).setdefault("per_round", "swd")
  for member in ("igm", "winn"):
    if moved and config_dict.get(member) == {}:
      del config_dict[member]
  if moved and "p0" in config_dict:
    config_dict["p0"].setdefault("name", "gaussian")
  cascade = config_dict.get("cascade", {})
  if "single" in cascade and "single_steps" not in cascade:
    # Before cascade.single_steps, IGM-single climbed synthesis.max_steps.
    cascade["single_steps"] = config_dict["synthesis"]["max_steps"]
  return config_dict


def json_copy(tree):
  """A deep copy of nested dicts and lists."""
  if isinstance(tree, dict):
    return {k: json_copy(v) for k, v in tree.items()}
  if isinstance(tree, list):
    return [json_copy(v) for v in tree]
  return tree


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
  moved = [k for k in unknown if k in RENAMED]
  if moved:
    raise ConfigError(
        "; ".join(f"--config.{k} is now --config.{RENAMED[k]}"
                  for k in moved) + f" (for {spec}).")
  if unknown:
    raise ConfigError(
        f"Unknown config key{'s' if len(unknown) > 1 else ''} "
        f"{', '.join(unknown)} for {spec}; the valid keys are: "
        f"{', '.join(sorted(config_keys(config)))}.")


def check_variants(variants, known, field):
  """`variants` as a tuple, refused unless it names each of `known` at
  most once (and at least one); `field` names the setting."""
  variants = tuple(variants)
  unknown = [v for v in variants if v not in known]
  if unknown or not variants or len(set(variants)) != len(variants):
    raise ConfigError(
        f"{field}={variants!r} must name each of {', '.join(known)} "
        "at most once (and at least one).")
  return variants
