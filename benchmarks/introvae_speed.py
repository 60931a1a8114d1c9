"""Training images/s of IntroVAE's compiled round (Algorithm 1: E update
then G update per iteration, a `scan` over one epoch) with the networks of
configs/introvae_celeba.py:<size>, batch 8 (§4.1), on the bundled faces
resized to the size and made RGB (offline).

    PYTHONPATH=. python benchmarks/introvae_speed.py 64
"""
import sys
import time

import jax
import jax.numpy as jnp

from introjax import config_utils
from introjax.training import introvae


def main(size):
  c = config_utils.load_config_file(f"configs/introvae_celeba.py:{size}")
  c.data.source, c.data.name, c.data.holdout, c.data.channels = (
      "lfw_subset", "", 20, 3)
  c.train.epochs_per_round = 1
  t = introvae.IntroVAETrainer(c)
  s = t.init_state()
  args = (t.images, jax.random.PRNGKey(0), jnp.float32(0.25),
          jnp.float32(110.0))
  began = time.perf_counter()
  t._round.lower(s, *args).compile()
  print(f"{size}²: compile {time.perf_counter() - began:.1f} s", flush=True)
  for i in range(3):
    began = time.perf_counter()
    s, m = t._round(s, t.images, jax.random.PRNGKey(i), jnp.float32(0.25),
                    jnp.float32(110.0))
    jax.block_until_ready(m)
    seconds = time.perf_counter() - began
    print(f"{size}²: {t.steps_per_round} iterations of batch 8 in "
          f"{seconds:.2f} s: {t.steps_per_round * 8 / seconds:.1f} img/s",
          flush=True)


if __name__ == "__main__":
  main(int(sys.argv[1]))
