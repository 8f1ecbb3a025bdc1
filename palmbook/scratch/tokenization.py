"""Byte-pair encoding from scratch, with PaLM's vocabulary rules (Chapter 1).

PaLM's vocabulary is a 256k-piece SentencePiece model (§2 "Vocabulary"). This module rebuilds, in plain Python,
what SentencePiece's BPE trainer does, so that the chapter can show each rule working and then check the result
against the ``sentencepiece`` library:

1. Spaces become the visible symbol ``▁`` (U+2581) and are kept: nothing is normalised or dropped, so decoding is
   the exact inverse of encoding (lossless; whitespace matters for code).
2. The text is cut into *words*: a word starts at a ``▁`` (a run of ``▁`` stays together) and runs until the next.
3. Training starts from single characters and repeatedly merges the most frequent adjacent pair into a new piece.
   A merge is allowed only if the new piece is *valid*: at most 16 characters; ``▁`` only at its start (or a
   piece made only of ``▁``); one Unicode script (letters never merge with punctuation); and, PaLM's rule,
   a digit is always a piece on its own ("123.5" -> 1 2 3 . 5).
4. A character outside the vocabulary becomes its UTF-8 bytes, one piece per byte (byte fallback), so no input is
   ever unknown.
5. A newline is a piece of its own that never merges (palmbook's Tokenizer makes it a "user-defined symbol").

Ties between equally frequent pairs are broken as SentencePiece breaks them (shorter piece first, then the
smaller string), and the vocabulary is laid out as :class:`palmbook.Tokenizer` lays it out, so on the same text
``train_bpe(texts, V)`` gives exactly the pieces and ids of ``Tokenizer.train(texts, V, model_type="bpe",
character_coverage=1.0)``. Left out, because the chapter does not need them: character coverage below 1 (rare
characters left to byte fallback), cutting lines longer than 4192 bytes, and the special case of a literal "▁" in
the input.
"""

from __future__ import annotations

import functools
import itertools
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "MAX_PIECE_CHARS",
    "NEWLINE",
    "REQUIRED_CHARS",
    "SPACE",
    "SPECIALS",
    "ScratchBPE",
    "byte_piece",
    "is_valid_piece",
    "pair_counts",
    "script",
    "split_into_words",
    "train_bpe",
    "utf8_bytes",
]

SPACE = "\u2581"  # "▁": SentencePiece's visible stand-in for a space
NEWLINE = "\n"
SPECIALS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2 as in palmbook.Tokenizer; newline is id 3
REQUIRED_CHARS = "0123456789"  # palmbook.Tokenizer gives every digit a piece even if the corpus has none
MAX_PIECE_CHARS = 16  # SentencePiece's default max_sentencepiece_length


def utf8_bytes(text: str) -> list[int]:
    """The UTF-8 encoding of ``text`` as a list of integers in 0..255 ("é" -> [195, 169])."""
    return list(text.encode("utf-8"))


def byte_piece(b: int) -> str:
    """SentencePiece's name for the piece of byte ``b``: 233 -> "<0xE9>"."""
    if not 0 <= b <= 255:
        raise ValueError(f"a byte is an integer in 0..255; got {b}")
    return f"<0x{b:02X}>"


def script(ch: str) -> str:
    """The writing system of one character, as SentencePiece groups them for its "one script per piece" rule.

    Letters are named by the first word of their Unicode name (LATIN, CJK, GREEK, ...), with Japanese kana counted
    as CJK as SentencePiece does; digits are "DIGIT"; combining marks are "INHERITED" (they take the script of
    the character before them); everything else (punctuation, symbols, tabs, newlines) is "COMMON".
    This reads the Unicode name instead of the Unicode Script property (which Python's standard library lacks);
    for the letters of most alphabets the two agree.
    """
    if ch == SPACE:
        return "SPACE"
    category = unicodedata.category(ch)
    if category == "Nd":
        return "DIGIT"
    if category.startswith("M"):
        return "INHERITED"
    if category.startswith("L"):
        first = unicodedata.name(ch, "UNKNOWN").split()[0]
        return "CJK" if first in ("HIRAGANA", "KATAKANA") else first
    return "COMMON"


