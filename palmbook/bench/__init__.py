"""``palmbook bench``: palmbook against its peers on one shape, interleaved, with medians, ratios and spreads.

What one run measures, side by side (each round runs every contestant once, A B C A B C ..., the order reversed on
every other round so that a slow drift of the machine hits all of them alike):

- training tokens/s: forward, loss, backward and an AdamW step (the same optimiser for every contestant, so the
  models are compared, not the optimisers); each model uses its own loss (palmbook: cross-entropy + z-loss);
- forward tokens/s: logits for the whole batch, no gradients;
- generation tokens/s: batch 1, a 16-token prompt, 128 new tokens, greedy, each model's own ``generate``;
- peak training memory: every byte of tensors alive during one training step (weights, gradients, optimiser state,
  activations, temporaries), from the profiler's memory timeline on CPU or ``max_memory_allocated`` on CUDA;
- MFU with PaLM's Appendix B count (6 N + 12 L H Q T FLOPs per token, :func:`palmbook.flops.flops_per_token`)
  against the matmul peak measured in the same run (interleaved with the training rounds), and on a GPU also
  against the data-sheet 16-bit peak (:data:`palmbook.flops.PEAK_FLOPS`: bf16, fp16 for the V100 and T4).

The peer is Hugging Face's ``FalconForCausalLM`` set as close to PaLM as Falcon allows: parallel attention and MLP,
multi-query attention, rotary positions, no biases in dense layers, tied embeddings. Its MLP is GELU, so it gets a
6 d hidden width, which has the FLOPs and parameters of a 4 d SwiGLU. lucidrains' ``palm-rlhf-pytorch``
(``pip install palmbook[peers]``) joins when installed.

After the comparison come memory facts (KV-cache bytes per token measured for multi-query and multi-head attention
and computed at 540B; activation memory with and without checkpointing). Other modes: ``--bf16-curve`` (float32 and
bf16 autocast trained side by side from one initialisation on the same batches: speed ratio and the two loss curves'
deviation), ``--gpu-mfu`` (one GPU: a ~1B PaLM at sequence 2048 with bf16, torch.compile, flash attention and fused
AdamW).

    shapes.py        BenchShape, the REFERENCE and QUICK shapes, --shape parsing, the token batches
    contestants.py   palmbook, HF Falcon and palm-rlhf-pytorch, each as train / forward / generate callables
    measure.py       interleaved rounds, statistics, memory tracing, weight reads, run_bench
    experiments.py   memory_facts, bf16_curve, gpu_mfu
    report.py        the text tables and the JSON file
The command line is :mod:`palmbook.cli.bench`.
"""

from .contestants import Contestant
from .experiments import bf16_curve, gpu_mfu, memory_facts
from .measure import (
    MemoryTrace,
    Stat,
    interleaved,
    paired_ratios,
    peak_step_memory,
    read_every_weight,
    run_bench,
    trace_memory,
)
from .report import format_bf16_curve, format_gpu_mfu, format_memory_facts, format_results, write_json
from .shapes import QUICK, REFERENCE, BenchShape, parse_shape

__all__ = [
    "QUICK",
    "REFERENCE",
    "BenchShape",
    "Contestant",
    "MemoryTrace",
    "Stat",
    "bf16_curve",
    "format_bf16_curve",
    "format_gpu_mfu",
    "format_memory_facts",
    "format_results",
    "gpu_mfu",
    "interleaved",
    "memory_facts",
    "paired_ratios",
    "parse_shape",
    "peak_step_memory",
    "read_every_weight",
    "run_bench",
    "trace_memory",
    "write_json",
]
