"""The scalar autograd engine of chapter 7: its gradients are torch.autograd's and the finite differences'."""

from __future__ import annotations

import math
import random

import pytest
import torch

from palmbook.scratch.autograd import Value, topological_order, zero_grad

# ----------------------------------------------------------------------------- random expressions, built twice


def _random_expression(seed: int, n_inputs: int = 4, n_ops: int = 12, shift: tuple[int, float] = (0, 0.0)):
    """The same random expression built from Values and from float64 torch scalars. Returns both sets of leaves
    and both outputs. Operations are kept in their domains (log of a positive number, division by a non-zero one,
    fractional powers of positive numbers) so every expression is differentiable where it is evaluated.
    ``shift = (k, eps)`` moves input k by eps (for finite differences) without changing the expression."""
    rng = random.Random(seed)
    xs = [rng.uniform(-2.0, 2.0) for _ in range(n_inputs)]
    xs[shift[0]] += shift[1]
    vals = [Value(x, label=f"x{i}") for i, x in enumerate(xs)]
    tens = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    pool_v, pool_t = list(vals), list(tens)
    for _ in range(n_ops):
        i, j = rng.randrange(len(pool_v)), rng.randrange(len(pool_v))
        a, b, ta, tb = pool_v[i], pool_v[j], pool_t[i], pool_t[j]
        op = rng.choice(["add", "mul", "sub", "div", "pow", "exp", "log", "tanh", "sigmoid", "rsub", "rdiv", "const"])
        c = rng.uniform(-1.5, 1.5)
        if op == "add":
            v, t = a + b, ta + tb
        elif op == "mul":
            v, t = a * b, ta * tb
        elif op == "sub":
            v, t = a - b, ta - tb
        elif op == "div":
            v, t = a / (b * b + 1.0), ta / (tb * tb + 1.0)
        elif op == "pow":
            n = rng.choice([2, 3, -1, 0.5, 1.5])
            v, t = (a * a + 0.5) ** n, (ta * ta + 0.5) ** n
        elif op == "exp":
            v, t = (a * 0.3).exp(), (ta * 0.3).exp()  # scaled: nested exps of exps would overflow
        elif op == "log":
            v, t = (a * a + 0.1).log(), (ta * ta + 0.1).log()
        elif op == "tanh":
            v, t = a.tanh(), ta.tanh()
        elif op == "sigmoid":
            v, t = a.sigmoid(), ta.sigmoid()
        elif op == "rsub":
            v, t = c - a, c - ta
        elif op == "rdiv":
            v, t = c / (a * a + 1.0), c / (ta * ta + 1.0)
        else:
            v, t = c * a + b, c * ta + tb
        pool_v.append(v)
        pool_t.append(t)
    # the output combines the last few results so that most of the graph matters
    out_v = pool_v[-1] + pool_v[-2] * pool_v[-3]
    out_t = pool_t[-1] + pool_t[-2] * pool_t[-3]
    return vals, tens, out_v, out_t


@pytest.mark.parametrize("seed", range(40))
def test_random_expressions_match_torch_values_and_gradients(seed: int) -> None:
    vals, tens, out_v, out_t = _random_expression(seed)
    assert math.isfinite(out_v.data)
    assert out_v.data == pytest.approx(out_t.item(), rel=1e-12, abs=1e-12)
    out_v.backward()
    out_t.backward()
    for v, t in zip(vals, tens, strict=True):
        expected = 0.0 if t.grad is None else t.grad.item()  # an input the output does not use has gradient 0
        assert v.grad == pytest.approx(expected, rel=1e-9, abs=1e-12), v.label


@pytest.mark.parametrize("seed", range(10))
def test_random_expressions_match_central_differences(seed: int) -> None:
    vals, _, out_v, _ = _random_expression(seed)
    out_v.backward()
    eps = 1e-6
    for k, v in enumerate(vals):
        above = _random_expression(seed, shift=(k, eps))[2].data
        below = _random_expression(seed, shift=(k, -eps))[2].data
        assert v.grad == pytest.approx((above - below) / (2 * eps), rel=1e-5, abs=1e-6)


# ----------------------------------------------------------------------------- the chain rule's bookkeeping


def test_value_used_twice_receives_both_gradients() -> None:
    x = Value(3.0)
    y = x * x + x  # dy/dx = 2x + 1
    y.backward()
    xt = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    (xt * xt + xt).backward()
    assert x.grad == xt.grad.item()


def test_backward_twice_accumulates_like_torch_and_zero_grad_resets() -> None:
    x = Value(2.0)
    y = x.tanh()
    y.backward()
    first = x.grad
    y.backward()
    assert x.grad == pytest.approx(2 * first)
    zero_grad([x])
    assert x.grad == 0.0


