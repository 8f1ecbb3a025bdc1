"""palmbook: PaLM (Pathways Language Model), built chapter by chapter, as a book and a PyTorch package.

The public API lives here and only here; everything else is an implementation detail.
"""

__version__ = "0.1.0"

from .config import PaLMConfig
from .data import Batches, lm_blocks, load_corpus, pack, shakespeare, tokenize
from .flops import flops_per_token, measure_matmul_peak, memory_estimate, mfu
from .generate import generate
from .loss import LMLoss, lm_loss, perplexity
from .model import KVCache, PaLM
from .optim import LRSchedule, PaLMAdafactor, cosine_lr, lr_curve, palm_lr
from .pretrained import available_pretrained, pretrained
from .profiles import Profile, profile
from .tokenizer import Tokenizer
from .train import Callback, TrainConfig, Trainer, TrainResult, evaluate_lm, load_metrics, prepare_lm_data, train

__all__ = [
    "Batches",
    "Callback",
    "KVCache",
    "LMLoss",
    "LRSchedule",
    "PaLM",
    "PaLMAdafactor",
    "PaLMConfig",
    "Profile",
    "Tokenizer",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "__version__",
    "available_pretrained",
    "cosine_lr",
    "evaluate_lm",
    "flops_per_token",
    "generate",
    "lm_blocks",
    "lm_loss",
    "load_corpus",
    "load_metrics",
    "lr_curve",
    "measure_matmul_peak",
    "memory_estimate",
    "mfu",
    "pack",
    "palm_lr",
    "perplexity",
    "prepare_lm_data",
    "pretrained",
    "profile",
    "shakespeare",
    "tokenize",
    "train",
]
