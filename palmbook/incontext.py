"""Few-shot in-context learning, made small: associative recall with a fresh mapping in every sequence.

Every sequence defines its own task. It draws a random one-to-one mapping from keys to values, shows
``n_pairs`` (key, value) demonstrations, then a query marker and a key; the answer is that key's value::

    K3 V7  K0 V2  K3 V7  K5 V1  ...  ?  K3  ->  V7
    <-------- n_pairs demonstrations ------->  query   answer

Nothing can be memorised across sequences (the mapping is new each time), so the only way to answer better than
chance is to read the answer out of the context: in-context learning. "Shots" is how many demonstrations show
the query's key; with 0 shots the answer is a guess. A Transformer solves this with an *induction head*: one
layer copies each token's predecessor into its position ("I am V7 and came after K3"), a second layer, at the
query K3, attends to the position that came after an earlier K3 and copies its value. That needs two layers of
attention, so a one-layer model is the control that cannot do it (Olsson et al., 2022, "In-context learning and
induction heads", arXiv 2209.11895).

Vocabulary (``n_keys + n_values + 2`` tokens), documented because the chapter draws attention maps over it:

    ids 0 .. n_keys-1                       keys K0, K1, ...
    ids n_keys .. n_keys+n_values-1         values V0, V1, ...
    id  n_keys+n_values                     the query marker "?"
    id  n_keys+n_values+1                   a filler "." (only with ``fillers`` > 0)

Sequences have one length, ``2 * n_pairs + 3 + fillers``: the pairs in order (each value right after its key),
then "?", the query key and the answer (last position); ``fillers`` tokens scattered at random between the pairs
vary where each pair sits (an induction head does not care: it keys on "the token before me", wherever that is).

The control needs care. One layer cannot build an induction head, but with several heads it can still beat the
frequency-free baseline: in the calibration runs of chapter 11 a 1-layer, 4-head model
reached 41% at one balanced shot (baseline 12.5%) after 600 steps, 34% with 6 fillers, with no induction
pattern in its attention. A likely route: the query's position is fixed, so each head's softmax normaliser
depends on where the query's key sits, and a few heads together can weight the values by position (our reading,
not proven here). With ONE head per layer that route is closed: 1 layer x 1 head stayed at the baseline (19% /
32% / 52% at 1 / 2 / 4 balanced shots against 12.5% / 25% / 50%), while 2 layers x 1 head reached 99% at step
200. Compare depth at ``n_heads=1``, and train on the balanced layout: with half the batches in the random layout
(``"mixed"``), one seed in three stayed on the frequency heuristic for 800 steps, while balanced training switched
every seed on by step 250. Two layouts of the demonstrations:

* ``"random"``: the other demonstrations draw keys uniformly (with repetition) from the keys that are not the
  query. A key shown more often puts its value in the context more often, so "answer the most frequent value"
  beats chance without any key-to-value binding: the *frequency heuristic* a one-layer model finds.
* ``"balanced"``: every key in the context appears exactly as often as the query key (``shots`` times; once each
  when ``shots`` is 0, the query then absent), so every value in the context is equally frequent and frequency
  says nothing. With one shot each value appears once. ``shots`` must divide ``n_pairs``.

The training loss covers every value token (demonstrations and answer), not the answer alone: each repeated key
in the demonstrations is one more recall exercise, and with the answer alone a 2-layer model stayed at chance in
the calibration runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .config import PaLMConfig
from .model import PaLM
from .task_training import TaskHistory, train_on_task

__all__ = [
    "LAYOUTS",
    "RecallBatch",
    "RecallTask",
    "accuracy_by_shots",
    "frequency_guess",
    "induction_scores",
    "recall_batch",
    "train_incontext",
]

LAYOUTS = ("random", "balanced", "mixed")


@dataclass(frozen=True)
class RecallTask:
    """The shape of the associative-recall task.

    Attributes:
        n_keys: number of distinct keys.
        n_values: number of distinct values (>= n_keys: each sequence maps its keys to distinct values).
        n_pairs: demonstrations per sequence. The balanced layout needs ``n_pairs % shots == 0`` and, for 0 shots,
            ``n_keys > n_pairs``; the default 8 allows shots 0, 1, 2, 4 and 8.
        fillers: filler tokens scattered uniformly at random over the gaps before each pair and before "?".
    """

    n_keys: int = 12
    n_values: int = 12
    n_pairs: int = 8
    fillers: int = 0

    def __post_init__(self) -> None:
        for name in ("n_keys", "n_values", "n_pairs", "fillers"):
            value, least = getattr(self, name), 0 if name == "fillers" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}; got {value!r}")
        if self.n_keys < 2:
            raise ValueError(f"n_keys must be at least 2 (a query and another key); got {self.n_keys}")
        if self.n_values < self.n_keys:
            raise ValueError(
                f"n_values={self.n_values} < n_keys={self.n_keys}: a mapping gives each key its own value, "
                "so use at least as many values as keys"
            )

    @property
    def query_token(self) -> int:
        return self.n_keys + self.n_values

    @property
    def filler_token(self) -> int:
        return self.n_keys + self.n_values + 1

    @property
    def vocab_size(self) -> int:
        return self.n_keys + self.n_values + 2

    @property
    def seq_len(self) -> int:
        return 2 * self.n_pairs + 3 + self.fillers

    def config(self, **fields: int | float) -> PaLMConfig:
        """A PaLM config that fits this task: its vocabulary and length; ``fields`` set the rest.

        Defaults are the calibrated 2-layer model with ONE head per layer (d_model 96, head size 24): with one head
        a 1-layer control cannot bind keys to values by position (see the module docstring).
        """
        shape = dict(d_model=96, n_layers=2, n_heads=1, head_dim=24) | fields
        return PaLMConfig(vocab_size=self.vocab_size, max_seq_len=self.seq_len, name="recall", **shape)

    def describe(self, tokens: Tensor) -> str:
        """One sequence (T,) as text, e.g. ``"K3 V7 . K0 V2 ? K3 V7"``."""
        names = []
        for t in tokens.tolist():
            if t < self.n_keys:
                names.append(f"K{t}")
            elif t < self.query_token:
                names.append(f"V{t - self.n_keys}")
            else:
                names.append("?" if t == self.query_token else ".")
        return " ".join(names)


class RecallBatch(NamedTuple):
    """A batch of recall sequences and its exact ground truth.

    Attributes:
        tokens: (B, T) token ids, T = ``task.seq_len``.
        loss_mask: (B, T) bool, True on every value token (the demonstrations' values and the answer).
        answer: (B,) the answer's token id, ``mapping[b, query]``; also ``tokens[:, -1]``.
        query: (B,) the query key.
        shots: (B,) how many demonstrations show the query key.
        mapping: (B, n_keys) the value token of every key in that sequence.
        prior: (B, T) at each value position, how many earlier demonstrations showed its key (the shots available
            for that value); -1 at other positions. For the answer it equals ``shots``.
    """

    tokens: Tensor
    loss_mask: Tensor
    answer: Tensor
    query: Tensor
    shots: Tensor
    mapping: Tensor
    prior: Tensor


def _generator(seed: int | torch.Generator) -> torch.Generator:
    return seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))


def _ranks(g: torch.Generator, rows: int, cols: int) -> Tensor:
    """(rows, cols) independent random permutations of 0..cols-1."""
    return torch.rand(rows, cols, generator=g).argsort(dim=1)


def recall_batch(
    task: RecallTask,
    batch_size: int,
    shots: int | Sequence[int] | Tensor,
    *,
    layout: str = "random",
    seed: int | torch.Generator = 0,
) -> RecallBatch:
    """A batch of recall sequences; vectorised, reproducible from ``seed``.

    Args:
        task: the vocabulary and number of demonstrations.
        batch_size: B.
        shots: demonstrations showing the query key: one int for the whole batch, a sequence of ints to draw
            each row's count from uniformly, or a (B,) tensor.
        layout: ``"random"``, ``"balanced"`` (see the module docstring) or ``"mixed"`` (each row picks one of the
            two with probability 1/2).
        seed: an int or a ``torch.Generator`` (a generator advances, so successive calls differ).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}; got {layout!r}")
    g = _generator(seed)
    B, P, K = batch_size, task.n_pairs, task.n_keys
    if isinstance(shots, Tensor):
        s = shots.to(torch.long).reshape(-1)
        if s.numel() != B:
            raise ValueError(f"a shots tensor needs one count per row: shape ({B},); got {tuple(shots.shape)}")
    elif isinstance(shots, int):
        s = torch.full((B,), shots, dtype=torch.long)
    else:
        choices = torch.tensor(list(shots), dtype=torch.long)
        s = choices[torch.randint(len(choices), (B,), generator=g)]
    if (s < 0).any() or (s > P).any():
        raise ValueError(f"shots must be in [0, n_pairs={P}]; got {sorted(set(s.tolist()))}")
    mixed = torch.rand(B, generator=g) < 0.5
    balanced = mixed if layout == "mixed" else torch.full((B,), layout == "balanced")
    if balanced.any():
        sb = s[balanced]
        if (P % sb.clamp(min=1) != 0).any():
            raise ValueError(f"the balanced layout needs shots dividing n_pairs={P}; got {sorted(set(sb.tolist()))}")
        if (sb == 0).any() and K <= P:
            raise ValueError(
                f"0 shots in the balanced layout shows {P} distinct keys besides the query: use n_keys > {P}"
            )

    keys = _ranks(g, B, K)  # (B, K): column 0 is the query, the other columns distinct non-query keys
    query = keys[:, 0]
    slot = torch.arange(P)[None, :]  # (1, P)
    # balanced: slot j shows key column j % m, m = P // shots distinct keys (the query is column 0), each `shots`
    # times; with 0 shots, columns 1..P (P distinct keys, none the query)
    m = P // s.clamp(min=1)
    col_balanced = torch.where(s[:, None] > 0, slot % m[:, None], slot + 1)
    # random: the query fills `shots` random slots, the others a uniformly drawn non-query key (with repetition)
    col_random = torch.where(
        _ranks(g, B, P) < s[:, None], 0, torch.randint(1, K, (B, P), generator=g)
    )  # rank < shots: a random set of exactly `shots` slots
    cols = torch.where(balanced[:, None], col_balanced, col_random)
    cols = cols.gather(1, _ranks(g, B, P))  # shuffle the slots' order (only matters for the balanced layout)
    demo_keys = keys.gather(1, cols)  # (B, P)

    mapping = _ranks(g, B, task.n_values)[:, :K] + K  # (B, K): distinct value tokens, one per key
    demo_values = mapping.gather(1, demo_keys)
    answer = mapping.gather(1, query[:, None])[:, 0]
    T, rows = task.seq_len, torch.arange(B)[:, None]
    # fillers: each picks a gap 0..P (gap j comes before pair j, gap P before "?"); pair j then starts at 2j plus
    # the number of fillers in gaps 0..j
    gap = torch.randint(0, P + 1, (B, task.fillers), generator=g)
    per_gap = torch.zeros(B, P + 1, dtype=torch.long).scatter_add_(1, gap, torch.ones_like(gap))
    key_pos = 2 * slot + per_gap[:, :P].cumsum(1)  # (B, P)
    tokens = torch.full((B, T), task.filler_token)
    tokens[rows, key_pos] = demo_keys
    tokens[rows, key_pos + 1] = demo_values
    tokens[:, -3], tokens[:, -2], tokens[:, -1] = task.query_token, query, answer
    loss_mask = torch.zeros(B, T, dtype=torch.bool)
    loss_mask[rows, key_pos + 1] = True
    loss_mask[:, -1] = True
    earlier = (demo_keys[:, :, None] == demo_keys[:, None, :]) & (slot > slot.T)[None]  # (B, i, j): same key, i < j
    prior = torch.full((B, T), -1, dtype=torch.long)
    prior[rows, key_pos + 1] = earlier.sum(1)
    prior[:, -1] = (demo_keys == query[:, None]).sum(1)
    return RecallBatch(tokens, loss_mask, answer, query, prior[:, -1].clone(), mapping, prior)


