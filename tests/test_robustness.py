"""FGSM, test error and WINN Table 3's robustness table against NumPy
computations on linear models whose input gradients are known in closed
form."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from introjax.errors import ConfigError
from introjax.eval import robustness

SHAPE = (3, 3, 1)        # tiny images: 9 pixels
CLASSES = 4


def linear_logits(params, x):
  return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]


def linear_params(seed, zero_pixels=()):
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(int(np.prod(SHAPE)), CLASSES)).astype(np.float32)
  w[list(zero_pixels)] = 0.0
  b = rng.normal(size=(CLASSES,)).astype(np.float32)
  return {"w": w, "b": b}


def numpy_fgsm(params, x, y, eps, lo=-1.0, hi=1.0):
  """FGSM on a linear model: ∇_x CE = (softmax(xW + b) - onehot(y)) Wᵀ."""
  w, b = params["w"].astype(np.float64), params["b"].astype(np.float64)
  flat = x.reshape(x.shape[0], -1).astype(np.float64)
  z = flat @ w + b
  p = np.exp(z - z.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  grad = (p - np.eye(CLASSES)[y]) @ w.T
  step = np.float32(eps) * np.sign(grad).astype(np.float32)
  x_adv = np.clip(x.reshape(flat.shape) + step, lo, hi).astype(np.float32)
  return x_adv.reshape(x.shape), np.sign(grad).reshape(x.shape)


def numpy_predict(params, x):
  return np.argmax(x.reshape(x.shape[0], -1) @ params["w"] + params["b"], 1)


def data(n, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1, 1, size=(n, *SHAPE)).astype(np.float32)
  # Labels from a third linear model, so each model is partly right.
  y = numpy_predict(linear_params(seed + 100), x).astype(np.int32)
  return x, y


@pytest.mark.parametrize("lo, hi, eps", [(-1.0, 1.0, 0.3), (0.0, 1.0, 0.05)])
def test_fgsm_moves_each_pixel_by_eps_in_the_gradient_sign(lo, hi, eps):
  params = linear_params(1, zero_pixels=(2, 5))
  x, y = data(16)
  x = np.clip(x, lo, hi)
  x[:4] = np.where(x[:4] > 0, hi, lo)     # pixels on the bounds: clipped
  x_adv = np.asarray(jax.jit(robustness.fgsm, static_argnums=0)(
      linear_logits, params, x, y, eps, lo, hi))
  expected, sign = numpy_fgsm(params, x, y, eps, lo, hi)

  assert np.all((x_adv >= lo) & (x_adv <= hi))
  np.testing.assert_array_equal(x_adv, expected)
  flat_sign = sign.reshape(16, -1)
  # Pixels 2 and 5 do not reach any logit: zero gradient, no move.
  assert np.all(flat_sign[:, [2, 5]] == 0)
  np.testing.assert_array_equal(x_adv.reshape(16, -1)[:, [2, 5]],
                                x.reshape(16, -1)[:, [2, 5]])
  moved = x_adv - x
  free = (sign != 0) & (x + eps * sign >= lo) & (x + eps * sign <= hi)
  np.testing.assert_allclose(moved[free], eps * sign[free], rtol=0, atol=1e-6)
  clipped = (sign != 0) & ~free
  assert clipped.any() and free.any()
  np.testing.assert_array_equal(x_adv[clipped],
                                np.where(sign[clipped] > 0, hi, lo))


def test_fgsm_sign_by_hand():
  # Two classes, logits (x₀ - x₁, 0), label 0: ∂CE/∂x = (p₀ - 1)·(1, -1, 0),
  # and p₀ < 1, so x₀ moves down, x₁ up and x₂ (no weight) stays.
  params = {"w": np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]], np.float32),
            "b": np.zeros(2, np.float32)}
  logits = lambda p, x: x @ p["w"] + p["b"]
  x = np.array([[0.2, 0.3, 0.4]], np.float32)
  x_adv = robustness.fgsm(logits, params, x, np.array([0]), 0.1)
  np.testing.assert_allclose(x_adv, [[0.1, 0.4, 0.4]], rtol=0, atol=1e-7)


@pytest.mark.parametrize("eps", [0.0, -0.1, 2.0, 2.5])
def test_check_epsilon_refuses_steps_outside_the_range(eps):
  with pytest.raises(ConfigError,
                     match=r"eval.fgsm_eps=.* is outside the data range "
                           r"\[-1, 1\]"):
    robustness.check_epsilon(eps, -1.0, 1.0)


def test_check_epsilon_accepts_steps_inside_the_range():
  for eps in (0.005, 0.125, 1.99):
    robustness.check_epsilon(eps, -1.0, 1.0)
  robustness.check_epsilon(0.5, 0.0, 1.0)
  with pytest.raises(ConfigError, match=r"\[0, 1\]"):
    robustness.check_epsilon(1.0, 0.0, 1.0)


def test_robustness_table_checks_eps():
  with pytest.raises(ConfigError, match="eval.fgsm_eps"):
    robustness.robustness_table({}, np.zeros((1, *SHAPE), np.float32),
                                np.zeros(1, np.int32), 2.0, 4)


@pytest.mark.parametrize("batch_size", [8, 37, 64])
@pytest.mark.parametrize("on_device", [False, True])
def test_test_error_equals_numpy_with_padding(batch_size, on_device):
  params = linear_params(2)
  x, y = data(37)
  expected = float(np.mean(numpy_predict(params, x) != y))
  assert 0 < expected < 1
  images = jnp.asarray(x) if on_device else x
  got = robustness.test_error(linear_logits, params, images, y, batch_size)
  assert got == pytest.approx(expected, abs=1e-12)
  np.testing.assert_array_equal(
      robustness.predict(linear_logits, params, images, batch_size),
      numpy_predict(params, x))


def test_predict_traces_once_for_all_batches():
  traces = []

  def logits(params, x):
    traces.append(x.shape)
    return linear_logits(params, x)

  x, _ = data(37)
  robustness.predict(logits, linear_params(2), x, 8)   # 5 batches, 1 padded
  robustness.predict(logits, linear_params(3), x, 8)
  assert traces == [(8, *SHAPE)]


def near_truth(seed, data_seed, noise=0.5):
  """A linear model near the one that labels `data(…, data_seed)`."""
  truth, other = linear_params(data_seed + 100), linear_params(seed)
  return {k: truth[k] + noise * other[k] for k in truth}


def test_robustness_table_equals_numpy_definitions():
  models = {name: (linear_logits, near_truth(seed, data_seed=1))
            for name, seed in (("A", 3), ("B", 4), ("C", 5))}
  x, y = data(53, seed=1)
  eps = 0.15
  result = robustness.robustness_table(models, x, y, eps, batch_size=16)

  assert result.num_images == 53 and result.eps == eps
  for a, (_, pa) in models.items():
    assert result.clean_error[a] == pytest.approx(
        np.mean(numpy_predict(pa, x) != y))
    # Adversarial examples from every test image, including those A already
    # gets wrong (WINN: N_A / N is a test error over all N).
    x_adv, _ = numpy_fgsm(pa, x, y, eps)
    fooled_a = numpy_predict(pa, x_adv) != y
    n_a = int(fooled_a.sum())
    assert 0 < n_a < 53
    assert result.num_fooled[a] == n_a
    assert result.adversarial_error[a] == pytest.approx(n_a / 53)
    assert set(result.correction_rate[a]) == set(models) - {a}
    for b, (_, pb) in models.items():
      if b == a:
        continue
      n_ab = int((fooled_a & (numpy_predict(pb, x_adv) != y)).sum())
      assert result.num_fooled_both[a][b] == n_ab
      assert result.correction_rate[a][b] == pytest.approx(1 - n_ab / n_a)
  rates = [r for row in result.correction_rate.values() for r in row.values()]
  assert any(0 < r < 1 for r in rates)

  text = robustness.format_robustness_table(result)
  lines = text.splitlines()
  assert lines[0].startswith("| adversarial examples of A |")
  assert "correction rate by C (%)" in lines[0]
  row_a = next(line for line in lines if line.startswith("| A |"))
  cells = [c.strip() for c in row_a.strip("|").split("|")]
  assert cells[2] == (f"{100 * result.adversarial_error['A']:.2f} "
                      f"({result.num_fooled['A']}/53)")
  assert cells[3] == "–"       # A does not correct itself


def test_correction_rate_is_none_when_a_model_is_never_fooled():
  # A constant model: zero input gradient, so FGSM leaves the images as they
  # are, and it is right on every label: N_A = 0 and no rate is defined.
  constant = {"w": np.zeros((9, CLASSES), np.float32),
              "b": np.array([0.0, 3.0, 0.0, 0.0], np.float32)}
  x, _ = data(10)
  y = np.ones(10, np.int32)
  result = robustness.robustness_table(
      {"const": (linear_logits, constant), "lin": (linear_logits,
                                                   linear_params(6))},
      x, y, 0.2, batch_size=4)
  assert result.num_fooled["const"] == 0
  assert result.adversarial_error["const"] == 0.0
  assert result.correction_rate["const"]["lin"] is None
  # Whatever fools `lin` never fools the constant model.
  if result.num_fooled["lin"]:
    assert result.correction_rate["lin"]["const"] == 1.0
  row = next(line for line in robustness.format_robustness_table(
      result).splitlines() if line.startswith("| const |"))
  assert row.rstrip(" |").endswith("–")
