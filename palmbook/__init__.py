"""palmbook: PaLM (Pathways Language Model), built chapter by chapter, as a book and a PyTorch package.

The public API lives here and only here; everything else is an implementation detail.
"""

__version__ = "0.1.0"

from .config import PaLMConfig
from .data import Batches, lm_blocks, load_corpus, pack, shakespeare, tokenize
from .generate import generate
from .loss import LMLoss, lm_loss, perplexity
from .model import KVCache, PaLM
from .pretrained import available_pretrained, pretrained
from .profiles import Profile, profile
from .tokenizer import Tokenizer

__all__ = [
    "Batches",
    "KVCache",
    "LMLoss",
    "PaLM",
    "PaLMConfig",
    "Profile",
    "Tokenizer",
    "__version__",
    "available_pretrained",
    "generate",
    "lm_blocks",
    "lm_loss",
    "load_corpus",
    "pack",
    "perplexity",
    "pretrained",
    "profile",
    "shakespeare",
    "tokenize",
]
