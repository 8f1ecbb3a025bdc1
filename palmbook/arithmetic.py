"""Multi-step addition with and without worked steps: chain of thought at the scale of a CPU.

A problem adds ``n`` numbers of ``digits`` digits (leading digit non-zero, so 2 digits means 10..99). Two forms
of the same problem, character by character:

    direct    12+34+56=102;          the answer at once
    worked    12+34+56=46,102;       every running sum, then the answer (the last number)

The prompt is everything up to and including "="; the answer is the rest, ";" included (it tells the decoder to
stop). The loss covers the answer only, so both forms train on the same prompts and differ only in whether the
model writes the intermediate results. A worked answer is longer (more tokens per step of compute at test time):
that is the point chain of thought makes (Wei et al., 2022, arXiv 2201.11903), and self-consistency (Wang et al.,
2022, arXiv 2203.11171) adds a majority vote over sampled chains.

Tokenizer: one token per character, ``"0123456789+=,; "`` (15 ids, the space pads a batch at the end and is
never scored). Held-out problems: a hash of each problem sends one in ten to the ``"test"`` split, never drawn for
``"train"``; and problems with more terms than any seen in training test whether the model learned the step, not
the length.

``modulo`` keeps only the remainder of every running sum: with single digits (``digits=1``) and ``modulo=10``,
``7+5+9+3=2,1,4;`` worked or ``7+5+9+3=4;`` direct. Each worked step is then one fact from a table of 100 (the last
digit of a + b), while the direct answer needs all of them composed: the form in which chapter 11 shows chain of
thought winning at CPU scale (with 2-digit terms and full sums, neither form learned 3- and 4-term problems in the
steps a CPU allows).

An earlier draft also used 3-digit direct addition for the "flat then jump" plot (per-token accuracy against exact
match, Schaeffer et al., 2023, arXiv 2304.15004); at CPU scale no model of that sweep learned it, so chapter 11
scores its Shakespeare sweep that way instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import accumulate
from typing import NamedTuple

import torch
from torch import Tensor

from .config import PaLMConfig
from .model import PaLM
from .task_training import TaskHistory, train_on_task

__all__ = [
    "CHARS",
    "PAD",
    "STOP",
    "AdditionBatch",
    "AdditionScore",
    "addition_batch",
    "addition_config",
    "complete",
    "cot_accuracy",
    "decode",
    "encode",
    "format_problem",
    "majority_vote",
    "read_answer",
    "sample_terms",
    "train_arithmetic",
]

CHARS = "0123456789+=,; "
VOCAB_SIZE = len(CHARS)
_ID = {c: i for i, c in enumerate(CHARS)}
STOP = _ID[";"]
PAD = _ID[" "]
SPLITS = ("train", "test", "any")
_PRIME = 2_147_483_647  # 2^31 - 1: the problem hash stays far inside int64


def encode(text: str) -> list[int]:
    """Characters -> token ids. Raises ValueError on a character outside ``CHARS``."""
    bad = sorted(set(text) - set(CHARS))
    if bad:
        raise ValueError(f"characters {bad} are not in the arithmetic vocabulary {CHARS!r}")
    return [_ID[c] for c in text]


def decode(ids: Sequence[int] | Tensor) -> str:
    """Token ids -> characters (the inverse of :func:`encode`)."""
    ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
    return "".join(CHARS[i] for i in ids)


def _check_modulo(modulo: int | None) -> None:
    if modulo is not None and (isinstance(modulo, bool) or not isinstance(modulo, int) or modulo < 2):
        raise ValueError(f"modulo must be None or an integer >= 2; got {modulo!r}")


def format_problem(terms: Sequence[int], worked: bool, *, modulo: int | None = None) -> tuple[str, str]:
    """(prompt, answer) strings, e.g. ``([12, 34, 56], True) -> ("12+34+56=", "46,102;")``.

    With ``modulo`` every running sum (and so the answer) is taken modulo it: ``([3, 5, 9], True, modulo=10) ->
    ("3+5+9=", "8,7;")``. With single digits and ``modulo=10`` each worked step is one addition of two digits
    (a table of 100 facts), while the direct answer needs all of them composed.
    """
    _check_modulo(modulo)
    terms = [int(t) for t in terms]
    if len(terms) < 2:
        raise ValueError(f"a problem adds at least 2 numbers; got {terms}")
    prompt = "+".join(map(str, terms)) + "="
    sums = list(accumulate(terms))[1:]  # running sums after each addition; the last is the answer
    if modulo is not None:
        sums = [x % modulo for x in sums]
    answer = ",".join(map(str, sums if worked else sums[-1:])) + ";"
    return prompt, answer


def read_answer(text: str) -> int | None:
    """The final number of a completion: the text before the first ";", after its last ",".

    Returns None when the completion never stops or the final field is not a plain number.
    """
    if ";" not in text:
        return None
    last = text.split(";", 1)[0].rsplit(",", 1)[-1]
    return int(last) if last.isdigit() else None


def _problem_hash(terms: Tensor, n: Tensor) -> Tensor:
    """(B, n_max) terms and (B,) counts -> (B,) split bucket 0..9; bucket 0 is the held-out test split."""
    h = n.clone()
    for i in range(terms.shape[1]):
        h = (h * 1_000_003 + torch.where(i < n, terms[:, i], 0)) % _PRIME
    return (h * 48_271) % _PRIME % 10


def sample_terms(
    batch_size: int,
    n_terms: int | Sequence[int],
    *,
    digits: int = 2,
    split: str = "train",
    seed: int | torch.Generator = 0,
) -> tuple[Tensor, Tensor]:
    """Random problems of one split: terms (B, max n) (0 beyond each row's count) and counts n (B,).

    ``n_terms`` is one count or a sequence to draw each row's count from uniformly. ``split``: ``"train"`` (nine
    problems in ten), ``"test"`` (the tenth, never drawn for train) or ``"any"``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
    if isinstance(digits, bool) or not isinstance(digits, int) or digits < 1:
        raise ValueError(f"digits must be a positive integer; got {digits!r}")
    g = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    choices = torch.tensor([n_terms] if isinstance(n_terms, int) else list(n_terms), dtype=torch.long)
    if choices.numel() == 0 or (choices < 2).any():
        raise ValueError(f"n_terms must be counts >= 2; got {n_terms!r}")
    n = choices[torch.randint(len(choices), (batch_size,), generator=g)]
    lo, hi = 10 ** (digits - 1) if digits > 1 else 0, 10**digits
    width = int(choices.max())
    terms = torch.zeros(batch_size, width, dtype=torch.long)
    redo = torch.ones(batch_size, dtype=torch.bool)
    while redo.any():  # rejection sampling: redraw the rows that fell in the other split
        fresh = torch.randint(lo, hi, (int(redo.sum()), width), generator=g)
        fresh = torch.where(torch.arange(width) < n[redo, None], fresh, 0)
        terms[redo] = fresh
        if split == "any":
            break
        bucket = _problem_hash(terms, n)
        redo = (bucket == 0) if split == "train" else (bucket != 0)
    return terms, n


