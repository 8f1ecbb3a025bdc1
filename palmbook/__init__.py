"""palmbook: PaLM (Pathways Language Model), built chapter by chapter, as a book and a PyTorch package.

The public API lives here and only here; everything else is an implementation detail.
"""

__version__ = "0.1.0"

from .config import PaLMConfig
from .generate import generate
from .loss import LMLoss, lm_loss, perplexity
from .model import KVCache, PaLM
from .pretrained import available_pretrained, pretrained
from .profiles import Profile, profile

__all__ = [
    "KVCache",
    "LMLoss",
    "PaLM",
    "PaLMConfig",
    "Profile",
    "__version__",
    "available_pretrained",
    "generate",
    "lm_loss",
    "perplexity",
    "pretrained",
    "profile",
]
