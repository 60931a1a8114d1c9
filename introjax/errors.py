"""Errors that stop a run with one sentence naming the cause and the fix.

`introjax.main` prints these without a traceback; anything else is a bug.
"""


class UserError(Exception):
  """A problem with the input, the config or the environment."""


class ConfigError(UserError, ValueError):
  """A config value that cannot work."""


class ImageError(UserError, ValueError):
  """An image that cannot be used."""


class ConfigMismatchError(UserError, ValueError):
  """The workdir holds a checkpoint of an incompatible configuration."""


class WorkdirError(UserError, OSError):
  """The workdir cannot be written."""


class NonFiniteError(UserError, FloatingPointError):
  """NaN or Inf appeared in training or synthesis."""


class DataError(UserError, ValueError):
  """A dataset that cannot be read or does not match the config."""
