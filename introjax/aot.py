r"""Compiles every step of a member for a Cloud TPU slice this machine does
not have, and says whether the run fits, before a slice is rented.

    JAX_PLATFORMS=cpu python -m introjax.aot --config=configs/igm_texture.py:paper \
        --topology=v5e:16x16 [--config.x=y …] [--json]

Needs libtpu (`pip install -e ".[aot]"`), which compiles for any TPU
topology on a CPU host. `--topology` is a topology (`v5e:16x16`,
`v4:2x2x4`, `v5p:4x4x4`) or an accelerator type (`v5litepod-256`, `v4-32`,
`v5p-128`). The trainer is built over the topology's devices with the same
mesh and shardings as a real run, its data only as shapes (no data is
read, no weights are made: parameter and optimiser shapes come from
`jax.eval_shape`), and each compiled call of `compiled_steps()`
(introjax/compiled.py) is lowered from those abstract arguments and
compiled by XLA's TPU compiler. One row per step: per-device memory
(arguments, outputs, temporaries, the rest of the run's state that stays
resident, total against the chip's HBM), FLOPs and bytes accessed and a
time estimate for one iteration of the step's loop (XLA's cost analysis
counts a loop's body once; `estimated_seconds` says whose estimate),
compile time, and the collectives in the compiled program with the bytes
each moves; the last column says whether the pool or the dataset is ever
gathered whole. A run that does not fit ends with one sentence naming the
step, its bytes per device against the chip's, and the knob to turn; the
exit status is then 1.
"""
import dataclasses
import json
import os
import re
import sys
import time
from typing import Dict, List, Optional

from absl import flags
import jax
import numpy as np

from introjax import cli
from introjax import compiled
from introjax import config_utils
from introjax import parallel
from introjax.errors import UserError

# Compiling opens no chip, so several checks (or tests) may load libtpu at
# once; without this the second waits on libtpu's lockfile and fails. Set
# before JAX starts its backends.
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

GiB = 1 << 30


@dataclasses.dataclass(frozen=True)
class Chip:
  """A TPU chip's datasheet figures (cloud.google.com/tpu/docs: the
  system-architecture page of each generation)."""
  name: str
  hbm_bytes: int
  bf16_tflops: float      # peak dense bf16 FLOP/s, 10^12
  hbm_gbps: float         # HBM bandwidth, 10^9 bytes/s


# By the device_kind libtpu reports.
CHIPS = {
    "TPU v4": Chip("v4", 32 * GiB, 275.0, 1200.0),
    "TPU v5 lite": Chip("v5e", 16 * GiB, 197.0, 819.0),
    "TPU v5": Chip("v5p", 95 * GiB, 459.0, 2765.0),
    "TPU v6 lite": Chip("v6e", 32 * GiB, 918.0, 1640.0),
}

# Accelerator types (gcloud's --accelerator-type) -> topology names. v4 and
# v5p count TensorCores (two a chip), v5e and v6e chips.
_SHAPES_3D = {4: "2x2x1", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4",
              128: "4x4x8", 256: "4x8x8", 512: "8x8x8", 1024: "8x8x16",
              2048: "8x16x16", 4096: "16x16x16"}
_SHAPES_2D = {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8",
              128: "8x16", 256: "16x16"}
_ACCELERATORS = {"v4": ("v4", 2, _SHAPES_3D), "v5p": ("v5p", 2, _SHAPES_3D),
                 "v5litepod": ("v5e", 1, _SHAPES_2D),
                 "v5e": ("v5e", 1, _SHAPES_2D),
                 "v6e": ("v6e", 1, _SHAPES_2D)}

_COLLECTIVE = re.compile(
    r"=\s+(?P<shape>\([^=]*?\)|[a-z0-9]+\[[0-9,]*\](?:\{[^}]*\})?)\s+"
    r"(?P<op>all-gather|all-reduce|reduce-scatter|all-to-all|"
    r"collective-permute|collective-broadcast|ragged-all-to-all)"
    r"(?P<start>-start)?\(")
_ARRAY = re.compile(r"\b([a-z]+[0-9]*)\[([0-9,]*)\]")
_ITEMSIZE = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2,
             "bf16": 2, "s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8,
             "f64": 8, "c64": 8, "c128": 16}


