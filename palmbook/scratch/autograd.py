"""A scalar automatic-differentiation engine: reverse-mode autodiff ("backpropagation") on single numbers.

Chapter 7 builds this piece by piece. Every arithmetic operation on a :class:`Value` returns a new ``Value`` that
remembers its inputs (its *parents* in the computation graph) and a small closure, ``_backward``, that knows the
local derivative of that one operation. :meth:`Value.backward` then visits the graph from the output back to the
inputs, in reverse topological order, and applies the chain rule once per node:

    parent.grad += (d node / d parent) * node.grad

Each node's gradient is complete before it is passed on, because every node that uses it has already been visited.
This is exactly what ``torch.autograd`` does, with tensors instead of scalars and C++ kernels instead of closures.

>>> a, b = Value(2.0, label="a"), Value(-3.0, label="b")
>>> c = a * b + a          # c = a*b + a = -4
>>> c.backward()
>>> a.grad, b.grad         # dc/da = b + 1 = -2, dc/db = a = 2
(-2.0, 2.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

__all__ = ["Value", "topological_order", "zero_grad"]

Number = int | float


class Value:
    """One number in a computation graph, with the gradient of the final output with respect to it.

    Attributes:
        data: the number computed in the forward pass.
        grad: d(output)/d(this value), filled in by :meth:`backward` on the output (0.0 before).
        parents: the values this one was computed from (empty for inputs and parameters).
        op: the operation that produced it ('+', '*', 'exp', ...; '' for a leaf).
        label: an optional name, used in drawings and error messages.
    """

    __slots__ = ("_backward", "data", "grad", "label", "op", "parents")

    def __init__(self, data: Number, parents: tuple[Value, ...] = (), op: str = "", label: str = "") -> None:
        if isinstance(data, Value):
            raise TypeError("Value(data) takes a plain number; to reuse a Value, use it directly")
        if not isinstance(data, (int, float)):  # e.g. a numpy scalar or a tensor: convert explicitly
            raise TypeError(f"Value holds a Python int or float; got {type(data).__name__}: use float(x)")
        self.data = float(data)
        self.grad = 0.0
        self.parents = parents
        self.op = op
        self.label = label
        self._backward: Callable[[], None] = lambda: None  # a leaf has nobody to pass its gradient to

    def __repr__(self) -> str:
        name = f"{self.label}=" if self.label else ""
        return f"Value({name}{self.data:.6g}, grad={self.grad:.6g})"

    # ------------------------------------------------------------------ binary operations
    def __add__(self, other: Value | Number) -> Value:
        other = _as_value(other)
        out = Value(self.data + other.data, (self, other), "+")

        def _backward() -> None:  # d(a+b)/da = 1, d(a+b)/db = 1: the gradient is copied to both
            self.grad += out.grad
            other.grad += out.grad

        out._backward = _backward
        return out

    def __mul__(self, other: Value | Number) -> Value:
        other = _as_value(other)
        out = Value(self.data * other.data, (self, other), "*")

        def _backward() -> None:  # d(ab)/da = b, d(ab)/db = a: each input gets the other one
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad

        out._backward = _backward
        return out

    def __pow__(self, exponent: Number) -> Value:
        """x ** n for a constant n (int or float). For x ** y with y a Value, write (y * x.log()).exp()."""
        if isinstance(exponent, Value):
            raise TypeError("Value ** Value is not supported: write (y * x.log()).exp() for x ** y")
        if not isinstance(exponent, (int, float)):
            raise TypeError(f"the exponent must be an int or float; got {type(exponent).__name__}")
        if self.data == 0.0 and exponent < 1 and exponent != 0:
            raise ZeroDivisionError(f"0 ** {exponent}: the derivative n * x**(n-1) is infinite at x = 0")
        if self.data < 0 and not float(exponent).is_integer():
            raise ValueError(f"{self.data} ** {exponent} is not a real number (negative base, fractional power)")
        out = Value(self.data**exponent, (self,), f"**{exponent:g}")

        def _backward() -> None:  # d(x^n)/dx = n x^(n-1)  (and 0 for n = 0, where x^n is the constant 1)
            if exponent != 0:
                self.grad += exponent * self.data ** (exponent - 1) * out.grad

        out._backward = _backward
        return out

    # Subtraction and division are built from the operations above, so they need no derivative of their own.
    def __neg__(self) -> Value:
        return self * -1.0

    def __sub__(self, other: Value | Number) -> Value:
        return self + (-_as_value(other))

    def __truediv__(self, other: Value | Number) -> Value:
        other = _as_value(other)
        if other.data == 0.0:
            raise ZeroDivisionError(f"division by a Value equal to 0 ({other!r})")
        return self * other**-1

    # Reflected versions, so that 2 * x, 1 - x, 1 / x work when the left operand is a plain number.
    def __radd__(self, other: Number) -> Value:
        return self + other

    def __rmul__(self, other: Number) -> Value:
        return self * other

    def __rsub__(self, other: Number) -> Value:
        return _as_value(other) - self

    def __rtruediv__(self, other: Number) -> Value:
        return _as_value(other) / self

    # ------------------------------------------------------------------ functions of one value
    def exp(self) -> Value:
        out = Value(math.exp(self.data), (self,), "exp")

        def _backward() -> None:  # d(e^x)/dx = e^x, which is the output itself
            self.grad += out.data * out.grad

        out._backward = _backward
        return out

    def log(self) -> Value:
        """The natural logarithm. Raises for x <= 0, where it is undefined."""
        if self.data <= 0:
            raise ValueError(f"log of a non-positive number ({self.data}); log is defined for x > 0 only")
        out = Value(math.log(self.data), (self,), "log")

        def _backward() -> None:  # d(ln x)/dx = 1/x
            self.grad += out.grad / self.data

        out._backward = _backward
        return out

    def tanh(self) -> Value:
        out = Value(math.tanh(self.data), (self,), "tanh")

        def _backward() -> None:  # d(tanh x)/dx = 1 - tanh(x)^2
            self.grad += (1.0 - out.data**2) * out.grad

        out._backward = _backward
        return out

    def sigmoid(self) -> Value:
        """1 / (1 + e^-x), computed without overflow for large |x|."""
        x = self.data
        s = 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
        out = Value(s, (self,), "sigmoid")

        def _backward() -> None:  # d(sigma)/dx = sigma (1 - sigma)
            self.grad += out.data * (1.0 - out.data) * out.grad

        out._backward = _backward
        return out

    def relu(self) -> Value:
        out = Value(max(self.data, 0.0), (self,), "relu")

        def _backward() -> None:  # slope 1 where x > 0, else 0 (0 at x = 0, as torch does)
            self.grad += (1.0 if self.data > 0 else 0.0) * out.grad

        out._backward = _backward
        return out

    # ------------------------------------------------------------------ the backward pass
    def backward(self, on_step: Callable[[Value], None] | None = None) -> list[Value]:
        """Fill in ``.grad`` of every value this one depends on: reverse-mode autodiff.

        Sets this value's own gradient to 1 (d out / d out), then calls each node's ``_backward`` from the output
        back to the leaves (reverse topological order). Gradients *accumulate* (``+=``), as in PyTorch: a value
        used twice receives both contributions, and calling backward twice adds twice. Reset with ``grad = 0``.

        Args:
            on_step: called with each node right after it has passed its gradient to its parents (for drawing
                the backward pass step by step).
        Returns:
            The nodes in the order they were processed (output first).
        """
        order = list(reversed(topological_order(self)))
        self.grad = 1.0
        for node in order:
            node._backward()
            if on_step is not None:
                on_step(node)
        return order


def topological_order(root: Value) -> list[Value]:
    """Every value ``root`` depends on, each listed after all of its parents (``root`` last).

    Iterative depth-first search, so deep graphs (a long training loop unrolled) do not hit Python's recursion limit.
    A value reached by two paths appears once.
    """
    order: list[Value] = []
    visited: set[int] = set()
    stack: list[tuple[Value, bool]] = [(root, False)]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))  # revisit after the parents, which are pushed on top of it
        stack.extend((p, False) for p in reversed(node.parents) if id(p) not in visited)
    return order


def _as_value(x: Value | Number) -> Value:
    if isinstance(x, Value):
        return x
    if isinstance(x, (int, float)):
        return Value(x)
    raise TypeError(f"cannot combine a Value with {type(x).__name__}; use a Python number or a Value")


def zero_grad(values: Iterable[Value]) -> None:
    """Reset the gradients of ``values`` (typically the parameters) to 0 before the next backward pass."""
    for v in values:
        v.grad = 0.0
