"""Applications from scratch: the teaching versions built in chapter 12 (``book/12_applications.ipynb``).

    continuation_logprob   log p(answer | prompt) read off the logits one position at a time: the definition that
                           ``palmbook.evaluate.score_continuations`` computes in batches
    NGramLM                the baseline of text generation: a unigram or an interpolated bigram model over the
                           same tokens, returning log-probabilities in the (B, T, V) shape a PaLM returns logits in
    layer_states /         a PaLM's forward pass cut in two: the states after the first k blocks, and the rest
    top_states             (the remaining blocks and the final norm); joined they are ``model.hidden``
    mean_pool              one vector per sequence: the average of its hidden states over its real tokens
    macro_f1               macro-F1 from the confusion matrix, fast enough to recompute on 1,000 bootstrap
                           resamples (scikit-learn's ``f1_score(average="macro")`` gives the same number)
    PooledClassifier       a classification head on a PaLM: its top blocks (copied, trainable, dropout 0.1 as in
                           the paper's fine-tuning, §5), the final norm, mean pooling and a linear layer, which
                           can start from a fitted linear probe (LP-FT)
    finetune_classifier    the short loop that fine-tunes it (cross-entropy, AdamW, clipping)
    target_collate         a batch of (prompt + target) sequences as inputs and targets, the prompt's and the
                           padding's targets set to -100, the index the loss ignores
    train_on_targets       language-model training where only the target part of each sequence counts in the
                           loss (the paper's fine-tuning of generation tasks, §6.6)

Shapes: B batch, T positions, d model width, V vocabulary, C classes.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..loss import lm_loss
from ..optim import cosine_lr

__all__ = [
    "NGramLM",
    "PooledClassifier",
    "continuation_logprob",
    "finetune_classifier",
    "layer_states",
    "macro_f1",
    "mean_pool",
    "pad_batch",
    "target_collate",
    "top_states",
    "train_on_targets",
]


# ============================================================================================ likelihood of an answer
@torch.no_grad()
def continuation_logprob(model: nn.Module, context: Sequence[int], continuation: Sequence[int]) -> float:
    """log p(continuation | context) = sum over the continuation's tokens of log p(token | everything before it).

    The logits at position t are the model's prediction for token t + 1, so the continuation's tokens, which sit
    at positions len(context) .. len(context) + len(continuation) - 1, are read at the positions one before.
    """
    ids = list(context) + list(continuation)
    logits = model(torch.tensor([ids[:-1]]))[0]  # (T - 1, V): row t predicts ids[t + 1]
    logp = torch.log_softmax(logits.double(), dim=-1)
    return sum(logp[t - 1, ids[t]].item() for t in range(len(context), len(ids)))


# ============================================================================================ n-gram baseline
class NGramLM(nn.Module):
    """A unigram (order 1) or bigram (order 2) language model over token ids.

    Unigram: p(b) = (count(b) + 1) / (N + V) (add-one, so no token has probability 0).
    Bigram, interpolated: p(b | a) = lam * count(a, b) / count(a) + (1 - lam) * p_unigram(b), with lam chosen
    on a slice of the TRAINING stream held out from the counts (never on the evaluation text).
    ``forward(idx)`` returns log p(next | idx) for every position: (B, T) -> (B, T, V), like a PaLM's logits.
    """

    def __init__(self, log_probs: Tensor, order: int, lam: float | None = None) -> None:
        super().__init__()
        self.order, self.lam = order, lam
        self.register_buffer("log_probs", log_probs)  # (V,) for order 1, (V, V) for order 2: row a = p(. | a)

    @classmethod
    def fit(cls, ids: Tensor, vocab_size: int, order: int = 2, dev_fraction: float = 0.05) -> NGramLM:
        """Count a 1-D stream of token ids (the training text, documents joined by end-of-document)."""
        if order not in (1, 2):
            raise ValueError(f"order must be 1 (unigram) or 2 (bigram); got {order}")
        ids = torch.as_tensor(ids, dtype=torch.long).flatten()
        if order == 1:
            return cls(cls._unigram(ids, vocab_size).log(), 1)
        cut = int(len(ids) * (1 - dev_fraction))
        head, dev = ids[:cut], ids[cut:]
        pairs, unigram = cls._counts(head, vocab_size)
        a, b = dev[:-1], dev[1:]
        rows = pairs.sum(1)[a]
        mle, uni = pairs[a, b] / rows.clamp(min=1), unigram[b]

        def dev_nll(lam: float) -> float:  # the dev slice's mean -log p under weight lam
            return -torch.where(rows > 0, lam * mle + (1 - lam) * uni, uni).log().mean().item()

        lam = min((i / 20 for i in range(1, 20)), key=dev_nll)
        return cls(cls._bigram(*cls._counts(ids, vocab_size), lam).log(), 2, lam)

    @staticmethod
    def _unigram(ids: Tensor, vocab_size: int) -> Tensor:
        return (torch.bincount(ids, minlength=vocab_size).double() + 1) / (len(ids) + vocab_size)

    @classmethod
    def _counts(cls, ids: Tensor, vocab_size: int) -> tuple[Tensor, Tensor]:
        """Bigram counts (V, V), row a = how often each token followed a; and the add-one unigram (V,)."""
        pairs = torch.bincount(ids[:-1] * vocab_size + ids[1:], minlength=vocab_size**2).double()
        return pairs.view(vocab_size, vocab_size), cls._unigram(ids, vocab_size)

    @staticmethod
    def _bigram(pairs: Tensor, unigram: Tensor, lam: float) -> Tensor:
        rows = pairs.sum(1, keepdim=True)
        mle = pairs / rows.clamp(min=1)  # an unseen a has an all-zero row: only the unigram term remains
        lam_a = torch.where(rows > 0, lam, 0.0)
        return (lam_a * mle + (1 - lam_a) * unigram).float()

    def forward(self, idx: Tensor) -> Tensor:
        if self.order == 1:
            return self.log_probs.expand(*idx.shape, -1)
        return self.log_probs[idx]

    @torch.no_grad()
    def generate(self, idx: Tensor, max_new_tokens: int, *, seed: int = 0) -> Tensor:
        """Sample continuations (B, T) -> (B, T + max_new_tokens), one token from p(. | last token) at a time."""
        g = torch.Generator(device=idx.device).manual_seed(seed)
        for _ in range(max_new_tokens):
            probs = self(idx[:, -1:])[:, -1].exp()
            idx = torch.cat([idx, torch.multinomial(probs, 1, generator=g)], dim=1)
        return idx


# ============================================================================================ hidden states
def layer_states(model: nn.Module, idx: Tensor, n_blocks: int) -> Tensor:
    """The residual stream after the first ``n_blocks`` blocks: (B, T) ids -> (B, T, d) (0: the embeddings)."""
    T = idx.shape[1]
    x = model.embed(idx)
    for i, block in enumerate(model.blocks[:n_blocks]):
        x = block(x, model.rope_cos[:T], model.rope_sin[:T], None, i, 0)
    return x


def top_states(model: nn.Module, x: Tensor, start: int) -> Tensor:
    """Blocks ``start`` .. L-1 and the final norm on states from :func:`layer_states`: (B, T, d) -> (B, T, d)."""
    T = x.shape[1]
    for i, block in enumerate(model.blocks[start:], start):
        x = block(x, model.rope_cos[:T], model.rope_sin[:T], None, i, 0)
    return model.norm_f(x)


def mean_pool(h: Tensor, mask: Tensor) -> Tensor:
    """Average of h (B, T, d) over the positions where mask (B, T) is True -> (B, d)."""
    m = mask.to(h.dtype).unsqueeze(-1)
    return (h * m).sum(1) / m.sum(1).clamp(min=1)


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[Tensor, Tensor]:
    """Right-pad token lists into ids (B, T) and a mask (B, T) that is True on real tokens."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = True
    return ids, mask