def topology_name(spec):
  """A topology name for get_topology_desc from `spec`: a topology
  ("v5e:16x16") as it is, an accelerator type ("v4-32") translated."""
  if ":" in spec:
    return spec
  family, _, count = spec.rpartition("-")
  if family in _ACCELERATORS and count.isdigit():
    name, per_chip, shapes = _ACCELERATORS[family]
    chips = int(count) // per_chip
    if chips in shapes:
      return f"{name}:{shapes[chips]}"
  raise UserError(f"--topology={spec} is neither a topology (e.g. "
                  "v5e:16x16, v4:2x2x4, v5p:4x4x4) nor a known accelerator "
                  "type (e.g. v4-32, v5litepod-256, v5p-128).")


def topology_devices(spec):
  """The devices of a TPU topology, compiled for on this machine."""
  try:
    from jax.experimental import topologies  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise UserError("This JAX has no jax.experimental.topologies; install "
                    "a JAX with it (pip install -e \".[aot]\").") from e
  name = topology_name(spec)
  family, _, shape = name.partition(":")
  dims = [int(n) for n in shape.split("x") if n.isdigit()] + [1, 1]
  # As a Cloud slice runs: v4 and v5p chips as one device each (megacore),
  # up to 2×2 chips to a host, so the mesh's rows group by process as on a
  # pod.
  options = {"chip_config_name": ("megacore" if family in ("v4", "v5p")
                                  else "default"),
             "chips_per_host_bounds": (min(2, dims[0]), min(2, dims[1]), 1)}
  if not libtpu_available():
    raise UserError(f"Compiling for {name} needs libtpu, the TPU compiler; "
                    "install it with pip install -e \".[aot]\" (or pass "
                    "--skip_aot_check to the launcher).")
  try:
    topology = topologies.get_topology_desc(topology_name=name,
                                            platform="tpu", **options)
  except Exception as e:  # pylint: disable=broad-except
    text = str(e).strip().splitlines()
    raise UserError(f"libtpu cannot compile for the topology {name!r} "
                    f"({text[0] if text else type(e).__name__}); give one "
                    "such as v5e:16x16, v4:2x2x4 or v5p:4x4x4.") from e
  return name, list(topology.devices)


def libtpu_available():
  try:
    import libtpu  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    return False
  return True


# Analysis -------------------------------------------------------------------


def collectives(hlo_text):
  """[(kind, bytes per device, dims)] of every collective in a compiled
  module's text: the result each moves (for an async start, its largest
  buffer: the gathered or permuted array)."""
  found = []
  for m in _COLLECTIVE.finditer(hlo_text):
    arrays = [(t, tuple(int(d) for d in dims.split(",") if d))
              for t, dims in _ARRAY.findall(m.group("shape"))
              if t in _ITEMSIZE]
    sizes = [_ITEMSIZE[t] * int(np.prod(d, dtype=np.int64))
             for t, d in arrays]
    if not sizes:
      continue
    op = m.group("op")
    if m.group("start") and op in ("all-gather", "collective-permute"):
      i = int(np.argmax(sizes))
      found.append((op, sizes[i], arrays[i][1]))
    else:   # a variadic collective's results are all outputs
      found.append((op, sum(sizes), arrays[int(np.argmax(sizes))][1]))
  return found


@dataclasses.dataclass
class StepReport:
  name: str
  iterations: int
  argument_bytes: int
  output_bytes: int
  temp_bytes: int
  alias_bytes: int
  code_bytes: int
  resident_bytes: int
  flops: float
  bytes_accessed: float
  xla_seconds: Optional[float]
  compile_seconds: float
  collectives: Dict[str, Dict[str, int]]    # kind -> {count, bytes, max}
  gathered: List[str]                       # watched arrays found whole
  watched_bytes: Dict[str, int]             # name -> per-device bytes
  refused: str = ""     # XLA's reason when it would not compile (no HBM)

  @property
  def total_bytes(self):
    return (self.argument_bytes + self.output_bytes + self.temp_bytes
            - self.alias_bytes + self.code_bytes + self.resident_bytes)


