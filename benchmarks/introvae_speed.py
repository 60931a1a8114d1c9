"""Training images/s of IntroVAE at one size next to the eager PyTorch port:
the benchmark command's `introvae` workload (introjax/bench.py measures;
this only names the settings BENCHMARKS.md quotes).

    PYTHONPATH=. python benchmarks/introvae_speed.py 64     # or 128
    # the same as
    python -m introjax.bench --workload=introvae --patch=64 --backend=both \
        --steps=2 --repeats=3
"""
import sys

from introjax import bench


def main(size, backend="both"):
  return bench.run(["introvae"], patch=size, backend=backend, steps=2,
                   repeats=3)


if __name__ == "__main__":
  main(int(sys.argv[1]), *sys.argv[2:3])