def macro_f1(true: Sequence[int], pred: Sequence[int], n_classes: int) -> float:
    """The mean over classes of F1 = 2 TP / (the class's true count + its predicted count).

    That is the harmonic mean of precision TP / predicted and recall TP / true, simplified; a class that is
    neither true nor predicted anywhere scores 0, as in scikit-learn. true, pred: class numbers 0 .. n_classes - 1.
    """
    t, p = torch.as_tensor(true, dtype=torch.long), torch.as_tensor(pred, dtype=torch.long)
    c = torch.bincount(t * n_classes + p, minlength=n_classes**2).view(n_classes, n_classes).double()
    return (2 * c.diag() / (c.sum(0) + c.sum(1)).clamp(min=1)).mean().item()


# ============================================================================================ classification head
class PooledClassifier(nn.Module):
    """Classify a sequence from a PaLM: its top ``n_blocks`` blocks, final norm, mean pooling, a linear head.

    The blocks and norm are COPIED from ``model`` (the original is left untouched) and stay trainable; the
    blocks below them are frozen, so their output can be computed once (:func:`layer_states`) and fed to
    ``forward``. Dropout ``dropout`` on the copied blocks' residual branches and attention, as the paper uses for
    fine-tuning (0.1, §5). The head has a bias, unlike PaLM's own layers: it is a new layer trained from zero.
    """

    def __init__(self, model: nn.Module, n_classes: int, n_blocks: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        L = len(model.blocks)
        if not 0 <= n_blocks <= L:
            raise ValueError(f"n_blocks must be between 0 and the model's {L} layers; got {n_blocks}")
        self.start = L - n_blocks
        self.blocks = copy.deepcopy(model.blocks[self.start :])
        for block in self.blocks:
            block.dropout = dropout
        self.norm_f = copy.deepcopy(model.norm_f)
        self.register_buffer("rope_cos", model.rope_cos.clone(), persistent=False)
        self.register_buffer("rope_sin", model.rope_sin.clone(), persistent=False)
        self.head = nn.Linear(model.config.d_model, n_classes)
        nn.init.zeros_(self.head.weight)  # start from "no preference": every class scores 0
        nn.init.zeros_(self.head.bias)

    @torch.no_grad()
    def init_head(
        self, coef: Tensor, intercept: Tensor, mean: Tensor | None = None, scale: Tensor | None = None
    ) -> None:
        """Start the head from a fitted linear probe (the "LP" of LP-FT, Kumar et al. 2022, arXiv 2202.10054).

        The probe scores classes as ``coef @ ((pooled - mean) / scale) + intercept`` (a standardiser then a
        logistic regression, as scikit-learn fits them): coef (C, d), intercept (C,), mean and scale (d,). With two
        classes scikit-learn keeps one row, the score of the second class against the first: it becomes
        logits (0, score), which give the same softmax probabilities.
        """
        coef, intercept = torch.as_tensor(coef).float(), torch.as_tensor(intercept).float().reshape(-1)
        if coef.shape[0] == 1 and self.head.out_features == 2:
            coef = torch.cat([torch.zeros_like(coef), coef])
            intercept = torch.cat([torch.zeros_like(intercept), intercept])
        if coef.shape != self.head.weight.shape:
            need = tuple(self.head.weight.shape)
            raise ValueError(f"the probe has coefficients {tuple(coef.shape)}; the head needs {need}")
        scale = torch.ones(coef.shape[1]) if scale is None else torch.as_tensor(scale).float()
        mean = torch.zeros(coef.shape[1]) if mean is None else torch.as_tensor(mean).float()
        w = coef / scale
        self.head.weight.copy_(w)
        self.head.bias.copy_(intercept - w @ mean)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x: (B, T, d) states after block ``start`` - 1; mask (B, T) real tokens -> class logits (B, C)."""
        T = x.shape[1]
        for i, block in enumerate(self.blocks, self.start):
            x = block(x, self.rope_cos[:T], self.rope_sin[:T], None, i, 0)
        return self.head(mean_pool(self.norm_f(x), mask))


def finetune_classifier(
    clf: nn.Module,
    x: Tensor,
    mask: Tensor,
    labels: Tensor,
    *,
    steps: int,
    batch_size: int = 16,
    lr: float = 1e-4,
    head_lr: float = 1e-3,
    class_weight: Tensor | None = None,
    seed: int = 0,
) -> list[float]:
    """Fine-tune ``clf`` on (x, mask, labels) with cross-entropy: AdamW, gradient clipping at 1.0.

    The pretrained blocks get ``lr``, the new head the larger ``head_lr`` (it starts from nothing); batches are
    drawn with ``torch.Generator().manual_seed(seed)``. ``class_weight`` (C,) reweights the loss (e.g. balanced
    classes). Returns the loss of each step. Leaves ``clf`` in eval mode.
    """
    head = [p for n, p in clf.named_parameters() if n.startswith("head.")]
    body = [p for n, p in clf.named_parameters() if not n.startswith("head.")]
    opt = torch.optim.AdamW([{"params": body, "lr": lr}, {"params": head, "lr": head_lr}], weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    clf.train()
    losses = []
    for _ in range(steps):
        rows = torch.randint(0, x.shape[0], (batch_size,), generator=g)
        loss = F.cross_entropy(clf(x[rows], mask[rows]), labels[rows], weight=class_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(clf.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    clf.eval()
    return losses


# ============================================================================================ sequence-to-sequence
def target_collate(sequences: Sequence[Sequence[int]], starts: Sequence[int], pad_id: int = 0) -> tuple[Tensor, Tensor]:
    """(prompt + target) token lists -> inputs (B, T - 1) and targets (B, T - 1), T the longest sequence.

    Right-padded with ``pad_id``; targets are the inputs shifted by one, with -100 (the index the loss ignores)
    wherever the token to predict is part of the prompt (before ``starts[i]``) or padding.
    """
    if len(sequences) != len(starts):
        raise ValueError(f"need one start per sequence; got {len(sequences)} and {len(starts)}")
    ids, mask = pad_batch(sequences, pad_id)
    targets = ids[:, 1:].clone()
    for j, start in enumerate(starts):
        targets[j, : start - 1] = -100  # position t predicts token t + 1: the first target token is read at start - 1
    targets[~mask[:, 1:]] = -100
    return ids[:, :-1], targets


def train_on_targets(
    model: nn.Module,
    sequences: Sequence[Sequence[int]],
    starts: Sequence[int],
    *,
    steps: int,
    batch_size: int = 32,
    lr: float = 3e-3,
    warmup_steps: int | None = None,
    pad_id: int = 0,
    seed: int = 0,
) -> list[float]:
    """Train a language model on (prompt + target) sequences with the loss on the TARGET tokens only.

    ``starts[i]`` is where sequence i's target begins; tokens before it (the prompt) and the padding are given
    the ignore index -100, so they are read but never predicted (the paper's fine-tuning of generation tasks,
    §6.6). AdamW, linear warm-up then cosine decay to lr/10, clipping at 1.0. Returns the loss per step; leaves
    the model in eval mode.
    """
    if len(sequences) != len(starts):
        raise ValueError(f"need one start per sequence; got {len(sequences)} and {len(starts)}")
    warmup = max(1, steps // 10) if warmup_steps is None else warmup_steps
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, lr, warmup, steps)
        rows = torch.randint(0, len(sequences), (batch_size,), generator=g).tolist()
        inputs, targets = target_collate([sequences[r] for r in rows], [starts[r] for r in rows], pad_id)
        loss = lm_loss(model(inputs.to(device)), targets.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            raise FloatingPointError(f"the loss became {losses[-1]} at step {step}; lower lr={lr}")
    model.eval()
    return losses