def _leaf_ids(tree):
  return {id(x) for x in jax.tree.leaves(tree)}


def analyse(step: compiled.Step) -> StepReport:
  """Lowers and compiles `step` from its abstract arguments; its memory,
  cost and collectives."""
  began = time.perf_counter()
  lowered = step.fn.lower(*step.args, **step.kwargs)
  try:
    executable = lowered.compile()
  except Exception as e:  # pylint: disable=broad-except
    # XLA refuses a program larger than the chip's memory: that is the
    # answer, not a failure of the check.
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    return _refused(step, str(e), time.perf_counter() - began)
  seconds = time.perf_counter() - began
  memory = executable.memory_analysis()
  cost = executable.cost_analysis() or {}
  if isinstance(cost, list):   # older JAX: one dict per program
    cost = cost[0] if cost else {}
  text = executable.as_text()
  found = collectives(text)
  by_kind = {}
  for kind, size, _ in found:
    entry = by_kind.setdefault(kind, {"count": 0, "bytes": 0, "max": 0})
    entry["count"] += 1
    entry["bytes"] += size
    entry["max"] = max(entry["max"], size)
  # A watched array is gathered when a collective yields its whole shape.
  gathered = [name for name, a in step.watch.items()
              if any(dims == tuple(a.shape) for _, _, dims in found)]
  in_args = _leaf_ids((step.args, step.kwargs))
  resident = [x for x in jax.tree.leaves(step.resident)
              if id(x) not in in_args]
  xla_seconds = cost.get("optimal_seconds")
  if xla_seconds is not None and not xla_seconds > 0:
    xla_seconds = None   # XLA gave no estimate (it reports a negative one)
  return StepReport(
      name=step.name, iterations=int(step.iterations),
      argument_bytes=int(memory.argument_size_in_bytes),
      output_bytes=int(memory.output_size_in_bytes),
      temp_bytes=int(memory.temp_size_in_bytes),
      alias_bytes=int(memory.alias_size_in_bytes),
      code_bytes=int(memory.generated_code_size_in_bytes),
      resident_bytes=compiled.device_bytes(resident),
      flops=float(cost.get("flops", 0.0)),
      bytes_accessed=float(cost.get("bytes accessed", 0.0)),
      xla_seconds=None if xla_seconds is None else float(xla_seconds),
      compile_seconds=seconds, collectives=by_kind, gathered=gathered,
      watched_bytes={n: compiled.device_bytes(a)
                     for n, a in step.watch.items()})


_SIZE = re.compile(r"([0-9.]+)\s*([KMGT])i?B?\b")


def _refused(step, message, seconds):
  """The report of a step XLA would not compile for lack of HBM: its
  arguments as laid out by us, its temporaries as the compiler's message
  says (the first size it names: what it needed)."""
  line = next((l for l in message.splitlines() if "RESOURCE_EXHAUSTED" in l),
              message.splitlines()[0] if message else "")
  line = line[line.index("RESOURCE_EXHAUSTED"):] if (
      "RESOURCE_EXHAUSTED" in line) else line
  found = _SIZE.search(line)
  scale = {"K": 1 << 10, "M": 1 << 20, "G": GiB, "T": 1 << 40}
  needed = int(float(found.group(1)) * scale[found.group(2)]) if found else 0
  in_args = _leaf_ids((step.args, step.kwargs))
  return StepReport(
      name=step.name, iterations=int(step.iterations),
      argument_bytes=compiled.device_bytes((step.args, step.kwargs)),
      output_bytes=0, temp_bytes=needed, alias_bytes=0, code_bytes=0,
      resident_bytes=compiled.device_bytes(
          [x for x in jax.tree.leaves(step.resident) if id(x) not in in_args]),
      flops=0.0, bytes_accessed=0.0, xla_seconds=None,
      compile_seconds=seconds, collectives={}, gathered=[],
      watched_bytes={n: compiled.device_bytes(a)
                     for n, a in step.watch.items()},
      refused=line.strip())


