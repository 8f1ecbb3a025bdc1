"""From-scratch teaching versions of what the chapters build, kept in the package so tests cover them.

One module per chapter topic, imported by name (``from palmbook.scratch import attention as S``); nothing is
imported here, so ``import palmbook`` stays light. Timing, machine facts, source display and widget HTML are
plumbing, not teaching: they live in :mod:`palmbook.book`.
"""

__all__ = [
    "activation_memory",
    "applications",
    "attention",
    "autograd",
    "backprop",
    "efficiency",
    "embeddings",
    "feed_forward",
    "loss",
    "sampling",
    "scaling",
    "tokenization",
    "training",
]