@functools.lru_cache(maxsize=1 << 16)  # training asks about the same pairs at every merge
def is_valid_piece(piece: str, split_digits: bool = True, max_chars: int = MAX_PIECE_CHARS) -> bool:
    """May ``piece`` be in the vocabulary? SentencePiece's rules with PaLM's options (see the module docstring)."""
    if not piece or len(piece) > max_chars:
        return False
    if all(c == SPACE for c in piece):
        return True  # allow_whitespace_only_pieces=True: runs of spaces (indentation) are pieces
    previous = None
    for position, c in enumerate(piece):
        s = script(c)
        if s == "SPACE":
            if position > 0:
                return False  # a space only ever starts a piece
            continue
        if s == "DIGIT":
            if split_digits and len(piece) > 1:
                return False  # PaLM: every digit is its own piece
            s = "COMMON"  # digits belong to the Common script
        if s == "INHERITED":
            s = previous
        if previous is not None and s is not None and s != previous:
            return False  # one script per piece
        previous = s
    return True


def split_into_words(text: str) -> list[str]:
    """Replace spaces by ``▁`` and cut before each run of ``▁`` and around each newline.

    "To be,  or\nnot" -> ["To", "▁be,", "▁▁or", "\n", "not"]. Merges never cross these cuts.
    """
    text = text.replace(" ", SPACE)
    words: list[str] = []
    start_next = True  # the next character starts a new word
    in_spaces = False
    for c in text:
        if c == NEWLINE:
            words.append(c)
            start_next = True
            continue
        is_space = c == SPACE
        if start_next or (is_space and not in_spaces):
            words.append("")
            start_next = False
            in_spaces = is_space
        elif not is_space:
            in_spaces = False
        words[-1] += c
    return words


def pair_counts(words: dict[tuple[str, ...], int], split_digits: bool = True) -> Counter[tuple[str, str]]:
    """How often each adjacent pair of pieces occurs, over words given as {pieces: count}; invalid merges omitted."""
    counts: Counter[tuple[str, str]] = Counter()
    for pieces, n in words.items():
        for left, right in itertools.pairwise(pieces):
            if is_valid_piece(left + right, split_digits):
                counts[left, right] += n
    return counts


