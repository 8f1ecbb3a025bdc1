"""Evaluating a language model on tasks: likelihood scoring, perplexity, and the standard metrics (chapter 12).

    score_continuations   log p(continuation | context) under the model, summed or per token: how a decoder-only
                          LM answers multiple choice and classifies by prompting (PaLM §6.1 follows GPT-3 here)
    choose                the index of the best-scoring candidate answer for each question
    generate_batched      greedy (or sampled) continuations for prompts of any lengths, cut at a stop token
    evaluate_lm           validation loss, perplexity and nats / bits per character of a model on packed blocks, on
                          one process or many (the trainer's evaluation)
    lm_perplexity         the same numbers for any (B, T) -> (B, T, V) scorer (a PaLM, an n-gram baseline); both
                          sum over one loop, so they agree
    classification_report accuracy, macro-F1 and the confusion matrix (scikit-learn)
    accuracy_interval     a Wilson confidence interval for an accuracy measured on n examples (scipy)
    exact_match           share of predictions equal to their reference
    bleu                  corpus BLEU with sacrebleu (``tokenize="zh"`` for Chinese targets)

The task metrics are the well-kept libraries' own, behind one call each, so every chapter and user computes them
the same way; nothing here re-implements a metric. Those libraries are optional (``palmbook[apps]``) and cost
seconds to import, so each is imported inside the function that needs it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from .loss import LMLoss, lm_loss
from .model import PaLM

__all__ = [
    "ClassificationReport",
    "accuracy_interval",
    "bleu",
    "choose",
    "classification_report",
    "evaluate_lm",
    "exact_match",
    "generate_batched",
    "lm_loss_parts",
    "lm_perplexity",
    "model_device",
    "score_continuations",
]

NORMALIZE = ("sum", "token")


# ---- models as scorers
def model_device(model: Any) -> torch.device:
    """Where a module's parameters (or, for a parameter-free scorer, its buffers) live; CPU for anything else
    (a plain function used as a scorer)."""
    if isinstance(model, nn.Module):
        for t in (*model.parameters(), *model.buffers()):
            return t.device
    return torch.device("cpu")


@contextlib.contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """The model in eval mode (no dropout) inside, its own mode back afterwards; plain functions pass through."""
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    try:
        yield
    finally:
        if isinstance(model, nn.Module):
            model.train(was_training)


def lm_loss_parts(model: Any, x: Tensor, y: Tensor, z_loss: float) -> LMLoss:
    """The loss and its parts for inputs x (B, T) and next tokens y (B, T).

    Through PaLM's fused output layer + loss (no (B, T, V) logits held) when the model is a PaLM, possibly inside
    DDP (``.module``) or FSDP2 (a PaLM subclass); through :func:`~palmbook.loss.lm_loss` of its scores otherwise.
    """
    if isinstance(getattr(model, "module", model), PaLM):
        return model(x, targets=y, z_loss=z_loss)
    return lm_loss(model(x), y, z_loss=z_loss, return_parts=True)


def _max_len(model: Any) -> int | None:
    cfg = getattr(model, "config", None)
    return getattr(cfg, "max_seq_len", None)


@torch.no_grad()
def score_continuations(
    model: Callable[[Tensor], Tensor],
    contexts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    *,
    normalize: str = "sum",
    batch_size: int = 16,
    bos_id: int | None = None,
    progress: bool = False,
) -> Tensor:
    """Log-likelihood of each continuation given its context: sum_t log p(c_t | context, c_<t).

    Args:
        model: maps token ids (B, T) to logits (B, T, V): a :class:`~palmbook.PaLM` or any such scorer.
        contexts, continuations: token ids, one list per example (N of each). A continuation must be non-empty.
        normalize: ``"sum"`` (the log-probability of the whole continuation: the right score when comparing
            answers to the same question by their joint probability) or ``"token"`` (divided by the
            continuation's length: GPT-3's choice for answers of different lengths).
        batch_size: sequences per forward pass.
        bos_id: put before an EMPTY context (e.g. the end-of-document id, which starts every document);
            without it an empty context is an error, since the first token would have nothing to be predicted from.
        progress: a tqdm bar over the batches (a long evaluation in a notebook shows it is moving).

    Returns:
        (N,) float64 scores. A sequence longer than the model's ``max_seq_len`` loses tokens from the start of
        its context (the continuation is always scored whole).

    The sequences are sorted by length and right-padded (causal attention never looks right, so padding does
    not change any score).
    """
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {NORMALIZE}; got {normalize!r}")
    if len(contexts) != len(continuations):
        raise ValueError(f"need one continuation per context; got {len(contexts)} and {len(continuations)}")
    limit = _max_len(model)
    seqs, starts = [], []
    for i, (ctx, cont) in enumerate(zip(contexts, continuations, strict=True)):
        ctx, cont = list(ctx), list(cont)
        if not cont:
            raise ValueError(f"continuation {i} is empty; there is nothing to score")
        if not ctx:
            if bos_id is None:
                raise ValueError(f"context {i} is empty; pass bos_id (e.g. tokenizer.eod_id) to start it")
            ctx = [bos_id]
        if limit is not None and len(ctx) + len(cont) > limit:
            if len(cont) >= limit:
                raise ValueError(f"continuation {i} has {len(cont)} tokens; the model reads at most {limit}")
            ctx = ctx[len(ctx) + len(cont) - limit :]
        seqs.append(ctx + cont)
        starts.append(len(ctx))
    device = model_device(model)
    scores = torch.empty(len(seqs), dtype=torch.float64)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    with _eval_mode(model):
        _score_sorted(model, seqs, starts, order, batch_size, normalize, device, scores, progress)
    return scores


def _score_sorted(
    model: Callable[[Tensor], Tensor],
    seqs: list[list[int]],
    starts: list[int],
    order: list[int],
    batch_size: int,
    normalize: str,
    device: torch.device,
    scores: Tensor,
    progress: bool = False,
) -> None:
    """:func:`score_continuations`' batches: right-padded sequences of similar length, scores written in place."""
    for b in tqdm(range(0, len(order), batch_size), desc="scoring", unit="batch", disable=not progress):
        rows = order[b : b + batch_size]
        width = max(len(seqs[i]) for i in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        scored = torch.zeros(len(rows), width - 1, dtype=torch.bool)  # which targets belong to a continuation
        for j, i in enumerate(rows):
            ids[j, : len(seqs[i])] = torch.tensor(seqs[i])
            scored[j, starts[i] - 1 : len(seqs[i]) - 1] = True
        ids, scored = ids.to(device), scored.to(device)
        logp = torch.log_softmax(model(ids[:, :-1]).float(), dim=-1)  # (b, width - 1, V)
        token_logp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1).double()  # (b, width - 1)
        total = (token_logp * scored).sum(-1).cpu()
        if normalize == "token":
            total = total / scored.sum(-1).cpu()
        scores[rows] = total


