"""What every command-line entry point shares: quiet library logs and one
sentence, not a traceback, for a UserError."""
import logging as std_logging
import sys

from absl import app
from absl import flags
from absl import logging

from introjax.errors import UserError


class _QuietLibraries(std_logging.Filter):
  """Keeps the terminal to our progress lines: libraries' INFO chatter
  (Orbax logs every checkpoint write) is dropped, their warnings kept."""

  def filter(self, record):
    return (record.levelno >= std_logging.WARNING or
            "introjax" in record.pathname)


def run_app(main, argv=None, before=None):
  """absl's app.run with quiet library logs; `before(argv)` may validate
  the command line first. A UserError exits with its one sentence."""
  argv = sys.argv if argv is None else argv
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_QuietLibraries())
  try:
    if before is not None:
      before(argv[1:])
    app.run(main, argv=argv)
  except UserError as e:
    sys.exit(f"introjax: error: {e}")


def run_with_own_flags(main, flag_values, argv=None):
  """As run_app, for a command whose flags live in their own `flag_values`
  (not absl's global set, where another module's required flags would
  refuse the parse): parses `argv` into them and calls `main(rest)`."""
  argv = sys.argv if argv is None else argv
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_QuietLibraries())
  try:
    rest = flag_values(argv)
  except flags.Error as e:
    sys.exit(f"introjax: error: {e}")
  try:
    main(rest)
  except UserError as e:
    sys.exit(f"introjax: error: {e}")
  sys.exit(0)