@dataclasses.dataclass
class Report:
  config: str
  trainer: str
  topology: str
  devices: int
  chip: Chip
  steps: List[StepReport]

  @property
  def fits(self):
    return (self.worst().total_bytes <= self.chip.hbm_bytes
            and not any(s.refused for s in self.steps))

  def worst(self):
    refused = [s for s in self.steps if s.refused]
    return max(refused or self.steps, key=lambda s: s.total_bytes)

  def verdict(self):
    """One sentence: fits, or which step does not and what to turn."""
    worst = self.worst()
    need, have = _size(worst.total_bytes), _size(self.chip.hbm_bytes)
    where = f"{self.config} on {self.topology} ({self.devices} {self.chip.name} chips)"
    if self.fits:
      return (f"{where} fits: the largest step, {worst.name}, needs "
              f"{need} per device of the chip's {have} of HBM.")
    return (f"{where} does not fit: its {worst.name} step needs {need} "
            f"per device against the chip's {have} of HBM; "
            f"{_knob(worst)}.")

  def as_json(self):
    return {"config": self.config, "trainer": self.trainer,
            "topology": self.topology, "devices": self.devices,
            "chip": dataclasses.asdict(self.chip), "fits": self.fits,
            "verdict": self.verdict(),
            "steps": [dict(dataclasses.asdict(s), total_bytes=s.total_bytes,
                           **dict(zip(("estimated_seconds", "estimate_basis"),
                                      estimated_seconds(s, self.chip))))
                      for s in self.steps]}


def _knob(step):
  """What to turn when `step` does not fit: the pool or the dataset when
  either holds a quarter of it or more (a step's temporaries and outputs
  often hold another copy), else the batch."""
  pool = step.watched_bytes.get("pool", 0)
  data = step.watched_bytes.get("dataset", 0)
  quarter = step.total_bytes / 4
  if pool >= quarter and pool >= data:
    return ("shrink the pool (pool.rounds × negatives.per_round, or the "
            "chains: stic.chains_per_class, stic.mixup_chains) or use more "
            "devices")
  if data >= quarter:
    return ("cap the dataset (data.max_images, or data.max_train for the "
            "classifiers) or use more devices")
  return ("lower the batch (train.batch_size, negatives.per_round or "
          "negatives.patches_per_image) or compute in bfloat16 "
          "(--config.dtype=bfloat16)")


def estimated_seconds(step, chip):
  """(seconds per loop iteration, its basis): XLA's estimate where it gives
  one that the chip's datasheet allows, else the larger of FLOPs and bytes
  against the chip's peaks (both estimates from the compiled program, not
  measurements). XLA's is dropped when faster than the peaks allow: on v5e
  it gave 0.017 ms for a 93 GFLOP iteration, 29x past the chip's peak."""
  floor = max(step.flops / (chip.bf16_tflops * 1e12),
              step.bytes_accessed / (chip.hbm_gbps * 1e9))
  if step.xla_seconds and step.xla_seconds >= floor:
    return step.xla_seconds, "XLA"
  return floor, "peak"


def check(config, topology, label="", only=None):
  """The Report of every compiled step of `config`'s member over
  `topology`'s devices (`only`: the steps whose names start with one of
  these)."""
  from introjax.members import MEMBERS  # pylint: disable=import-outside-toplevel
  if config.trainer not in MEMBERS:
    raise UserError(f"Unknown trainer {config.trainer!r} in the config; the "
                    f"known ones are {', '.join(MEMBERS)}.")
  name, devices = topology_devices(topology)
  kind = devices[0].device_kind
  if kind not in CHIPS:
    raise UserError(f"{name}'s chips ({kind}) have no datasheet entry here; "
                    f"the known ones are {', '.join(CHIPS)}.")
  mesh = parallel.make_mesh(
      sorted(devices, key=lambda d: (d.process_index, d.id)))
  trainer = MEMBERS[config.trainer].trainer(config, mesh, abstract=True)
  steps = [step for step in trainer.compiled_steps()
           if not only or step.name.startswith(tuple(only))]
  if not steps:
    raise UserError(f"No step of {config.trainer} is named {only}; its "
                    "steps are "
                    f"{', '.join(s.name for s in trainer.compiled_steps())}.")
  reports = [analyse(step) for step in steps]
  return Report(config=label or config.trainer, trainer=config.trainer,
                topology=name, devices=len(devices), chip=CHIPS[kind],
                steps=reports)


