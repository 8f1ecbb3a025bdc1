"""palmbook: PaLM (Pathways Language Model), built chapter by chapter, as a book and a PyTorch package.

The public API lives here and only here; everything else is an implementation detail.

Four names here are functions that share a name with their module: ``palmbook.train``, ``palmbook.generate``,
``palmbook.pretrained`` and ``palmbook.shakespeare`` are the functions (the API). Their modules stay importable
by name: ``from palmbook.train import Trainer`` or ``importlib.import_module("palmbook.train")`` (but not
``import palmbook.train as m``, which Python resolves to the attribute, the function).
"""

__version__ = "0.1.0"

from .arithmetic import addition_batch, cot_accuracy, train_arithmetic
from .book.profiles import Profile, profile
from .config import PaLMConfig, TrainConfig
from .data import Batches, lm_blocks, load_corpus, pack, prepare_lm_data, tokenize
from .evaluate import (
    ClassificationReport,
    accuracy_interval,
    bleu,
    choose,
    classification_report,
    evaluate_lm,
    exact_match,
    generate_batched,
    lm_perplexity,
    score_continuations,
)
from .flops import flops_per_token, measure_matmul_peak, memory_estimate, mfu
from .generate import generate
from .incontext import RecallTask, accuracy_by_shots, induction_scores, recall_batch, train_incontext
from .loss import LMLoss, fused_lm_loss, lm_loss, perplexity
from .model import KVCache, PaLM
from .optim import LRSchedule, PaLMAdafactor, cosine_lr, lr_curve, palm_lr
from .pretrained import available_pretrained, pretrained
from .scaling_law import PowerLawFit, fit_power_law
from .shakespeare import shakespeare
from .task_training import masked_accuracy, train_on_task
from .tasks import genre_passages, number_translation, sentiment_lines, speaker_questions
from .tokenizer import Tokenizer
from .train import Callback, Trainer, TrainResult, load_metrics, train

__all__ = [
    "Batches",
    "Callback",
    "ClassificationReport",
    "KVCache",
    "LMLoss",
    "LRSchedule",
    "PaLM",
    "PaLMAdafactor",
    "PaLMConfig",
    "PowerLawFit",
    "Profile",
    "RecallTask",
    "Tokenizer",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "__version__",
    "accuracy_by_shots",
    "accuracy_interval",
    "addition_batch",
    "available_pretrained",
    "bleu",
    "choose",
    "classification_report",
    "cosine_lr",
    "cot_accuracy",
    "evaluate_lm",
    "exact_match",
    "fit_power_law",
    "flops_per_token",
    "fused_lm_loss",
    "generate",
    "generate_batched",
    "genre_passages",
    "induction_scores",
    "lm_blocks",
    "lm_loss",
    "lm_perplexity",
    "load_corpus",
    "load_metrics",
    "lr_curve",
    "masked_accuracy",
    "measure_matmul_peak",
    "memory_estimate",
    "mfu",
    "number_translation",
    "pack",
    "palm_lr",
    "perplexity",
    "prepare_lm_data",
    "pretrained",
    "profile",
    "recall_batch",
    "score_continuations",
    "sentiment_lines",
    "shakespeare",
    "speaker_questions",
    "tokenize",
    "train",
    "train_arithmetic",
    "train_incontext",
    "train_on_task",
]
