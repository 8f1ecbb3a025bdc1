"""Chapter 0, What PaLM is: PaLM's place in the family of Transformer language models.

| figure                 | shows                                                                          |
|------------------------|--------------------------------------------------------------------------------|
| ``family_tree_figure`` | the models PaLM builds on and the ones built on it, by date, with their lineage |

``parameter_breakdown`` splits a model's parameters into embedding, attention and MLP by cutting each block's fused
input projection at its boundaries (the numbers behind ``palmbook.viz.parameter_breakdown_figure``).

The facts live in :data:`PALM_FAMILY` (one line per model, with the paper that reports it), so that the chapter's
cell is one call and a correction is made in one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

import plotly.graph_objects as go

from .common import SERIES

if TYPE_CHECKING:
    from torch import nn

__all__ = ["LANES", "PALM_FAMILY", "FamilyMember", "family_tree_figure", "parameter_breakdown"]

LANES = ("encoder-decoder", "encoder only", "GPT line (decoder only)", "PaLM line (Google)")


class FamilyMember(NamedTuple):
    """One model of the family tree: its paper's date, its lane (an index into ``LANES``), its parent, a summary."""

    date: str  # ISO date of the paper or report
    lane: int
    parent: str | None
    summary: str


PALM_FAMILY: dict[str, FamilyMember] = {
    "Transformer": FamilyMember(
        "2017-06-12", 0, None, "Vaswani et al. (arXiv 1706.03762): encoder-decoder, attention only"
    ),
    "BERT": FamilyMember(
        "2018-10-11",
        1,
        "Transformer",
        "Devlin et al. (arXiv 1810.04805): a Transformer encoder, masked-token pre-training",
    ),
    "GPT": FamilyMember(
        "2018-06-11",
        2,
        "Transformer",
        "Radford et al. 2018, OpenAI report 'Improving Language Understanding by Generative Pre-Training' "
        "(dated by OpenAI's announcement): "
        "a decoder-only Transformer, next-token pre-training",
    ),
    "GPT-2": FamilyMember(
        "2019-02-14",
        2,
        "GPT",
        "Radford et al. 2019, OpenAI report 'Language Models are Unsupervised Multitask Learners' "
        "(dated by OpenAI's announcement): "
        "a larger GPT (1.5B parameters) that does tasks zero-shot",
    ),
    "GPT-3": FamilyMember(
        "2020-05-28", 2, "GPT-2", "Brown et al. (arXiv 2005.14165): 175B parameters, few-shot prompting"
    ),
    "PaLM": FamilyMember(
        "2022-04-05",
        3,
        "GPT-3",
        "Chowdhery et al. (arXiv 2204.02311): parallel blocks, multi-query, SwiGLU, RoPE; 540B",
    ),
    "PaLM 2": FamilyMember(
        "2023-05-17", 3, "PaLM", "arXiv 2305.10403: UL2-like mixture of objectives, compute-optimal, multilingual"
    ),
    "Gemini 1.0": FamilyMember(
        "2023-12-19", 3, "PaLM 2", "arXiv 2312.11805: multimodal; Transformer decoders, multi-query attention"
    ),
    "Gemma": FamilyMember(
        "2024-03-13",
        3,
        "Gemini 1.0",
        "arXiv 2403.08295: open weights; RoPE, tied embeddings, head 256; multi-query in Gemma 2B, multi-head in 7B",
    ),
}

# Label positions that keep the names of nearby points apart.
_LABEL_AT = {"PaLM 2": "bottom center", "Gemini 1.0": "top center", "Gemma": "bottom center"}


def family_tree_figure(
    family: Mapping[str, FamilyMember] = PALM_FAMILY,
    lanes: Sequence[str] = LANES,
    highlight: str = "PaLM",
) -> go.Figure:
    """One point per model at its date, in its lane; a grey line from each model to the one it builds on.

    Hovering a point shows the model's summary. ``highlight`` is drawn in red.
    """
    for name, member in family.items():
        if member.parent is not None and member.parent not in family:
            raise ValueError(f"{name!r} builds on {member.parent!r}, which is not in the family: add it first")
        if not 0 <= member.lane < len(lanes):
            raise ValueError(f"{name!r} is in lane {member.lane}; there are {len(lanes)} lanes")
    fig = go.Figure()
    for member in family.values():
        if member.parent:
            parent = family[member.parent]
            fig.add_scatter(
                x=[parent.date, member.date],
                y=[lanes[parent.lane], lanes[member.lane]],
                mode="lines",
                line=dict(color="#bbb"),
                hoverinfo="skip",
            )
    fig.add_scatter(
        x=[m.date for m in family.values()],
        y=[lanes[m.lane] for m in family.values()],
        text=list(family),
        customdata=[m.summary for m in family.values()],
        mode="markers+text",
        textposition=[_LABEL_AT.get(name, "top center") for name in family],
        marker=dict(size=14, color=["#d62728" if name == highlight else SERIES[0] for name in family]),
        hovertemplate="<b>%{text}</b> (%{x|%b %Y})<br>%{customdata}<extra></extra>",
    )
    fig.update_layout(
        title="From the Transformer to Gemma",
        showlegend=False,
        height=420,
        yaxis=dict(categoryorder="array", categoryarray=list(lanes), range=[-0.5, len(lanes) - 0.5]),
        xaxis=dict(range=["2016-12-01", "2025-01-01"]),
    )
    return fig


def parameter_breakdown(model: nn.Module) -> dict[str, int]:
    """Parameters of a ``palmbook.PaLM`` by component: embedding, attention, MLP (LayerNorm scales left out).

    Each block's fused ``in_proj`` weight is cut at its boundaries. ``nn.Linear`` stores a ``d -> F`` matrix as
    ``(F, d)``, so the paper's columns [queries | key | value | gate | up] are the stored tensor's rows: the first
    ``H*h + 2h`` rows belong to attention, the remaining ``2 * d_ff`` to the MLP. Works on the meta device.
    """
    c = model.config
    parts = {"embedding": 0, "attention": 0, "MLP": 0}
    for name, p in model.named_parameters():
        if name == "embed.weight":
            parts["embedding"] += p.numel()
        elif name.endswith("in_proj.weight"):
            attention_rows, mlp_rows = p.split([c.qkv_dim, 2 * c.d_ff], dim=0)
            parts["attention"] += attention_rows.numel()
            parts["MLP"] += mlp_rows.numel()
        elif name.endswith("attn_out.weight"):
            parts["attention"] += p.numel()
        elif name.endswith("ffn_out.weight"):
            parts["MLP"] += p.numel()
    if sum(parts.values()) != model.num_parameters(include_norms=False):
        raise ValueError("the model holds matrices this breakdown does not know: not a palmbook.PaLM?")
    return parts