def frequency_guess(task: RecallTask, tokens: Tensor, seed: int | torch.Generator = 0) -> Tensor:
    """The frequency heuristic as a predictor: the value shown most often in the demonstrations (ties at random).

    tokens: (B, T) recall sequences -> (B,) guessed value tokens. It never looks at which key a value belongs to:
    the baseline of a model that counts but does not bind (in the balanced layout, shots / n_pairs). With 0 shots
    it guesses a value that was shown, so it is always wrong there.
    """
    g = _generator(seed)
    context = tokens[:, :-1]  # everything but the answer
    shown = (context >= task.n_keys) & (context < task.query_token)
    values = torch.where(shown, context - task.n_keys, 0)
    counts = torch.zeros(tokens.shape[0], task.n_values).scatter_add_(1, values, shown.float())
    noise = torch.rand(counts.shape, generator=g) * 0.5  # < 1: breaks ties only
    return (counts + noise).argmax(1) + task.n_keys


@torch.no_grad()
def accuracy_by_shots(
    model: PaLM,
    task: RecallTask,
    shots: Sequence[int] = (0, 1, 2, 4, 8),
    *,
    layout: str = "random",
    n: int = 512,
    seed: int = 1234,
    batch_size: int = 256,
) -> dict[int, float]:
    """Accuracy on the query's answer (argmax over the whole vocabulary) for each number of shots.

    Uses ``n`` fresh sequences per count, drawn with ``seed`` (a different seed from training's, though every
    sequence is new anyway: the mapping is random). Chance is ``1 / n_values``.
    """
    was_training = model.training
    model.eval()
    out = {}
    try:
        g = torch.Generator().manual_seed(seed)
        for k in shots:
            right = 0
            for start in range(0, n, batch_size):
                b = recall_batch(task, min(batch_size, n - start), int(k), layout=layout, seed=g)
                logits = model(b.tokens[:, :-1].to(model.device))[:, -1]
                right += (logits.argmax(-1).cpu() == b.answer).sum().item()
            out[int(k)] = right / n
    finally:
        model.train(was_training)
    return out


