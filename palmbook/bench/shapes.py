"""What one benchmark run computes on: the model shape, the workload, and the fixed token batches.

BenchShape            vocabulary, width, depth, heads, sequence, batch, prompt and generated lengths
REFERENCE / QUICK     palm-small at batch 8 (the book's numbers) / a tiny shape that runs in seconds (tests)
parse_shape           "d_model=512,n_layers=8" -> a shape with those fields replaced (the --shape flag)
BenchData             the same random token ids for every contestant, so each does identical work
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from ..config import PaLMConfig

__all__ = ["QUICK", "REFERENCE", "BenchData", "BenchShape", "parse_shape"]


@dataclass(frozen=True)
class BenchShape:
    """The model shape and workload of one benchmark run.

    Training and forward passes see ``(batch_size, seq_len)`` token ids; generation starts from one
    ``prompt_len``-token prompt and adds ``new_tokens`` tokens.
    """

    vocab_size: int = 8192
    d_model: int = 384
    n_layers: int = 6
    n_heads: int = 6
    head_dim: int = 64
    seq_len: int = 256
    batch_size: int = 8
    prompt_len: int = 16
    new_tokens: int = 128

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"BenchShape.{f.name} must be a positive integer; got {value!r}")
        if self.prompt_len > self.seq_len:  # the prompt is cut from the first training row
            raise ValueError(
                f"BenchShape.prompt_len={self.prompt_len} is longer than seq_len={self.seq_len}; "
                "choose prompt_len <= seq_len"
            )

    @property
    def max_positions(self) -> int:
        """The longest sequence any measurement feeds the model: a training row or prompt + generated tokens."""
        return max(self.seq_len, self.prompt_len + self.new_tokens)

    def palm_config(self) -> PaLMConfig:
        return PaLMConfig(
            vocab_size=self.vocab_size,
            d_model=self.d_model,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            head_dim=self.head_dim,
            max_seq_len=self.max_positions,
            name="bench",
        )

    def describe(self) -> str:
        return (
            f"V{self.vocab_size} d{self.d_model} L{self.n_layers} H{self.n_heads}x{self.head_dim} "
            f"T{self.seq_len} B{self.batch_size}"
        )

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> BenchShape:
        """A preset's model shape, trained at its full sequence length; ``overrides`` replace any field."""
        c = PaLMConfig.preset(name)
        base = dict(
            vocab_size=c.vocab_size,
            d_model=c.d_model,
            n_layers=c.n_layers,
            n_heads=c.n_heads,
            head_dim=c.head_dim,
            seq_len=c.max_seq_len,
        )
        return cls(**{**base, **overrides})


REFERENCE = BenchShape()  # = PaLMConfig.preset("palm-small"), batch 8
QUICK = BenchShape(
    vocab_size=512, d_model=64, n_layers=2, n_heads=2, head_dim=32, seq_len=64, batch_size=4, prompt_len=8,
    new_tokens=16,
)  # fmt: skip


def parse_shape(text: str, base: BenchShape) -> BenchShape:
    """``"d_model=512,n_layers=8"`` -> ``base`` with those fields replaced; one clear error for a bad field."""
    fields = {f.name for f in dataclasses.fields(BenchShape)}
    changes: dict[str, int] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            raise ValueError(f"--shape expects key=value pairs with keys from {sorted(fields)}; got {item!r}")
        try:
            changes[key] = int(value)
        except ValueError:
            raise ValueError(f"--shape {key} must be an integer; got {value!r}") from None
        if changes[key] <= 0:
            raise ValueError(f"--shape {key} must be positive; got {value!r}")
    return dataclasses.replace(base, **changes)


class BenchData:
    """Fixed random token batches for every contestant (the same ids, so the work is identical).

    ``tokens`` is (batch_size, seq_len + 1); ``inputs`` and ``targets`` are its (batch_size, seq_len) views shifted
    by one; ``prompt`` is (1, prompt_len).
    """

    def __init__(self, shape: BenchShape, device: torch.device, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        # ids start at 1: palm-rlhf-pytorch ignores id 0 in its loss by default
        self.tokens = torch.randint(1, shape.vocab_size, (shape.batch_size, shape.seq_len + 1), generator=g).to(device)
        self.inputs, self.targets = self.tokens[:, :-1], self.tokens[:, 1:]
        self.prompt = self.tokens[:1, : shape.prompt_len].clone()