def test_topological_order_lists_every_node_once_after_its_parents() -> None:
    _, _, out, _ = _random_expression(seed=7)
    order = topological_order(out)
    assert len(order) == len({id(n) for n in order})
    position = {id(n): i for i, n in enumerate(order)}
    for node in order:
        for parent in node.parents:
            assert position[id(parent)] < position[id(node)]
    assert order[-1] is out


def test_backward_reports_each_node_once_in_reverse_topological_order() -> None:
    a, b = Value(1.5), Value(-0.5)
    out = (a * b + a).exp() / (b * b + 1.0)
    seen: list[Value] = []
    order = out.backward(on_step=seen.append)
    assert [id(n) for n in seen] == [id(n) for n in order] == [id(n) for n in reversed(topological_order(out))]


def test_deep_graph_does_not_hit_the_recursion_limit() -> None:
    x = Value(0.5)
    y = x
    for _ in range(5000):
        y = y * 1.0001 + 0.0
    y.backward()
    assert x.grad == pytest.approx(1.0001**5000, rel=1e-9)


def test_sigmoid_and_exp_of_large_inputs_stay_finite_where_torch_does() -> None:
    for z in (-800.0, -30.0, 0.0, 30.0, 800.0):
        v = Value(z)
        s = v.sigmoid()
        s.backward()
        t = torch.tensor(z, dtype=torch.float64, requires_grad=True)
        ts = t.sigmoid()
        ts.backward()
        assert math.isfinite(s.data) and math.isfinite(v.grad)
        assert s.data == pytest.approx(ts.item(), rel=1e-12, abs=1e-300)
        assert v.grad == pytest.approx(t.grad.item(), rel=1e-12, abs=1e-300)


def test_relu_gradient_is_the_step_function_and_zero_at_zero_like_torch() -> None:
    for z in (-1.0, 0.0, 2.0):
        v = Value(z)
        v.relu().backward()
        t = torch.tensor(z, requires_grad=True)
        t.relu().backward()
        assert v.grad == t.grad.item()


# ----------------------------------------------------------------------------- one clear error per misuse


@pytest.mark.parametrize(
    ("make", "error", "fix"),
    [
        (lambda: Value(torch.tensor(1.0)), TypeError, "float"),
        (lambda: Value(Value(1.0)), TypeError, "directly"),
        (lambda: Value(-1.0).log(), ValueError, "x > 0"),
        (lambda: Value(0.0).log(), ValueError, "x > 0"),
        (lambda: Value(1.0) / Value(0.0), ZeroDivisionError, "0"),
        (lambda: Value(2.0) ** Value(2.0), TypeError, "exp"),
        (lambda: Value(-2.0) ** 0.5, ValueError, "fractional"),
        (lambda: Value(1.0) + "a", TypeError, "Python number"),
    ],
)
def test_misuse_raises_one_clear_error(make, error, fix) -> None:
    with pytest.raises(error, match=fix):
        make()


# ----------------------------------------------------------------------------- training with the engine


def _logistic_data(n: int = 16, seed: int = 0) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    xs = [rng.uniform(-3, 3) for _ in range(n)]
    ys = [1.0 if x + rng.gauss(0, 1.0) > 0.5 else 0.0 for x in xs]  # noisy labels: the optimum is finite
    return xs, ys


def _logistic_loss(w: Value, b: Value, xs: list[float], ys: list[float]) -> Value:
    """Mean binary cross-entropy of p = sigmoid(w x + b), written with the engine's operations only."""
    total = Value(0.0)
    for x, y in zip(xs, ys, strict=True):
        p = (w * x + b).sigmoid()
        total = total - (y * p.log() + (1 - y) * (1 - p).log())
    return total / len(xs)


def test_gradient_descent_with_the_engine_follows_torch_step_for_step() -> None:
    xs, ys = _logistic_data()
    w, b = Value(-1.0), Value(2.0)
    wt = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    bt = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    xt, yt = torch.tensor(xs, dtype=torch.float64), torch.tensor(ys, dtype=torch.float64)
    lr, losses = 0.5, []
    for _ in range(30):
        loss = _logistic_loss(w, b, xs, ys)
        zero_grad([w, b])
        loss.backward()
        p = torch.sigmoid(wt * xt + bt)
        loss_t = -(yt * p.log() + (1 - yt) * (1 - p).log()).mean()
        wt.grad = bt.grad = None
        loss_t.backward()
        assert loss.data == pytest.approx(loss_t.item(), rel=1e-12)
        assert (w.grad, b.grad) == pytest.approx((wt.grad.item(), bt.grad.item()), rel=1e-9, abs=1e-12)
        losses.append(loss.data)
        w.data -= lr * w.grad
        b.data -= lr * b.grad
        with torch.no_grad():
            wt -= lr * wt.grad
            bt -= lr * bt.grad
    assert losses[-1] < 0.7 * losses[0]
    assert (w.data, b.data) == pytest.approx((wt.item(), bt.item()), rel=1e-9)