class AdditionBatch(NamedTuple):
    """A batch of addition problems and their exact ground truth.

    Attributes:
        tokens: (B, T) character ids, each row prompt + answer, padded at the end with ``PAD``.
        loss_mask: (B, T) bool, True exactly on the answer's characters (";" included).
        prompt_len: (B,) length of each prompt ("=" included).
        terms: (B, max n) the numbers added (0 beyond a row's count).
        n_terms: (B,) how many numbers each row adds.
        total: (B,) the sum (modulo ``modulo`` when one was given): the answer.
    """

    tokens: Tensor
    loss_mask: Tensor
    prompt_len: Tensor
    terms: Tensor
    n_terms: Tensor
    total: Tensor


def addition_batch(
    batch_size: int,
    n_terms: int | Sequence[int],
    *,
    worked: bool,
    digits: int = 2,
    split: str = "train",
    seed: int | torch.Generator = 0,
    seq_len: int | None = None,
    modulo: int | None = None,
) -> AdditionBatch:
    """A batch of problems in direct (``worked=False``) or worked form; see :func:`sample_terms` for the rest.

    ``seq_len`` pads every row to that length (default: the batch's longest row); too short raises. ``modulo``:
    running sums modulo it (see :func:`format_problem`).
    """
    _check_modulo(modulo)
    terms, n = sample_terms(batch_size, n_terms, digits=digits, split=split, seed=seed)
    texts = [format_problem(row[:k], worked, modulo=modulo) for row, k in zip(terms.tolist(), n.tolist(), strict=True)]
    longest = max(len(p) + len(a) for p, a in texts)
    T = longest if seq_len is None else seq_len
    if longest > T:
        raise ValueError(f"seq_len={seq_len} is shorter than the longest problem ({longest} characters)")
    tokens = torch.full((batch_size, T), PAD, dtype=torch.long)
    loss_mask = torch.zeros(batch_size, T, dtype=torch.bool)
    for i, (prompt, answer) in enumerate(texts):
        tokens[i, : len(prompt) + len(answer)] = torch.tensor(encode(prompt + answer))
        loss_mask[i, len(prompt) : len(prompt) + len(answer)] = True
    prompt_len = torch.tensor([len(p) for p, _ in texts])
    total = terms.sum(1) if modulo is None else terms.sum(1) % modulo
    return AdditionBatch(tokens, loss_mask, prompt_len, terms, n, total)