@torch.no_grad()
def induction_scores(model: PaLM, tokens: Tensor, n_keys: int) -> tuple[Tensor, Tensor]:
    """How much each head behaves like an induction head and like a previous-token head.

    tokens: (B, T) recall sequences. Returns two (n_layers, n_heads) tensors in [0, 1]:

    * induction: at every key position whose key appeared before, the attention mass on the positions right
      after the earlier occurrences (where that key's value sits), averaged over such positions;
    * previous token: the attention mass on position t-1, averaged over t >= 1.

    In a trained 2-layer model a layer-0 head scores high on the second and a layer-1 head on the first.
    """
    maps = model.attention_maps(tokens.to(model.device)).cpu()  # (L, B, H, T, T)
    T = tokens.shape[1]
    is_key = tokens < n_keys  # (B, T)
    after = torch.zeros(tokens.shape[0], T, T, dtype=torch.bool)  # (B, t, s)
    # s is "right after an earlier occurrence of token t": tokens[s-1] == tokens[t] and s-1 < t
    same = tokens[:, :, None] == tokens[:, None, :]  # (B, t, s-1)
    before = torch.ones(T, T, dtype=torch.bool).tril(-1)  # s-1 < t
    after[:, :, 1:] = (same & before[None])[:, :, :-1]
    target = after & is_key[:, :, None]
    rows = target.any(-1)  # (B, t): key positions that have an earlier occurrence
    mass = (maps * target[None, :, None]).sum(-1)  # (L, B, H, t)
    induction = (mass * rows[None, :, None]).sum((1, 3)) / rows.sum().clamp(min=1)
    previous = maps.diagonal(offset=-1, dim1=-2, dim2=-1).mean((1, 3))  # (L, H): A[t, t-1] averaged
    return induction, previous


