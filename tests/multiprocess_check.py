"""One process of tests/test_multiprocess.py: trains the tiny IGM texture,
IGM faces and ICL digits configs one after another, each into OUT/<name>,
through `introjax.main`'s command line, joining the multi-process run (once)
that $JAX_COORDINATOR_ADDRESS, $JAX_NUM_PROCESSES and $JAX_PROCESS_ID name:

    python tests/multiprocess_check.py OUT

Run from the repository root (the config paths are relative). Each run's log
follows a line `== <name> ==`, so the test can read them apart. One process
for all three runs starts JAX, and joins the gloo group, once instead of three
times.
"""
import sys

# name: (config, overrides). One round each keeps the comparison fair (see
# tests/test_multiprocess.py) and the test short.
RUNS = {
    "igm": ("igm_texture.py:tiny", ["--config.rounds=1",
                                    "--config.train.max_steps=10",
                                    "--config.generate.num_images=1"]),
    # 62 faces do not split over 4 devices: the padding is used.
    "faces": ("igm_celeba.py:tiny", ["--config.rounds=1",
                                     "--config.data.max_images=62",
                                     "--config.generate.num_images=1"]),
    # Nor do 402 training digits.
    "icl": ("icl_digits.py:tiny", ["--config.rounds=2",
                                   "--config.data.max_train=402",
                                   "--config.train.epochs_per_round=1",
                                   "--config.icl.variants=('baseline','icl','winn')"]),
}


def command(name, out):
  """The `python -m introjax.main` argv of run `name`."""
  config, overrides = RUNS[name]
  return ["introjax.main", f"--config=configs/{config}",
          f"--workdir={out}/{name}", *overrides]


def _parse(argv):
  """Points introjax.main's flags at another command line. absl parses one
  per process, and ml_collections defines a flag per `--config.x` override
  it reads (from sys.argv), so those are dropped first; the log verbosity
  (a flag too) is kept."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  from absl import logging  # pylint: disable=import-outside-toplevel
  from introjax import config_utils  # pylint: disable=import-outside-toplevel
  config_utils.check_overrides(argv[1:])
  verbosity = logging.get_verbosity()
  for name in [n for n in flags.FLAGS if n.startswith("config.")]:
    delattr(flags.FLAGS, name)
  flags.FLAGS.unparse_flags()
  sys.argv = argv
  flags.FLAGS(argv)
  logging.set_verbosity(verbosity)


def main(out):
  from introjax import cli  # pylint: disable=import-outside-toplevel
  from introjax import config_utils  # pylint: disable=import-outside-toplevel
  from introjax import main as entry  # pylint: disable=import-outside-toplevel
  names = list(RUNS)
  join_once = entry._initialize_distributed  # pylint: disable=protected-access

  def train_all(argv):
    for i, name in enumerate(names):
      print(f"== {name} ==", flush=True)
      if i:
        _parse(config_utils.resolve_aliases(command(name, out)))
      entry.main(argv[:1])
      # jax.distributed.initialize runs once per process.
      entry._initialize_distributed = lambda: None  # pylint: disable=protected-access
    entry._initialize_distributed = join_once  # pylint: disable=protected-access

  # The first run goes exactly as `python -m introjax.main` would run it.
  sys.argv = config_utils.resolve_aliases(command(names[0], out))
  cli.run_app(train_all, sys.argv, before=config_utils.check_overrides)


if __name__ == "__main__":
  main(sys.argv[1])