def _longest(max_terms: int, digits: int, modulo: int | None) -> int:
    """Characters in the longest problem of up to ``max_terms`` numbers, prompt and worked answer."""
    prompt, answer = format_problem([10**digits - 1] * max_terms, worked=True)  # all sums as wide as they get
    if modulo is not None:
        answer = ",".join([str(modulo - 1)] * (max_terms - 1)) + ";"
    return len(prompt + answer)


def addition_config(max_terms: int, *, digits: int = 2, modulo: int | None = None, **fields: int | float) -> PaLMConfig:
    """A PaLM config for problems of up to ``max_terms`` numbers in either form; ``fields`` set the shape.

    Defaults are the calibrated model (d_model 128, 3 layers, 4 heads of 32).
    """
    _check_modulo(modulo)
    shape = dict(d_model=128, n_layers=3, n_heads=4, head_dim=32) | fields
    return PaLMConfig(vocab_size=VOCAB_SIZE, max_seq_len=_longest(max_terms, digits, modulo), name="addition", **shape)


@torch.no_grad()
def complete(
    model: PaLM,
    prompts: Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Continue prompts (B, P) of one length by up to ``max_new_tokens`` -> (B, n) new tokens.

    Greedy when ``temperature`` is 0, else sampled from softmax(logits / temperature) with ``generator``.
    Rows that wrote ``STOP`` keep writing it; the loop ends when all have. Each step reruns the whole (short)
    sequence: simpler than a KV cache, and these sequences are a few dozen tokens.
    """
    was_training = model.training
    model.eval()
    try:
        B, P = prompts.shape
        out = prompts.to(model.device)
        done = torch.zeros(B, dtype=torch.bool, device=out.device)
        for _ in range(min(max_new_tokens, model.config.max_seq_len - P)):
            logits = model(out)[:, -1].float()
            if temperature == 0:
                nxt = logits.argmax(-1)
            else:
                probs = (logits / temperature).softmax(-1).cpu()
                nxt = torch.multinomial(probs, 1, generator=generator)[:, 0].to(out.device)
            nxt = torch.where(done, STOP, nxt)
            out = torch.cat([out, nxt[:, None]], dim=1)
            done |= nxt == STOP
            if done.all():
                break
    finally:
        model.train(was_training)
    return out[:, P:].cpu()


def majority_vote(answers: Sequence[Sequence[int | None]]) -> list[int | None]:
    """For each problem, the most frequent non-None answer among its samples (earliest wins a tie); None if none."""
    votes = []
    for row in answers:
        counts = Counter(a for a in row if a is not None)
        votes.append(counts.most_common(1)[0][0] if counts else None)
    return votes


class AdditionScore(NamedTuple):
    """Result of :func:`cot_accuracy`: accuracy, per-problem correctness (n,), answers read (n lists of S)."""

    accuracy: float
    correct: list[bool]
    answers: list[list[int | None]]
    texts: list[list[str]]


def cot_accuracy(
    model: PaLM,
    n_terms: int,
    *,
    worked: bool,
    n_problems: int = 200,
    digits: int = 2,
    split: str = "test",
    seed: int = 4321,
    samples: int = 1,
    temperature: float = 0.0,
    modulo: int | None = None,
) -> AdditionScore:
    """Exact-match accuracy of the final answer on ``n_problems`` problems of ``n_terms`` numbers.

    ``samples`` > 1 with ``temperature`` > 0 is self-consistency: sample that many completions per problem and
    answer by :func:`majority_vote`. Correctness is checked against the sum computed from the terms.
    """
    if samples < 1 or (samples > 1 and temperature == 0):
        raise ValueError("samples must be >= 1, and a majority over samples needs temperature > 0 (e.g. 0.7)")
    batch = addition_batch(n_problems, n_terms, worked=worked, digits=digits, split=split, seed=seed, modulo=modulo)
    prompts = batch.tokens[:, : int(batch.prompt_len[0])]  # fixed-width terms: every prompt has one length
    longest = len(format_problem([10**digits - 1] * n_terms, worked)[1])  # no sum is wider than without modulo
    g = torch.Generator().manual_seed(seed)
    new = complete(model, prompts.repeat_interleave(samples, 0), longest, temperature=temperature, generator=g)
    texts = [decode(row) for row in new]
    texts_by_problem = [texts[i * samples : (i + 1) * samples] for i in range(n_problems)]
    answers = [[read_answer(t) for t in row] for row in texts_by_problem]
    final = majority_vote(answers) if samples > 1 else [row[0] for row in answers]
    correct = [a == t for a, t in zip(final, batch.total.tolist(), strict=True)]
    return AdditionScore(sum(correct) / n_problems, correct, answers, texts_by_problem)


def train_arithmetic(
    config: PaLMConfig,
    steps: int,
    *,
    worked: bool,
    n_terms: Sequence[int] = (2, 3, 4),
    digits: int = 2,
    batch_size: int = 64,
    lr: float = 2e-3,
    eval_every: int | None = None,
    eval_terms: Sequence[int] = (3, 4, 5, 6),
    eval_n: int = 200,
    seed: int = 0,
    device: str | torch.device = "cpu",
    modulo: int | None = None,
    warmup: int = 100,
) -> tuple[PaLM, TaskHistory]:
    """Train a fresh PaLM of ``config`` on addition in one form; returns the model and its history.

    Every ``eval_every`` steps the history records ``{n: greedy accuracy}`` on ``eval_n`` held-out problems for
    each n in ``eval_terms`` (counts above ``max(n_terms)`` were never seen in training). The model trains on
    ``device``.
    """
    torch.manual_seed(seed)
    model = PaLM(config).to(device)
    g = torch.Generator().manual_seed(seed)
    seq_len = _longest(max(n_terms), digits, modulo)

    def sample(step: int) -> tuple[Tensor, Tensor]:
        b = addition_batch(
            batch_size, n_terms, worked=worked, digits=digits, split="train", seed=g, seq_len=seq_len, modulo=modulo
        )
        return b.tokens, b.loss_mask

    def evaluate(m: PaLM) -> dict[int, float]:
        return {
            n: cot_accuracy(
                m, n, worked=worked, n_problems=eval_n, digits=digits, seed=seed + 7, modulo=modulo
            ).accuracy
            for n in eval_terms
        }

    history = train_on_task(
        model, sample, steps, lr=lr, warmup=warmup, eval_every=eval_every, evaluate=evaluate if eval_every else None
    )
    return model, history
