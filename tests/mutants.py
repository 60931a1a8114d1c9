"""Checks that the suite catches behaviour changes: each mutation below is
applied, one at a time, to a temporary copy of this checkout, and only the
tests aimed at it are run there. A mutation the tests still pass with has
survived, and the suite has a hole.

    python tests/mutants.py                 # every mutation
    python tests/mutants.py --only=windowed-never-stops,fidelity-sign
    python tests/mutants.py --list

Exit status 0 when every mutation is killed, 1 when any survived, 2 when a
mutation no longer applies (its `old` text is not found exactly once: the
code moved, so the entry needs updating, not the tests).

A mutation is a plain text replacement, so reading the list says exactly
what is checked; `old` must occur exactly once in its file.
"""
import argparse
import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Mutation:
  name: str
  path: str           # relative to the repository root
  old: str            # text that occurs exactly once in `path`
  new: str            # what it becomes
  tests: tuple        # pytest node ids that must fail with the mutation


MUTATIONS = (
    Mutation(
        "anysize-origins-at-zero", "introjax/sampling/anysize.py",
        "  return jnp.stack([rows, cols], axis=-1)",
        "  return jnp.zeros_like(jnp.stack([rows, cols], axis=-1))",
        ("tests/test_sampling.py::test_anysize_gradient_equals_per_patch_loop",)),
    Mutation(
        "fidelity-sign", "introjax/sampling/scores.py",
        "(1 - alpha) * logits.mean(axis=1) - alpha * fidelity",
        "(1 - alpha) * logits.mean(axis=1) + alpha * fidelity",
        ("tests/test_igm.py::test_sample_and_style_transfer_from_saved_model",)),
    Mutation(
        "windowed-never-stops", "introjax/sampling/stopping.py",
        "    return WindowedProbability(window=synthesis.window,\n"
        "                               threshold=synthesis.stop_probability)",
        "    return FixedSteps()",
        ("tests/test_igm.py::test_tiny_run_learns_and_writes_its_outputs",)),
    Mutation(
        "conv-stride1-input-grad-unflipped", "introjax/models/conv.py",
        "  flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)",
        "  flipped = kernel.transpose(0, 1, 3, 2)",
        ("tests/test_conv.py::test_conv2d_matches_xla",)),
    Mutation(
        "conv-kernel-cotangent-averaged", "introjax/models/conv.py",
        "return lax.psum(cotangent, tuple(sorted(extra))) if extra",
        "return lax.pmean(cotangent, tuple(sorted(extra))) if extra",
        ("tests/test_multidevice.py::test_on_eight_devices[conv_direct]",)),
    Mutation(
        "conv-kernel-cotangent-unsummed", "introjax/models/conv.py",
        "  return lax.psum(cotangent, tuple(sorted(extra))) if extra else cotangent",
        "  return cotangent",
        ("tests/test_multidevice.py::test_on_eight_devices[conv_winograd]",)),
    Mutation(
        "resume-from-fresh-state", "introjax/training/harness.py",
        "      state = trainer.from_items(\n"
        "          checkpoints.restore(latest, trainer.restore_targets(meta)))",
        "      state = trainer.init_state()",
        ("tests/test_multidevice.py::test_on_eight_devices[texture_igm]",)),
    Mutation(
        "inception-e2-avg-pool", "introjax/eval/inception.py",
        '    pooled = _max_pool(x, 1, pad=1) if self.pool == "max" else '
        '_avg_pool_same(x)',
        "    pooled = _avg_pool_same(x)",
        ("tests/test_inception.py::test_inception_e2_block_equals_recorded_pytorch_ops",)),
    Mutation(
        "inception-avg-pool-counts-padding", "introjax/eval/inception.py",
        "                     count_include_pad=False)",
        "                     count_include_pad=True)",
        ("tests/test_inception.py::test_network_equals_recorded_pytorch_ops",)),
    Mutation(
        "inception-batchnorm-eps", "introjax/eval/inception.py",
        "  eps: float = 1e-3", "  eps: float = 1e-5",
        ("tests/test_inception.py::test_network_equals_recorded_pytorch_ops",)),
    Mutation(
        "inception-resize-antialias", "introjax/eval/inception.py",
        "                          antialias=False)",
        "                          antialias=True)",
        ("tests/test_inception.py::test_resize_equals_recorded_torch_interpolate",)),
    Mutation(
        "inception-to-torch-kernel-hw-swapped", "introjax/eval/inception.py",
        "    return np.transpose(array, (3, 2, 0, 1))",
        "    return np.transpose(array, (3, 2, 1, 0))",
        ("tests/test_inception.py::test_pytorch_layout_equals_the_recorded_pth",)),
    Mutation(
        "inception-from-torch-kernel-hw-swapped",
        "introjax/eval/inception.py",
        "    return np.transpose(array, (2, 3, 1, 0))",
        "    return np.transpose(array, (3, 2, 1, 0))",
        ("tests/test_inception.py::test_pth_to_npz_round_trip_without_pytorch",)),
    Mutation(
        "inception-pth-unpickles-code", "introjax/eval/inception.py",
        "weights_only=True", "weights_only=False",
        ("tests/test_inception.py::test_pth_to_npz_round_trip_without_pytorch",)),
    Mutation(
        "bench-ratio-inverted", "introjax/bench.py",
        '        r["jax_over_torch"] = pair[0]["throughput"] / '
        'pair[1]["throughput"]',
        '        r["jax_over_torch"] = pair[1]["throughput"] / '
        'pair[0]["throughput"]',
        ("tests/test_bench.py::test_each_jax_row_is_followed_by_its_torch_row",)),
    Mutation(
        "bench-batches-unsorted", "introjax/bench.py",
        "      for batch in sorted(batches):", "      for batch in batches:",
        ("tests/test_bench.py::test_each_jax_row_is_followed_by_its_torch_row",)),
    Mutation(
        "bench-torch-row-without-flops", "introjax/bench.py",
        "      pair.append(_complete(bench_torch(spec, repeats), spec, flops))",
        "      pair.append(_complete(bench_torch(spec, repeats), spec, None))",
        ("tests/test_bench.py::test_each_jax_row_is_followed_by_its_torch_row",)),
    Mutation(
        "bench-throughput-per-run", "introjax/bench.py",
        'throughput=spec.work / row["seconds"]',
        'throughput=spec.batch / row["seconds"]',
        ("tests/test_bench.py::test_each_jax_row_is_followed_by_its_torch_row",)),
    Mutation(
        "bench-percent-of-peak-as-fraction", "introjax/bench.py",
        '              else 100 * r["fraction_of_peak"])',
        '              else r["fraction_of_peak"])',
        ("tests/test_bench.py::test_table_columns_and_formats",)),
    Mutation(
        "bench-runs-missing-torch", "introjax/bench.py",
        "      use_torch = False", "      pass",
        ("tests/test_bench.py::test_without_pytorch_the_reference_is_skipped",)),
    Mutation(
        "anysize-origins-miss-last-row", "introjax/sampling/anysize.py",
        "  rows = jax.random.randint(k_row, shape, 0, canvas_hw[0] - patch + 1)",
        "  rows = jax.random.randint(k_row, shape, 0, canvas_hw[0] - patch)",
        ("tests/test_sampling.py::"
         "test_random_origins_are_uniform_over_every_in_bounds_position",)),
    Mutation(
        "logit-stop-threshold-is-a-probability",
        "introjax/sampling/stopping.py",
        "    return LogitAbove(threshold=math.log(p / (1 - p)))",
        "    return LogitAbove(threshold=p)",
        ("tests/test_sampling.py::"
         "test_build_stop_rule_is_the_rule_the_config_names",)),
    Mutation(
        "swd-one-std-for-all-channels", "introjax/eval/swd.py",
        "  desc = desc / desc.std(axis=(0, 1, 2), keepdims=True)",
        "  desc = desc / desc.std(keepdims=True)",
        ("tests/test_swd.py::test_matches_a_float64_reference",)),
    Mutation(
        "bf16-logit-layer-reads-bf16", "introjax/models/layers.py",
        "kernel_init=kernel_init)(x.astype(jnp.float32))",
        "kernel_init=kernel_init)(x.astype(jnp.bfloat16))",
        ("tests/test_precision.py::"
         "test_bf16_logits_match_fp32_to_bf16_resolution",)),
    Mutation(
        "bf16-convolutions-in-float32", "introjax/models/layers.py",
        "    y = conv2d(x.astype(self.dtype), kernel.astype(self.dtype), "
        "self.stride)",
        "    y = conv2d(x, kernel, self.stride)",
        ("tests/test_precision.py::"
         "test_bf16_logits_match_fp32_to_bf16_resolution",)),
    Mutation(
        "pool-never-wraps", "introjax/data/pool.py",
        "write(pool.rounds, tags),\n"
        "                        (pool.cursor + n) % capacity)",
        "write(pool.rounds, tags),\n"
        "                        jnp.minimum(pool.cursor + n, capacity - n))",
        ("tests/test_compiles.py::test_the_pools_went_past_their_capacity",)),
    Mutation(
        "checkpoints-all-kept", "introjax/checkpoint.py",
        "  def __init__(self, workdir, max_to_keep=2):",
        "  def __init__(self, workdir, max_to_keep=None):",
        ("tests/test_igm.py::test_only_the_last_two_checkpoints_are_kept",)),
    Mutation(
        "critic-nan-not-a-user-error", "introjax/training/igm.py",
        "      raise NonFiniteError(\n"
        '          f"NaN or Inf in the {self.critic_loss.culprit',
        "      raise FloatingPointError(\n"
        '          f"NaN or Inf in the {self.critic_loss.culprit',
        ("tests/test_igm.py::"
         "test_nonfinite_loss_on_the_command_line_is_one_sentence",)),
    Mutation(
        "sample-critics-only-counted", "introjax/sample.py",
        "  if _CRITICS.value is not None:\n"
        "    cascade = cascade_lib.first(cascade, _CRITICS.value)\n"
        "  num_critics = int(cascade.count)",
        "  num_critics = int(cascade.count)\n"
        "  if _CRITICS.value is not None:\n"
        "    num_critics = int(cascade_lib.first(cascade, "
        "_CRITICS.value).count)",
        ("tests/test_igm.py::"
         "test_sample_command_uses_only_the_first_critics",)),
    Mutation(
        "sample-content-alpha-ignored", "introjax/sample.py",
        "    image, _ = model.stylize(cascade, content, alpha, steps, key)",
        "    image, _ = model.stylize(cascade, content, 1.0, steps, key)",
        ("tests/test_igm.py::test_sample_command_renders_a_content_image",)),
    # Evaluators and the persistent-chain pool policy.
    Mutation(
        "swd-top-left-crop", "introjax/eval/evaluators.py",
        "result = sliced_wasserstein(real, center_crop(images, size), k_swd)",
        "result = sliced_wasserstein(real, images[:, :size, :size], k_swd)",
        ("tests/test_evaluators.py::test_swd_crops_the_largest_power_of_two_and_uses_the_key",)),
    Mutation(
        "evaluators-every-round", "introjax/eval/evaluators.py",
        "  return round_index % every == 0 or round_index == config.rounds",
        "  return True",
        ("tests/test_evaluators.py::test_every_rounds_and_the_last",)),
    Mutation(
        "icl-evaluates-the-wrong-negatives", "introjax/training/icl.py",
        "                                     self.evaluation_subject({name: params},\n"
        "                                                             negatives)))",
        "                                     self.evaluation_subject({name: params},\n"
        "                                                             None if negatives is None else -negatives)))",
        ("tests/test_evaluators.py::test_a_classifier_run_scores_its_negatives_with_swd",)),
    Mutation(
        "persistent-never-restarts", "introjax/data/pool.py",
        "  restart = (jax.random.uniform(k_restart, (n,)) < restart_probability) | empty",
        "  restart = jnp.zeros((n,), bool) | empty",
        ("tests/test_pool.py::test_persistent_chains_restart_with_probability_p_and_write_back",)),
    # Documented defaults (faces only, style transfer that shows).
    Mutation(
        "lfw-with-non-faces", "introjax/data/datasets.py",
        "    faces = skimage.data.lfw_subset()[:LFW_SUBSET_FACES]",
        "    faces = skimage.data.lfw_subset()",
        ("tests/test_images.py::test_lfw_subset_is_the_bundled_faces_resized_to_32",)),
    Mutation(
        "style-summed-fidelity", "introjax/sampling/scores.py",
        "      fidelity = jnp.mean(jnp.square(x - content), axis=(1, 2, 3))",
        "      fidelity = jnp.sum(jnp.square(x - content), axis=(1, 2, 3))",
        ("tests/test_igm.py::test_style_objective_is_the_mean_logit_less_the_mean_squared_change",
         "tests/test_igm.py::test_sample_and_style_transfer_from_saved_model")),
    # STIC's parts.
    Mutation(
        "gram-term-ascended", "introjax/sampling/scores.py",
        "        u = u - gram_weight * gram_distance(features, reference_grams)",
        "        u = u + gram_weight * gram_distance(features, reference_grams)",
        ("tests/test_stic.py::test_grmala_objective_and_gradient_match_a_float64_reference",)),
    Mutation(
        "metropolis-without-the-backward-proposal", "introjax/sampling/steps.py",
        "    log_ratio = beta * (u_p - u_x) + log_backward - log_forward",
        "    log_ratio = beta * (u_p - u_x)",
        ("tests/test_stic.py::test_metropolis_reaches_its_target_where_mala_approx_does_not",)),
    Mutation(
        "stic-fakes-never-from-the-chains", "introjax/training/stic.py",
        "      have = jnp.any(pool.rounds >= 0)",
        "      have = jnp.zeros((), bool)",
        ("tests/test_stic.py::test_tiny_run_writes_results_grids_and_moves_the_chains",)),
    Mutation(
        "mixup-partner-unmixed-target", "introjax/objectives/vrm.py",
        "  mixed_targets = lam[:, None] * targets + (1 - lam[:, None]) * targets[perm]",
        "  mixed_targets = targets",
        ("tests/test_stic.py::test_mixup_mixes_images_and_targets_by_one_lambda_per_pair",)),
)


