"""Embeddings from scratch (Chapter 2): a token id becomes a row of one matrix, shared with the output layer.

    ids (B, T)  --one-hot-->  (B, T, V)  --@ E (V, d)-->  (B, T, d)     the same numbers as E[ids], a row lookup

PaLM's choices (§2 "Shared Input-Output Embeddings", "No Biases"; §5 "Weight initialization"): the matrix E is
drawn from N(0, 1), carries no bias, and is reused, transposed, as the output layer, whose logits are scaled
by 1/sqrt(d). The functions here are the pieces the chapter builds and then checks against ``palmbook.PaLM``.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

__all__ = [
    "PIECE_CATEGORIES",
    "cosine_neighbours",
    "embed_by_lookup",
    "embed_by_one_hot",
    "initial_loss_estimate",
    "one_hot",
    "pca",
    "piece_category",
]


def one_hot(ids: Tensor, vocab_size: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """ids (...) -> (..., vocab_size): a 1 in column ``ids[...]``, zeros elsewhere."""
    if ids.dtype not in (torch.long, torch.int32):
        raise TypeError(f"ids must be integer token ids (torch.long); got {ids.dtype}: use ids.long()")
    if ids.numel() and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"token ids must be in [0, {vocab_size - 1}]; got {ids.min().item()}..{ids.max().item()}")
    out = torch.zeros(*ids.shape, vocab_size, dtype=dtype, device=ids.device)
    return out.scatter_(-1, ids.long().unsqueeze(-1), 1.0)


def embed_by_one_hot(ids: Tensor, weight: Tensor) -> Tensor:
    """ids (...) and weight (V, d) -> (..., d): one-hot rows times the matrix. V*d multiply-adds per token."""
    return one_hot(ids, weight.shape[0], weight.dtype) @ weight


def embed_by_lookup(ids: Tensor, weight: Tensor) -> Tensor:
    """ids (...) and weight (V, d) -> (..., d): the rows ``weight[ids]``. d copies per token, no arithmetic."""
    return weight[ids]


def initial_loss_estimate(self_logit: float, vocab_size: int) -> float:
    """The expected next-token loss of a freshly initialised PaLM whose logit for the input token is ``self_logit``.

    With N(0, 1) embeddings and logits ``h . e_j / sqrt(d)``, the logit of every token other than the input is
    about N(0, 1) (so E[exp] = e^(1/2)) and the target's logit averages 0, while the input token's own logit is
    ``self_logit`` (about sqrt(d), see the chapter). The loss -log p(target) is then about

        log( exp(self_logit) + (V - 1) * exp(1/2) ) - 0.

    With ``self_logit = 0`` it is ln(V - 1) + 1/2, a little above the uniform guess ln V.
    """
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be at least 2; got {vocab_size}")
    others = math.log(vocab_size - 1) + 0.5
    return max(self_logit, others) + math.log1p(math.exp(-abs(self_logit - others)))


def cosine_neighbours(weight: Tensor, ids: Sequence[int] | Tensor, k: int = 5) -> tuple[Tensor, Tensor]:
    """The k rows of ``weight`` (V, d) most similar in direction to each row ``ids``, excluding the row itself.

    Returns (similarities (n, k), neighbour ids (n, k)), most similar first.
    Cosine similarity = a . b / (|a| |b|): 1 for the same direction, 0 for orthogonal, -1 for opposite.
    """
    ids = torch.as_tensor(ids, dtype=torch.long, device=weight.device)
    if not 0 < k < weight.shape[0]:
        raise ValueError(f"k must be in [1, {weight.shape[0] - 1}]; got {k}")
    unit = torch.nn.functional.normalize(weight.float(), dim=-1)
    sims = unit[ids] @ unit.T  # (n, V)
    sims[torch.arange(len(ids)), ids] = -math.inf  # a token is not its own neighbour
    return sims.topk(k, dim=-1)


def pca(x: Tensor, k: int = 3) -> tuple[Tensor, Tensor]:
    """Project the rows of x (N, d) on their top-k principal directions.

    Returns (coordinates (N, k), share of the variance each direction explains (k,)). Exact (an SVD of the
    centred matrix), and deterministic: each direction's sign is chosen so that its largest loading is positive.
    """
    if not 0 < k <= min(x.shape):
        raise ValueError(f"k must be in [1, {min(x.shape)}] for a {tuple(x.shape)} matrix; got {k}")
    centred = x.double() - x.double().mean(dim=0)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    directions = vh[:k]  # (k, d)
    signs = torch.sign(directions.gather(1, directions.abs().argmax(dim=1, keepdim=True)))
    directions = directions * signs
    variance = s**2
    return (centred @ directions.T).to(x.dtype), (variance[:k] / variance.sum()).to(x.dtype)


PIECE_CATEGORIES = (
    "digit",
    "punctuation",
    "speaker name",
    "capitalised word",
    "word",
    "word piece",
    "byte",
    "space / newline / special",
)


def piece_category(piece: str, speaker_words: Iterable[str] = ()) -> str:
    """A coarse label of a SentencePiece piece for colouring maps: one of :data:`PIECE_CATEGORIES`.

    A lower-case "word" starts with "▁" (it begins a word); a lower-case "word piece" does not (it continues
    one). A "capitalised word" starts with a capital, with or without "▁" (a verse line starts with a capital
    right after a newline, so without "▁"). ``speaker_words``: the upper-case words of speakers' names (the
    plays print "HAMLET:" before each of Hamlet's speeches).
    """
    if not isinstance(speaker_words, (set, frozenset)):
        speaker_words = set(speaker_words)
    if piece.startswith("<") and piece.endswith(">"):
        return "byte" if piece.startswith("<0x") else "space / newline / special"
    text = piece.lstrip("\u2581")
    if not text or text.isspace():
        return "space / newline / special"
    if text.isdigit():
        return "digit"
    if all(unicodedata.category(c).startswith(("P", "S")) for c in text):
        return "punctuation"
    if text.isupper() and len(text) > 1 and text in speaker_words:
        return "speaker name"
    if text[0].isupper():
        return "capitalised word"
    return "word" if piece.startswith("\u2581") else "word piece"
