"""PaLM's hyper-parameters: one dataclass, validated, with the paper's sizes and the book's.

Every number in the three paper presets comes from Table 1 of Chowdhery et al. (2022),
"PaLM: Scaling Language Modeling with Pathways" (arXiv 2204.02311). The vocabulary is 256,000
SentencePiece pieces (§2, "Vocabulary"); that figure reproduces the paper's parameter counts exactly.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PRESETS", "PaLMConfig"]


@dataclass(frozen=True)
class PaLMConfig:
    """The shape of a PaLM model.

    Attributes:
        vocab_size: number of tokens V; the embedding is (V, d_model) and is shared with the output layer.
        d_model: width of the residual stream ("model dimension" in Table 1).
        n_layers: number of parallel blocks.
        n_heads: number of query heads. Keys and values always have ONE head (multi-query attention, §2).
        head_dim: size h of each head. Its own field because PaLM does not tie it to d_model:
            at 540B, 48 heads x 256 = 12,288 != 18,432 = d_model.
            ``None`` means ``d_model // n_heads``.
        d_ff: hidden width of the SwiGLU feed-forward layer. ``None`` means 4 * d_model, the paper's choice.
        max_seq_len: longest sequence the model accepts (2048 in the paper, §5). Sets the RoPE table
            and the size of the preallocated KV cache.
        rope_base: the base of RoPE's frequencies. The paper does not state it; 10,000 is RoFormer's value.
        norm_eps: epsilon of LayerNorm.
        dropout: dropout on the residual branches. 0 in pre-training, 0.1 in most fine-tuning (§5).
    """

    vocab_size: int = 256_000
    d_model: int = 4096
    n_layers: int = 32
    n_heads: int = 16
    head_dim: int | None = None
    d_ff: int | None = None
    max_seq_len: int = 2048
    rope_base: float = 10_000.0
    norm_eps: float = 1e-5
    dropout: float = 0.0
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "max_seq_len"):
            _check_positive_int(name, getattr(self, name))
        if self.head_dim is None:
            if self.d_model % self.n_heads:
                raise ValueError(
                    f"head_dim is not set and d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                    "pass head_dim explicitly (PaLM uses head_dim=256 whatever d_model is)"
                )
            object.__setattr__(self, "head_dim", self.d_model // self.n_heads)
        _check_positive_int("head_dim", self.head_dim)
        if self.head_dim % 2:
            raise ValueError(
                f"head_dim must be even, because RoPE rotates pairs of dimensions; got head_dim={self.head_dim}"
            )
        if self.d_ff is None:
            object.__setattr__(self, "d_ff", 4 * self.d_model)  # §2: d_ff = 4 * d_model
        _check_positive_int("d_ff", self.d_ff)
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size must be at least 2 to predict anything; got {self.vocab_size}")
        if not (isinstance(self.rope_base, (int, float)) and self.rope_base > 1):
            raise ValueError(f"rope_base must be a number > 1 (10000 is standard); got {self.rope_base!r}")
        if not (isinstance(self.norm_eps, (int, float)) and 0 < self.norm_eps < 1):
            raise ValueError(f"norm_eps must be in (0, 1), e.g. 1e-5; got {self.norm_eps!r}")
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise ValueError(
                f"dropout must be in [0, 1): 0.0 for pre-training, 0.1 for fine-tuning; got {self.dropout!r}"
            )

    # ------------------------------------------------------------------ derived sizes
    @property
    def qkv_dim(self) -> int:
        """Width of the attention part of the fused input projection: H*h queries + one key + one value head."""
        return self.n_heads * self.head_dim + 2 * self.head_dim

    @property
    def fused_dim(self) -> int:
        """Width of the fused input projection: [queries | key | value | SwiGLU gate | SwiGLU up]."""
        return self.qkv_dim + 2 * self.d_ff

    def num_parameters(self, include_norms: bool = True) -> int:
        """Parameters of a model of this shape, the shared embedding counted once.

        ``include_norms=False`` counts only dense kernels and the embedding, as the paper's Table 1 does
        (the LayerNorm scales add about 0.0004% at 540B).
        """
        d, h, hh, f = self.d_model, self.n_heads, self.head_dim, self.d_ff
        per_block = d * self.fused_dim + h * hh * d + f * d  # in-projection, attention out, feed-forward out
        total = self.vocab_size * d + self.n_layers * per_block
        if include_norms:
            total += (self.n_layers + 1) * d  # one LayerNorm scale per block, plus the final one
        return total

    # ------------------------------------------------------------------ presets and (de)serialisation
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> PaLMConfig:
        """A named configuration: the paper's ``palm-8b``, ``palm-62b``, ``palm-540b`` or one of the book's sizes.

        Keyword arguments override fields, e.g. ``PaLMConfig.preset("palm-tiny", vocab_size=512)``.
        """
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], "name": name, **overrides})

    @staticmethod
    def presets() -> list[str]:
        """Names accepted by :meth:`preset`."""
        return list(PRESETS)

    def replace(self, **changes: Any) -> PaLMConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PaLMConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown PaLMConfig field(s) {unknown}; valid fields are {sorted(known)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> PaLMConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no config file at {path}; expected the config.json written by save_pretrained")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); re-save it with PaLMConfig.save") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object of PaLMConfig fields")
        return cls.from_dict(data)

    def __str__(self) -> str:
        return (
            f"PaLMConfig({self.name}: V={self.vocab_size}, d={self.d_model}, L={self.n_layers}, "
            f"H={self.n_heads}x{self.head_dim}, d_ff={self.d_ff}, T={self.max_seq_len})"
        )


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer; got {name}={value!r}")


# Table 1 of the paper (d_ff = 4 * d_model and head size 256 in all three), plus the book's sizes.
PRESETS: dict[str, dict[str, Any]] = {
    "palm-8b": dict(vocab_size=256_000, d_model=4096, n_layers=32, n_heads=16, head_dim=256, max_seq_len=2048),
    "palm-62b": dict(vocab_size=256_000, d_model=8192, n_layers=64, n_heads=32, head_dim=256, max_seq_len=2048),
    "palm-540b": dict(vocab_size=256_000, d_model=18432, n_layers=118, n_heads=48, head_dim=256, max_seq_len=2048),
    # The book's sizes. "tiny" runs every test and the smoke profile in seconds; "small" is the reference
    # shape of the benchmark; "350m" and "1b" are for one GPU (head size 128 suits flash attention).
    "palm-tiny": dict(vocab_size=1024, d_model=64, n_layers=2, n_heads=4, head_dim=16, max_seq_len=128),
    "palm-mini": dict(vocab_size=4096, d_model=256, n_layers=4, n_heads=4, head_dim=64, max_seq_len=256),
    "palm-small": dict(vocab_size=8192, d_model=384, n_layers=6, n_heads=6, head_dim=64, max_seq_len=256),
    "palm-350m": dict(vocab_size=32768, d_model=1024, n_layers=24, n_heads=8, head_dim=128, max_seq_len=2048),
    "palm-1b": dict(vocab_size=32768, d_model=2048, n_layers=16, n_heads=16, head_dim=128, max_seq_len=2048),
}