# Output -------------------------------------------------------------------


def _size(n):
  if n >= GiB:
    return f"{n / GiB:.2f} GiB"
  if n >= 1 << 20:
    return f"{n / (1 << 20):.1f} MiB"
  if n >= 1 << 10:
    return f"{n / (1 << 10):.1f} KiB"
  return f"{n} B"


def _collective_text(step):
  if step.refused:
    return "— (XLA refused it: out of HBM)"
  if not step.collectives:
    return "none"
  return ", ".join(f"{kind} ×{c['count']} ({_size(c['bytes'])}, largest "
                   f"{_size(c['max'])})"
                   for kind, c in sorted(step.collectives.items()))


def table(report):
  """The report as a markdown table and its verdict."""
  chip = report.chip
  lines = [f"{report.config} ({report.trainer}) on {report.topology}: "
           f"{report.devices} × {chip.name} ({chip.hbm_bytes / GiB:.0f} GiB "
           f"HBM, {chip.bf16_tflops:g} bf16 TFLOP/s, {chip.hbm_gbps:g} GB/s "
           "per chip). Memory per device; FLOPs, bytes and time per "
           "iteration of the step's loop (estimates from the compiled "
           "program, not measurements).", "",
           "| step | iterations | arguments | outputs | temporaries | "
           "resident | total / HBM | GFLOP | GB accessed | est. time | "
           "compile | collectives | pool / dataset gathered |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for s in report.steps:
    seconds, how = estimated_seconds(s, chip)
    watched = ", ".join(f"{n} ({_size(b)}/device): "
                        f"{'GATHERED' if n in s.gathered else 'no'}"
                        for n, b in s.watched_bytes.items()) or "—"
    lines.append(
        f"| {s.name} | {s.iterations} | {_size(s.argument_bytes)} | "
        f"{_size(s.output_bytes)} | {_size(s.temp_bytes)} | "
        f"{_size(s.resident_bytes)} | {_size(s.total_bytes)} "
        f"({100 * s.total_bytes / chip.hbm_bytes:.1f}%) | "
        f"{s.flops / 1e9:.3g} | {s.bytes_accessed / 1e9:.3g} | "
        f"{seconds * 1e3:.3g} ms ({how}) | {s.compile_seconds:.1f} s | "
        f"{_collective_text(s)} | {watched} |")
  lines += ["", report.verdict()]
  return "\n".join(lines)


# Command line ----------------------------------------------------------------

def _define_flags():
  """The command's flags, registered when it runs rather than on import, so
  the library (check, estimated_seconds) imports beside other commands."""
  from ml_collections import config_flags  # pylint: disable=import-outside-toplevel
  flags.DEFINE_string(
      "topology", None, "A TPU topology (v5e:16x16, v4:2x2x4, v5p:4x4x4) or "
      "accelerator type (v4-32, v5litepod-256, v5p-128).")
  flags.DEFINE_bool("json", False, "Print the report as JSON.")
  flags.DEFINE_list("steps", None, "Only the steps whose names start with "
                    "these, e.g. classification,synthesis.")
  config_flags.DEFINE_config_file(
      "config", None, "A config file, optionally with a variant: "
      "configs/igm_texture.py:paper.", lock_config=True)


def main(argv):
  from absl import app  # pylint: disable=import-outside-toplevel
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  f = flags.FLAGS
  if not f.topology:
    raise UserError("--topology is required, e.g. --topology=v5e:16x16.")
  label = f["config"].serialize().partition("=")[2]
  label = label.rpartition("/")[2] or f.config.trainer
  report = check(f.config, f.topology, label, f.steps)
  print(json.dumps(report.as_json(), indent=2) if f.json else table(report))
  sys.stdout.flush()
  if not report.fits:
    print(report.verdict(), file=sys.stderr)
    sys.exit(1)


def run(argv=None):
  _define_flags()
  argv = config_utils.resolve_aliases(sys.argv if argv is None else argv)
  cli.run_app(main, argv, before=config_utils.check_overrides)


if __name__ == "__main__":
  run()