def choose(
    model: Callable[[Tensor], Tensor],
    contexts: Sequence[Sequence[int]],
    candidates: Sequence[Sequence[Sequence[int]]],
    *,
    normalize: str = "sum",
    batch_size: int = 16,
    bos_id: int | None = None,
    progress: bool = False,
) -> tuple[list[int], list[list[float]]]:
    """Answer multiple-choice questions by likelihood: for each context, the candidate with the highest score.

    ``candidates[i]`` holds the token ids of question i's answers (any number each). Returns (the index of the
    chosen answer per question, every answer's score per question); see :func:`score_continuations`.
    """
    if len(contexts) != len(candidates):
        raise ValueError(f"need one list of candidates per context; got {len(contexts)} and {len(candidates)}")
    flat_ctx = [ctx for ctx, cands in zip(contexts, candidates, strict=True) for _ in cands]
    flat_cont = [c for cands in candidates for c in cands]
    flat = score_continuations(
        model, flat_ctx, flat_cont, normalize=normalize, batch_size=batch_size, bos_id=bos_id, progress=progress
    ).tolist()
    scores, k = [], 0
    for cands in candidates:
        if not cands:
            raise ValueError("every question needs at least one candidate answer")
        scores.append(flat[k : k + len(cands)])
        k += len(cands)
    return [max(range(len(s)), key=s.__getitem__) for s in scores], scores


@torch.no_grad()
def generate_batched(
    model: Any,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    stop_token: int | None = None,
    batch_size: int = 64,
    **sampling: Any,
) -> list[list[int]]:
    """``model.generate`` over prompts of different lengths: the new tokens of each, cut before ``stop_token``.

    Prompts of equal length are batched together (``generate`` takes a rectangular batch and PaLM has no padding
    mask); ``sampling`` goes to ``model.generate`` (default: greedy). Returns one list of new token ids per prompt.
    """
    out: list[list[int]] = [[] for _ in prompts]
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        if not len(p):
            raise ValueError(f"prompt {i} is empty; start it with the end-of-document id")
        by_len.setdefault(len(p), []).append(i)
    device = model_device(model)
    for rows in by_len.values():
        for b in range(0, len(rows), batch_size):
            chunk = rows[b : b + batch_size]
            idx = torch.tensor([list(prompts[i]) for i in chunk], dtype=torch.long, device=device)
            new = model.generate(idx, max_new_tokens, stop_token=stop_token, **sampling)[:, idx.shape[1] :]
            for i, row in zip(chunk, new.tolist(), strict=True):
                out[i] = row[: row.index(stop_token)] if stop_token is not None and stop_token in row else row
    return out


