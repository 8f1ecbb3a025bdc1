"""Chapter 1, tokenization: where a text's token boundaries fall, and what kind of piece each token is.

| name                 | shows                                                                         |
|----------------------|-------------------------------------------------------------------------------|
| ``token_spans_html`` | a text as coloured token boxes (HTML, hover for the id)                       |
| ``token_grid_figure``| several texts as grids of cells coloured by kind, a menu to pick the text     |
| ``TOKEN_KINDS``      | the kinds a piece can be: letters after a space, letters, digit, ...          |
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import plotly.graph_objects as go

from .common import one_at_a_time, printable_piece

__all__ = ["TOKEN_KINDS", "token_grid_figure", "token_spans_html"]

TOKEN_KINDS = ("letters after a space", "letters", "digit", "punctuation", "space / newline", "byte (fallback)")
_KIND_COLOURS = ("#8ecae6", "#d8e9a8", "#ffb703", "#cdb4db", "#e5e5e5", "#fb8500")
_PASTELS = ("#fde2e4", "#dbe7f5", "#e2f0cb", "#fff1c1", "#e8dff5", "#d7f2ee")


def _token_kind(piece: str, is_byte: bool) -> str:
    """One of :data:`TOKEN_KINDS` for a SentencePiece piece (its text with "▁" for a space)."""
    if is_byte:
        return "byte (fallback)"
    text = piece.replace("\u2581", "")
    if not text or text.isspace():
        return "space / newline"
    if text.isdigit():
        return "digit"
    if not any(c.isalnum() for c in text):
        return "punctuation"
    return "letters after a space" if piece.startswith("\u2581") else "letters"


def token_spans_html(pieces: Sequence[str], ids: Sequence[int] | None = None, byte_ids: Sequence[bool] = ()) -> str:
    """The token boundaries of a text as HTML: one coloured box per token, in reading order.

    pieces: the tokens as SentencePiece prints them ("▁" for a space, "<0xE6>" for a byte piece); ids: their ids,
    shown on hover; byte_ids: for each token whether it is a byte-fallback piece (default: pieces named <0x..>).
    Neighbouring tokens get different colours; byte pieces get an orange dashed frame. Newlines break the line.
    """
    if ids is not None and len(ids) != len(pieces):
        raise ValueError(f"need one id per piece; got {len(pieces)} pieces and {len(ids)} ids")
    if not byte_ids:
        byte_ids = [p.startswith("<0x") and p.endswith(">") for p in pieces]
    spans = []
    for i, piece in enumerate(pieces):
        hover = html.escape(f"#{i}" + (f" id {ids[i]}" if ids is not None else "") + f": {piece!r}", quote=True)
        if byte_ids[i]:
            style = "border:1px dashed #fb8500;background:#fff3e0;font-size:0.8em"
            label = html.escape(piece[1:-1])  # "0xE6"
        else:
            style = f"background:{_PASTELS[i % len(_PASTELS)]}"
            label = html.escape(piece).replace("\u2581", '<span style="color:#999">\u2581</span>')
            label = label.replace("\t", '<span style="color:#999">\u21e5</span>')
            label = label.replace("\n", '<span style="color:#999">\u21b5</span>')
        spans.append(
            f'<span title="{hover}" style="{style};padding:1px 2px;margin:1px;border-radius:3px">{label}</span>'
        )
        if piece == "\n" or piece.endswith("\n"):
            spans.append("<br>")
    return (
        '<div style="font-family:monospace;line-height:2.1;font-size:0.95em;word-break:break-all">'
        + "".join(spans)
        + f'<div style="color:#666;font-size:0.85em">{len(pieces)} tokens; hover a token for its id</div></div>'
    )


def token_grid_figure(
    examples: dict[str, tuple[Sequence[str], Sequence[int], Sequence[bool]]], columns: int = 12
) -> go.Figure:
    """Several texts cut into tokens, one grid of coloured cells per text, with a dropdown to pick the text.

    examples: {name: (pieces, ids, is_byte)}. Each cell is one token, read left to right, top to bottom, coloured
    by kind (:data:`TOKEN_KINDS`); hovering shows its position, id, piece and UTF-8 bytes. Works without a kernel:
    the dropdown only switches which grid is visible.
    """
    if not examples:
        raise ValueError("examples is empty: give at least one {name: (pieces, ids, is_byte)}")
    kind_index = {k: i for i, k in enumerate(TOKEN_KINDS)}
    n = len(TOKEN_KINDS)
    # A discrete colour scale: kind i fills the band [i/n, (i+1)/n].
    scale = [c for i, col in enumerate(_KIND_COLOURS) for c in ([i / n, col], [(i + 1) / n, col])]
    fig = go.Figure()
    titles, max_rows = [], 1
    for k, (name, (pieces, ids, is_byte)) in enumerate(examples.items()):
        rows = max(1, math.ceil(len(pieces) / columns))
        max_rows = max(max_rows, rows)
        z = [[None] * columns for _ in range(rows)]
        text = [[""] * columns for _ in range(rows)]
        hover = [[""] * columns for _ in range(rows)]
        for i, (piece, tid, byte) in enumerate(zip(pieces, ids, is_byte, strict=True)):
            r, c = divmod(i, columns)
            kind = _token_kind(piece, byte)
            z[r][c] = kind_index[kind] + 0.5
            text[r][c] = printable_piece(piece)
            raw = bytes([int(piece[3:5], 16)]) if byte else piece.replace("\u2581", " ").encode("utf-8")
            hover[r][c] = f"#{i} id {tid} {printable_piece(piece)!r}<br>{kind}<br>UTF-8: {raw.hex(' ').upper()}"
        fig.add_heatmap(
            z=z,
            text=text,
            customdata=hover,
            texttemplate="%{text}",
            textfont=dict(size=11),
            hovertemplate="%{customdata}<extra></extra>",
            colorscale=scale,
            zmin=0,
            zmax=n,
            showscale=False,
            xgap=2,
            ygap=2,
            visible=(k == 0),
            name=name,
        )
        titles.append(f"{name}: {len(pieces)} tokens")
    for kind, colour in zip(TOKEN_KINDS, _KIND_COLOURS, strict=True):  # a legend for the colours
        fig.add_scatter(
            x=[None],
            y=[None],
            mode="markers",
            marker=dict(size=12, color=colour, symbol="square"),
            name=kind,
            showlegend=True,
            hoverinfo="skip",
        )
    buttons = one_at_a_time(list(examples), titles, always=n)  # the n legend traces stay
    fig.update_layout(
        title=titles[0],
        updatemenus=[dict(buttons=buttons, active=0, x=0, xanchor="left", y=1.18, yanchor="top")],
        xaxis=dict(visible=False, range=[-0.5, columns - 0.5]),
        yaxis=dict(visible=False, autorange="reversed"),
        height=160 + 34 * max_rows,
        margin=dict(t=100, l=10, r=10, b=10),
        legend=dict(orientation="h", y=-0.02, yanchor="top"),
    )
    return fig
