"""Making a model smaller and faster, from scratch: the teaching versions built in chapter 13
(``book/13_efficiency.ipynb``).

    quantize_symmetric      a weight matrix W (out, in) -> int8 codes and one scale per output row ("per channel")
                            or one for the whole matrix ("per tensor"), as torch's int8 weight observers compute them
    dequantize              codes x scale: the float matrix the int8 one stands for
    quantize_activations    an input x -> 7-bit unsigned codes, one scale and zero point per call ("dynamic")
    int8_linear             x @ W^T with both quantised: integer products summed in int32, rescaled once at the
                            end; equals ``torch.ao.quantization.quantize_dynamic``'s Linear
    state_bytes             memory held by a model's weights (int8 codes count one byte each)
    saved_bytes             size of the model's state dict serialised by ``torch.save`` (what a file would hold)
    csr_bytes               size of a matrix stored sparse (compressed rows): what pruning would need to save space
    distillation_loss       alpha T^2 KL(teacher_T || student_T) + (1 - alpha) (cross-entropy + z-loss)
                            (Hinton et al., 2015)
    distill                 a short training loop for a student on that loss (alpha = 0: trained alone)
    distill_together        the same loop for several students at once (e.g. several initialisations, for a noise
                            band): they see the same batches, and the teacher runs once per batch for all of them

Timing the variants in turns is plumbing, not the idea: ``palmbook.book.interleaved`` does it for the chapter.

Shapes: W (out_features, in_features) as in ``nn.Linear``; x (..., in_features); logits (B, T, V).
"""

from __future__ import annotations

import contextlib
import io

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..loss import lm_loss

__all__ = [
    "csr_bytes",
    "dequantize",
    "distill",
    "distill_together",
    "distillation_loss",
    "int8_linear",
    "quantize_activations",
    "quantize_symmetric",
    "saved_bytes",
    "state_bytes",
]


# --------------------------------------------------------------------------------------------- quantisation
def quantize_symmetric(w: Tensor, bits: int = 8, per_channel: bool = True) -> tuple[Tensor, Tensor]:
    """Symmetric linear quantisation of a weight matrix w (out, in): returns (codes, scale).

    The codes are integers in [-2^(bits-1), 2^(bits-1) - 1] (int8 for bits <= 8); ``scale`` is (out,) per channel
    (one per output row, i.e. per output feature) or a 0-dim tensor per tensor. Zero maps to code 0 exactly.

        scale = max|w| / ((qmax - qmin) / 2)        the largest magnitude lands on the edge of the code range
        code  = clamp(round(w * (1 / scale)), qmin, qmax)      round half to even, as torch does

    This is torch's ``MinMaxObserver`` / ``PerChannelMinMaxObserver`` with a symmetric qscheme (for 8 bits:
    scale = max|w| / 127.5), so the codes equal those ``quantize_dynamic`` stores.
    """
    if w.dim() != 2:
        raise ValueError(f"expected a weight matrix (out, in); got shape {tuple(w.shape)}")
    if not 2 <= bits <= 16:
        raise ValueError(f"bits must be in 2..16; got {bits}")
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    w = w.detach().float()
    amax = w.abs().amax(dim=1) if per_channel else w.abs().amax()
    scale = torch.clamp(amax / ((qmax - qmin) / 2), min=torch.finfo(torch.float32).eps)
    inv = 1.0 / (scale[:, None] if per_channel else scale)
    codes = torch.clamp(torch.round(w * inv), qmin, qmax)
    return codes.to(torch.int8 if bits <= 8 else torch.int16), scale


def dequantize(codes: Tensor, scale: Tensor) -> Tensor:
    """The float matrix the codes stand for: codes * scale (per row when scale is (out,))."""
    s = scale[:, None] if scale.dim() == 1 else scale
    return codes.float() * s