# ---- loss and perplexity on packed blocks
@torch.no_grad()
def _nll_sums(
    model: Any,
    blocks: Tensor,
    batch_size: int,
    max_batches: int | None,
    chars_per_token: float | Tensor | None,
    device: torch.device,
    autocast: contextlib.AbstractContextManager | None = None,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = False,
) -> tuple[float, float, float]:
    """The one evaluation loop: (nats, tokens, characters) summed over the first ``max_batches * batch_size`` rows
    of ``blocks`` (N, T + 1), inputs block[:, :-1] and targets block[:, 1:], cross-entropy only (no z-loss).

    Characters are ``tokens x chars_per_token`` for a float, or the sum of ``chars_per_token[target]`` for a
    (vocab_size,) table; 0 without either. With several processes each takes every world_size-th row and the sums
    are all-reduced, so every rank returns the totals.
    """
    if not isinstance(blocks, Tensor) or blocks.dim() != 2 or blocks.shape[1] < 2:
        raise ValueError("blocks must be a LongTensor (N, T + 1), as palmbook.data.lm_blocks returns")
    n = blocks.shape[0] if max_batches is None else min(blocks.shape[0], max_batches * batch_size)
    n -= n % world_size  # every rank runs the same number of forwards (FSDP's collectives need that)
    if n == 0:
        raise ValueError(f"{blocks.shape[0]} blocks are too few to evaluate on {world_size} process(es)")
    rows = blocks[:n][rank::world_size]
    table = chars_per_token.to(device) if isinstance(chars_per_token, Tensor) else None
    per_token = 0.0 if table is not None else float(chars_per_token or 0.0)
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # nats, tokens, characters
    with _eval_mode(model):
        # one bar, on rank 0 only: every rank runs the same number of batches
        starts = range(0, rows.shape[0], batch_size)
        for start in tqdm(starts, desc="evaluating", unit="batch", disable=not progress or rank != 0):
            chunk = rows[start : start + batch_size].to(device)
            x, y = chunk[:, :-1], chunk[:, 1:]
            with autocast or contextlib.nullcontext():
                ce = lm_loss_parts(model, x, y, z_loss=0.0).ce
            tokens = float(y.numel())
            chars = table[y].sum().double() if table is not None else torch.tensor(tokens * per_token, device=device)
            sums += torch.stack([ce.double() * tokens, torch.tensor(tokens, device=device).double(), chars.double()])
    if world_size > 1:
        dist.all_reduce(sums)
    nats, tokens, chars = sums.tolist()
    return nats, tokens, chars


def evaluate_lm(
    model: nn.Module,
    blocks: Tensor,
    batch_size: int,
    max_batches: int | None = None,
    chars_per_token: float | Tensor | None = None,
    device: torch.device | str | None = None,
    autocast: contextlib.AbstractContextManager | None = None,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = False,
) -> dict[str, float]:
    """Validation loss of ``model`` on the first ``max_batches * batch_size`` rows of ``blocks`` (N, T+1).

    Returns val_loss (cross-entropy, nats per token, no z-loss), val_ppl, val_tokens and, with
    ``chars_per_token``, val_nats_per_char = total nats / total characters and val_bits_per_char. Per character,
    models with different tokenizers are comparable (per token they are not: a bigger vocabulary makes fewer,
    harder tokens). ``chars_per_token``: a float (characters / tokens of the evaluated text, e.g. of the whole
    validation split) or a (vocab_size,) tensor of characters per token id, summed over the targets evaluated.
    ``device`` defaults to the model's; ``autocast`` is a context for the forward passes (the trainer's
    precision). With several processes (``rank`` of ``world_size``) each evaluates its share of the rows.
    ``progress``: a tqdm bar over the batches (rank 0 only).
    """
    device = torch.device(device) if device is not None else model_device(model)
    nats, tokens, chars = _nll_sums(
        model, blocks, batch_size, max_batches, chars_per_token, device, autocast, rank, world_size, progress
    )
    out = {"val_loss": nats / tokens, "val_ppl": math.exp(min(nats / tokens, 700.0)), "val_tokens": int(tokens)}
    if chars_per_token is not None and chars > 0:
        out["val_nats_per_char"] = nats / chars
        out["val_bits_per_char"] = nats / chars / math.log(2)
    return out