def tracked_files():
  out = subprocess.run(
      ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
      cwd=REPO, capture_output=True, text=True, check=True).stdout
  return [p for p in out.splitlines() if (REPO / p).is_file()]


def copy_checkout(dest):
  for rel in tracked_files():
    target = dest / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / rel, target)


def apply(mutation, root):
  path = root / mutation.path
  text = path.read_text()
  count = text.count(mutation.old)
  if count != 1:
    raise LookupError(f"{mutation.name}: {mutation.path} holds its `old` text "
                      f"{count} times, not once; update the entry.")
  path.write_text(text.replace(mutation.old, mutation.new))


def run_tests(mutation, root, timeout):
  env = dict(os.environ)
  # The copy's package comes first, ahead of an editable install of REPO.
  env["PYTHONPATH"] = os.pathsep.join(
      [str(root)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                     if p])
  env.pop("PYTEST_XDIST_WORKER", None)
  cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
         *mutation.tests]
  return subprocess.run(cmd, cwd=root, env=env, capture_output=True,
                        text=True, timeout=timeout)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--only", default="",
                      help="comma-separated mutation names")
  parser.add_argument("--list", action="store_true",
                      help="print the mutations and their tests")
  parser.add_argument("--timeout", type=float, default=900,
                      help="seconds allowed for one mutation's tests")
  args = parser.parse_args(argv)
  chosen = MUTATIONS
  if args.only:
    names = set(args.only.split(","))
    unknown = names - {m.name for m in MUTATIONS}
    if unknown:
      parser.error(f"unknown mutation(s) {sorted(unknown)}; "
                   f"--list shows them")
    chosen = tuple(m for m in MUTATIONS if m.name in names)
  if args.list:
    for m in chosen:
      print(f"{m.name}: {m.path}\n  - {m.old.strip()}\n  + {m.new.strip()}")
      for t in m.tests:
        print(f"    {t}")
    return 0

  with tempfile.TemporaryDirectory(prefix="introjax-pristine-") as tmp:
    pristine = pathlib.Path(tmp)
    copy_checkout(pristine)
    # Every entry must apply before anything runs.
    for m in chosen:
      text = (pristine / m.path).read_text()
      if text.count(m.old) != 1:
        print(f"{m.name}: {m.path} holds its `old` text "
              f"{text.count(m.old)} times, not once; update the entry.")
        return 2
    survived = []
    for m in chosen:
      with tempfile.TemporaryDirectory(prefix="introjax-mutant-") as work:
        root = pathlib.Path(work) / "repo"
        shutil.copytree(pristine, root)
        apply(m, root)
        began = time.perf_counter()
        result = run_tests(m, root, args.timeout)
        seconds = time.perf_counter() - began
      if result.returncode == 0:
        verdict = "SURVIVED"
        survived.append(m.name)
      elif result.returncode == 1:
        verdict = "killed"
      else:
        print(result.stdout[-3000:], result.stderr[-3000:])
        print(f"{m.name}: pytest exited {result.returncode} (not a test "
              "failure); fix the entry or the tests.")
        return 2
      print(f"{verdict:8s} {m.name} ({seconds:.0f} s)", flush=True)
  print(f"{len(chosen) - len(survived)} killed, {len(survived)} survived")
  return 1 if survived else 0


if __name__ == "__main__":
  sys.exit(main())