def quantize_activations(x: Tensor, bits: int = 7) -> tuple[Tensor, float, int]:
    """Asymmetric per-tensor quantisation of an input, computed afresh for each call ("dynamic").

    Codes are in [0, 2^bits - 1]; the range [min(x, 0), max(x, 0)] is mapped onto them, so 0 is exact:
    scale = (max - min) / (2^bits - 1), zero_point = round(-min / scale). Seven bits, not eight, because x86's
    int8 instructions (fbgemm) add pairs of uint8 x int8 products in 16 bits; 7-bit inputs cannot overflow there
    (torch's ``reduce_range``). Returns (codes as int32, scale, zero_point).
    """
    qmax = 2**bits - 1
    lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
    scale = (hi - lo) / qmax if hi > lo else 1.0
    zero_point = int(min(max(round(-lo / scale), 0), qmax))
    codes = torch.clamp(torch.round(x / scale) + zero_point, 0, qmax).to(torch.int32)
    return codes, scale, zero_point


def int8_linear(x: Tensor, codes: Tensor, scale: Tensor) -> Tensor:
    """y = x @ W^T with W given as int8 codes and per-row scales, computed the way an int8 kernel does.

    x is quantised per call (:func:`quantize_activations`); the products of codes are summed exactly in int32;
    one multiplication by scale_x * scale_w per output turns the integer sums back into floats:
        y[o] = scale_x * scale_w[o] * sum_i (xq[i] - zero_point) * codes[o, i]
    """
    xq, sx, zp = quantize_activations(x)
    acc = (xq - zp) @ codes.to(torch.int32).T  # int32: exact, no rounding inside the sum
    return acc.float() * (sx * scale.float())


# --------------------------------------------------------------------------------------------- size
def _tensor_bytes(t: Tensor) -> int:
    if t.is_quantized:
        extra = 0
        if t.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            extra = t.q_per_channel_scales().nbytes + t.q_per_channel_zero_points().nbytes
        return t.int_repr().nbytes + extra
    return t.nbytes


def state_bytes(model: nn.Module) -> int:
    """Bytes of every tensor in the model's state dict (weights, and for int8 modules their codes and scales).

    Tied weights are counted once (the state dict holds them once); non-persistent buffers such as PaLM's RoPE
    tables are left out (they are recomputed from the config).
    """
    total = 0

    def walk(v: object) -> None:
        nonlocal total
        if isinstance(v, Tensor):
            total += _tensor_bytes(v)
        elif isinstance(v, (tuple, list)):
            for item in v:
                walk(item)

    for value in model.state_dict().values():
        walk(value)
    return total


def saved_bytes(model: nn.Module) -> int:
    """Size of ``torch.save(model.state_dict())``, the file that would hold the model (written to memory here).

    torch's format is used because safetensors cannot hold torch's quantised tensors; for float models both formats
    are within a few kilobytes of each other. Nothing here is ever loaded back (loading would unpickle).
    """
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def csr_bytes(w: Tensor, value_bytes: int = 4, index_bytes: int = 4) -> int:
    """Bytes of w (out, in) in compressed sparse row form: each non-zero keeps its value and its column index,
    plus one row pointer per row (+1). Smaller than dense (out * in * value_bytes) only when fewer than
    value_bytes / (value_bytes + index_bytes) of the entries (half, for float32 with int32 indices) are non-zero."""
    nnz = int(torch.count_nonzero(w))
    return nnz * (value_bytes + index_bytes) + (w.shape[0] + 1) * index_bytes