def lm_perplexity(
    model: Callable[[Tensor], Tensor],
    blocks: Tensor,
    *,
    batch_size: int = 16,
    max_batches: int | None = None,
    chars_per_token: float | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Perplexity of ``model`` on packed blocks (N, T + 1) (inputs block[:, :-1], targets block[:, 1:]).

    ``model`` is anything mapping (B, T) ids to (B, T, V) scores whose softmax is its next-token distribution:
    a PaLM, or a baseline returning log-probabilities (softmax of log p is p). The same loop as
    :func:`evaluate_lm`, under the names a chapter compares models by: perplexity, nats_per_token
    (= ln perplexity), tokens and, with ``chars_per_token`` (characters / tokens of the evaluated text),
    nats_per_char and bits_per_char: per character, models with different tokenizers become comparable.
    ``progress``: a tqdm bar over the batches.
    """
    nats, tokens, _ = _nll_sums(model, blocks, batch_size, max_batches, None, model_device(model), progress=progress)
    out = {"perplexity": math.exp(min(nats / tokens, 700.0)), "nats_per_token": nats / tokens, "tokens": int(tokens)}
    if chars_per_token:
        out["nats_per_char"] = nats / tokens / chars_per_token
        out["bits_per_char"] = out["nats_per_char"] / math.log(2)
    return out


# ---- metrics
@dataclass(frozen=True)
class ClassificationReport:
    """accuracy and macro-F1 in [0, 1]; confusion[i][j] = examples of labels[i] predicted as labels[j]."""

    accuracy: float
    macro_f1: float
    confusion: list[list[int]]
    labels: list[str]
    n: int

    def __str__(self) -> str:
        return f"accuracy {self.accuracy:.1%}, macro-F1 {self.macro_f1:.3f} (n = {self.n})"


def classification_report(
    y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[Any] | None = None
) -> ClassificationReport:
    """Accuracy, macro-averaged F1 and confusion matrix, by scikit-learn.

    ``labels`` fixes the classes and their order (default: sorted union of both). Macro-F1 averages the F1 of
    every class in ``labels`` with equal weight, so a classifier that ignores a rare class is penalised even
    when its accuracy is high; a class never predicted nor present scores 0.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    if len(y_true) != len(y_pred):
        raise ValueError(f"need one prediction per example; got {len(y_pred)} predictions for {len(y_true)}")
    if not len(y_true):
        raise ValueError("no examples to score")
    labels = list(labels) if labels is not None else sorted(set(y_true) | set(y_pred))
    unknown = (set(y_true) | set(y_pred)) - set(labels)
    if unknown:
        raise ValueError(f"labels {sorted(map(str, unknown))} are not in labels={labels}")
    return ClassificationReport(
        accuracy=float(accuracy_score(y_true, y_pred)),
        macro_f1=float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        confusion=confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        labels=[str(x) for x in labels],
        n=len(y_true),
    )


def accuracy_interval(correct: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for an accuracy of ``correct``/``total`` (scipy): how far chance alone could move it."""
    from scipy.stats import binomtest

    if total <= 0 or not 0 <= correct <= total:
        raise ValueError(f"need 0 <= correct <= total and total > 0; got {correct}/{total}")
    ci = binomtest(correct, total).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def exact_match(predictions: Sequence[str], references: Sequence[str], *, strip: bool = True) -> float:
    """Share of predictions identical to their reference (after stripping surrounding whitespace, by default)."""
    from sklearn.metrics import accuracy_score

    if len(predictions) != len(references):
        raise ValueError(f"need one prediction per reference; got {len(predictions)} and {len(references)}")
    if not len(references):
        raise ValueError("no examples to score")
    if strip:
        predictions, references = [p.strip() for p in predictions], [r.strip() for r in references]
    return float(accuracy_score(list(references), list(predictions)))


def bleu(predictions: Sequence[str], references: Sequence[str], *, tokenize: str = "13a") -> float:
    """Corpus BLEU (0-100) of one reference per prediction, by sacrebleu with its default settings.

    ``tokenize``: ``"13a"`` (sacrebleu's default, for English and other space-separated text) or ``"zh"``
    (for Chinese targets: each Chinese character becomes a token; with "13a" a whole Chinese phrase would be one
    "word"). BLEU counts matching 1- to 4-grams over the whole corpus and multiplies by a brevity penalty.
    """
    import sacrebleu

    if len(predictions) != len(references):
        raise ValueError(f"need one prediction per reference; got {len(predictions)} and {len(references)}")
    if not len(references):
        raise ValueError("no examples to score")
    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)], tokenize=tokenize).score)