def _merge(pieces: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """Replace every occurrence of ``pair`` in ``pieces``, left to right, by the joined piece."""
    out: list[str] = []
    i = 0
    while i < len(pieces):
        if i + 1 < len(pieces) and (pieces[i], pieces[i + 1]) == pair:
            out.append(pieces[i] + pieces[i + 1])
            i += 2
        else:
            out.append(pieces[i])
            i += 1
    return tuple(out)


def _best(counts: Counter[tuple[str, str]]) -> tuple[str, str]:
    """The most frequent pair; ties go to the shorter joined piece, then to the smaller string (as SentencePiece)."""
    return min(counts, key=lambda p: (-counts[p], len(p[0] + p[1]), (p[0] + p[1]).encode("utf-8")))


@dataclass
class ScratchBPE:
    """A trained BPE vocabulary: ``merges`` in the order learned, and the ``characters`` it starts from.

    Vocabulary layout (ids), as :class:`palmbook.Tokenizer` lays out a ``model_type="bpe"`` model: the three
    specials and the newline (0..3), the 256 byte pieces ``<0x00>``..``<0xFF>`` (4..259), the merged pieces in
    the order they were learned, then the single characters, most frequent first.
    """

    merges: list[tuple[str, str]]
    characters: list[str]

    @property
    def pieces(self) -> list[str]:
        """Every piece, indexed by id."""
        return [
            *SPECIALS,
            NEWLINE,
            *(byte_piece(b) for b in range(256)),
            *(a + b for a, b in self.merges),
            *self.characters,
        ]

    @property
    def byte_offset(self) -> int:
        """Id of ``<0x00>``: the id of byte b is ``byte_offset + b``."""
        return len(SPECIALS) + 1

    def __post_init__(self) -> None:
        self._pieces = self.pieces
        # Only merged pieces and characters take part in merging: a text that spells "</s>" or "<0x41>" must stay
        # plain text, not turn into a special or a byte piece.
        start = self.byte_offset + 256
        self._rank = {p: i for i, p in enumerate(self._pieces) if i >= start}

    def __len__(self) -> int:
        return len(self._pieces)

    def encode_word(self, word: str) -> list[str]:
        """One word -> its pieces. Start from characters; merge the adjacent pair whose joined piece was learned
        earliest (leftmost on a tie) until no pair joins into a known piece; then spell unknown characters as bytes.
        """
        if word == NEWLINE:
            return [NEWLINE]
        pieces = list(word)
        while len(pieces) > 1:
            ranks = [self._rank.get(a + b) for a, b in itertools.pairwise(pieces)]
            known = [(rank, i) for i, rank in enumerate(ranks) if rank is not None]
            if not known:
                break
            _, i = min(known)
            pieces[i : i + 2] = [pieces[i] + pieces[i + 1]]
        out: list[str] = []
        for p in pieces:
            if p in self._rank:
                out.append(p)
            else:  # byte fallback: one piece per UTF-8 byte
                out.extend(byte_piece(b) for b in utf8_bytes(p))
        return out

    def encode_pieces(self, text: str) -> list[str]:
        """text -> pieces (strings)."""
        return [p for word in split_into_words(text) for p in self.encode_word(word)]

    def encode(self, text: str) -> list[int]:
        """text -> ids."""
        byte_ids = {byte_piece(b): self.byte_offset + b for b in range(256)}
        ids = {**byte_ids, NEWLINE: len(SPECIALS), **self._rank}
        return [ids[p] for p in self.encode_pieces(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """ids -> text, exactly the text that was encoded. Runs of byte pieces are joined and decoded as UTF-8."""
        out = bytearray()
        for i in ids:
            if not 0 <= i < len(self._pieces):
                raise ValueError(f"id {i} is not in this vocabulary of {len(self._pieces)} pieces")
            if i < len(SPECIALS):
                continue  # <pad>, </s>, <unk> carry no text
            if self.byte_offset <= i < self.byte_offset + 256:
                out.append(i - self.byte_offset)
            else:
                out.extend(self._pieces[i].replace(SPACE, " ").encode("utf-8"))
        return out.decode("utf-8", errors="replace")


def train_bpe(
    texts: str | Iterable[str], vocab_size: int, *, split_digits: bool = True, verbose: bool = False
) -> ScratchBPE:
    """Learn merges until the vocabulary holds ``vocab_size`` pieces (4 specials + 256 bytes + merges + characters).

    ``texts``: one string or several documents. Stops early when no valid pair is left.
    ``split_digits=False`` lets digits merge (sentencepiece's default; PaLM's vocabulary splits them).
    With ``verbose`` prints each merge and how often the pair occurred.
    """
    if isinstance(texts, str):
        texts = [texts]
    word_counts = Counter(w for t in texts for w in split_into_words(t) if w != NEWLINE)
    char_counts = Counter({c: 0 for c in REQUIRED_CHARS})
    for w, n in word_counts.items():
        for c in w:
            char_counts[c] += n
    # SentencePiece lists characters most frequent first, ties in code point order.
    characters = sorted(char_counts, key=lambda c: (-char_counts[c], c))
    reserved = len(SPECIALS) + 1 + 256 + len(characters)
    if vocab_size < reserved:
        raise ValueError(
            f"vocab_size={vocab_size} cannot hold the 4 special pieces, 256 bytes and {len(characters)} characters "
            f"of this text: use vocab_size >= {reserved}"
        )
    words = {tuple(w): n for w, n in word_counts.items()}
    merges: list[tuple[str, str]] = []
    while len(merges) < vocab_size - reserved:
        counts = pair_counts(words, split_digits)
        if not counts:
            break
        pair = _best(counts)
        if verbose:
            print(f"merge {len(merges) + 1}: {pair[0]!r} + {pair[1]!r} -> {pair[0] + pair[1]!r} ({counts[pair]}x)")
        merges.append(pair)
        words = {_merge(w, pair): n for w, n in words.items()}
    return ScratchBPE(merges, characters)