# --------------------------------------------------------------------------------------------- distillation
def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor,
    temperature: float = 2.0,
    alpha: float = 0.5,
    z_loss: float = 1e-4,
) -> Tensor:
    """Knowledge distillation (Hinton, Vinyals & Dean, 2015) for a language model, averaged over tokens.

        p_T = softmax(teacher / T), q_T = softmax(student / T)         both "softened" by the temperature T
        KL  = sum_v p_T[v] (log p_T[v] - log q_T[v])                   how far the student is from the teacher
        loss = alpha T^2 KL + (1 - alpha) lm_loss(student, targets)    lm_loss: cross-entropy + z-loss (§5)

    T^2 keeps the soft term's gradient the same size at any T (its gradient in the student's logits is
    T (q_T - p_T) / N). logits (B, T, V), targets (B, T); the KL is computed in float32.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1] (the weight of the teacher's soft targets); got {alpha}")
    hard = lm_loss(student_logits, targets, z_loss=z_loss) if alpha < 1 else student_logits.new_zeros(())
    if alpha == 0:
        return hard
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = F.kl_div(log_q.flatten(0, -2), log_p.flatten(0, -2), log_target=True, reduction="batchmean")
    return alpha * temperature**2 * kl + (1 - alpha) * hard


def distill(
    student: nn.Module,
    teacher: nn.Module | None,
    blocks: Tensor,
    *,
    steps: int,
    batch_size: int,
    temperature: float = 2.0,
    alpha: float = 0.5,
    lr: float = 3e-3,
    seed: int = 0,
    precision: str = "fp32",
    progress: bool = True,
) -> list[float]:
    """Train ``student`` for ``steps`` steps on :func:`distillation_loss`; returns the loss of each step.

    The recipe of the book's small models: AdamW (lr, weight decay 0.1 on matrices), linear warm-up over the first
    10% of the steps then cosine decay to lr/10, global-norm clipping at 1.0. ``alpha=0`` (no teacher needed)
    trains the same student on the same batches without the teacher: the fair baseline. ``precision="bf16"``
    runs forward passes under bf16 autocast. Blocks are packed rows (N, T + 1); ``seed`` orders the batches.
    """
    return distill_together(
        [student], teacher, blocks, steps=steps, batch_size=batch_size, temperature=temperature, alpha=alpha,
        lr=lr, seed=seed, precision=precision, progress=progress,
    )[0]  # fmt: skip


def distill_together(
    students: list[nn.Module],
    teacher: nn.Module | None,
    blocks: Tensor,
    *,
    steps: int,
    batch_size: int,
    temperature: float = 2.0,
    alpha: float = 0.5,
    lr: float = 3e-3,
    seed: int = 0,
    precision: str = "fp32",
    progress: bool = True,
) -> list[list[float]]:
    """:func:`distill` for several students on the same batches; returns each student's loss per step.

    Each student has its own optimiser and schedule, so each is trained exactly as :func:`distill` would train it
    alone with the same ``seed``; the teacher's forward pass, the dearest part of a step, runs once per batch.
    """
    from tqdm.auto import tqdm

    from ..data import Batches
    from ..optim import LRSchedule, build_optimizer, build_scheduler

    if alpha > 0 and teacher is None:
        raise ValueError("alpha > 0 needs a teacher; pass alpha=0 to train the student alone")
    if not students:
        raise ValueError("need at least one student")
    device = next(students[0].parameters()).device
    batches = Batches(blocks, batch_size, seed=seed)
    optimizers = [build_optimizer(s, "adamw", lr) for s in students]
    schedule = LRSchedule("cosine", lr, warmup_steps=steps // 10, total_steps=steps)
    schedulers = [build_scheduler(o, schedule) for o in optimizers]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    if teacher is not None:
        teacher.eval()
    losses: list[list[float]] = [[] for _ in students]
    for _ in tqdm(range(steps), desc="distill" if alpha > 0 else "alone", disable=not progress):
        x, y = (t.to(device) for t in next(batches))
        teacher_logits = None
        if alpha > 0:
            with torch.no_grad(), autocast:
                teacher_logits = teacher(x)
        for student, optimizer, scheduler, history in zip(students, optimizers, schedulers, losses, strict=True):
            student.train()
            with autocast:
                loss = distillation_loss(student(x), teacher_logits, y, temperature, alpha)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            history.append(loss.item())
    for student in students:
        student.eval()
    return losses