def train_incontext(
    task: RecallTask,
    config: PaLMConfig,
    steps: int,
    *,
    batch_size: int = 64,
    lr: float = 2e-3,
    layout: str = "random",
    train_shots: Sequence[int] | None = None,
    eval_every: int | None = None,
    eval_shots: Sequence[int] = (0, 1, 2, 4, 8),
    eval_n: int = 256,
    seed: int = 0,
    probe: Callable[[PaLM], Any] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[PaLM, TaskHistory]:
    """Train a fresh PaLM of ``config`` on recall sequences; returns the model and its history.

    Each step draws a batch of ``layout``; ``train_shots`` (default: every count 0..n_pairs allowed by the layout)
    sets the query's shots. Every ``eval_every`` steps the history records ``{"random": accuracy_by_shots(...),
    "balanced": ...}`` on ``eval_n`` sequences per count (balanced only for the counts that layout allows), so the
    phase change and the frequency-free control come out of one run. ``probe(model)``, if given, runs at the same
    steps and its result is recorded under ``"probe"`` (e.g. the attention maps of one sequence, to watch the
    induction head form). The model trains on ``device``; batches are drawn on the CPU and moved.
    """
    if config.vocab_size < task.vocab_size or config.max_seq_len < task.seq_len - 1:
        raise ValueError(
            f"config must fit the task: vocab_size >= {task.vocab_size} and max_seq_len >= {task.seq_len - 1}; "
            "build it with task.config(...)"
        )
    P = task.n_pairs
    if train_shots is None:
        train_shots = [k for k in range(P + 1) if layout == "random" or k == 0 or P % k == 0]
    torch.manual_seed(seed)
    model = PaLM(config).to(device)
    g = torch.Generator().manual_seed(seed)
    balanced_shots = [k for k in eval_shots if (k > 0 and P % k == 0) or (k == 0 and task.n_keys > P)]

    def sample(step: int) -> tuple[Tensor, Tensor]:
        b = recall_batch(task, batch_size, train_shots, layout=layout, seed=g)
        return b.tokens, b.loss_mask

    def evaluate(m: PaLM) -> dict[str, Any]:
        out: dict[str, Any] = {
            "random": accuracy_by_shots(m, task, eval_shots, layout="random", n=eval_n, seed=seed + 1),
            "balanced": accuracy_by_shots(m, task, balanced_shots, layout="balanced", n=eval_n, seed=seed + 2),
        }
        if probe is not None:
            out["probe"] = probe(m)
        return out

    history = train_on_task(
        model, sample, steps, lr=lr, eval_every=eval_every, evaluate=evaluate if eval_every else None
    )
    return model, history
