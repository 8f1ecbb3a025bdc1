"""Task builders of chapter 12: number names agree with independent libraries, splits are disjoint and seeded."""

import random

import cn2an
import inflect
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from palmbook import tasks
from palmbook.tasks import (
    NEGATIVE_WORDS,
    POSITIVE_WORDS,
    chinese_to_number,
    english_to_number,
    lexicon_counts,
    mask_lexicon,
    number_to_chinese,
    number_to_english,
)

_INFLECT = inflect.engine()
numbers = st.integers(min_value=0, max_value=tasks.MAX_NUMBER)


# ------------------------------------------------------------------------------------------- number names
@pytest.mark.parametrize(
    ("n", "english", "chinese"),
    [
        (0, "zero", "零"),
        (10, "ten", "十"),
        (15, "fifteen", "十五"),
        (21, "twenty-one", "二十一"),
        (105, "one hundred five", "一百零五"),
        (115, "one hundred fifteen", "一百一十五"),
        (1005, "one thousand five", "一千零五"),
        (1234, "one thousand two hundred thirty-four", "一千二百三十四"),
        (10010, "ten thousand ten", "一万零一十"),
        (100000, "one hundred thousand", "十万"),
        (20005000, "twenty million five thousand", "二千万五千"),
    ],
)
def test_number_names_of_hand_checked_examples(n, english, chinese):
    assert number_to_english(n) == english
    assert number_to_chinese(n) == chinese


def test_english_names_equal_inflect_for_every_number_the_chapter_uses():
    for n in range(10_000):
        assert number_to_english(n) == _INFLECT.number_to_words(n, andword="", comma=""), n


def test_chinese_names_equal_cn2an_for_every_number_the_chapter_uses():
    for n in range(10_000):
        assert number_to_chinese(n) == cn2an.an2cn(n), n


@settings(max_examples=300, deadline=None)
@given(numbers)
def test_number_names_agree_with_independent_libraries_up_to_a_trillion(n):
    assert number_to_english(n) == _INFLECT.number_to_words(n, andword="", comma="")
    assert number_to_chinese(n) == cn2an.an2cn(n)


@settings(max_examples=300, deadline=None)
@given(numbers)
def test_parsers_invert_the_converters(n):
    assert english_to_number(number_to_english(n)) == n
    assert chinese_to_number(number_to_chinese(n)) == n


def test_parsers_read_common_variants():
    assert english_to_number("one thousand, two hundred and thirty-four") == 1234
    assert chinese_to_number("两千零一") == 2001
    assert chinese_to_number("十万") == 100_000


@pytest.mark.parametrize("bad", [-1, tasks.MAX_NUMBER + 1])
def test_converters_refuse_numbers_out_of_range(bad):
    with pytest.raises(ValueError, match="0 <= n"):
        number_to_english(bad)
    with pytest.raises(ValueError, match="0 <= n"):
        number_to_chinese(bad)


def test_converters_refuse_non_integers():
    with pytest.raises(TypeError):
        number_to_chinese(1.0)
    with pytest.raises(TypeError):
        number_to_english(True)


def test_parsers_refuse_words_that_are_not_numbers():
    with pytest.raises(ValueError, match="'apple'"):
        english_to_number("one apple")
    with pytest.raises(ValueError, match="not a Chinese numeral"):
        chinese_to_number("一千块")


# ------------------------------------------------------------------------------------------- translation data
def test_number_translation_splits_by_number_and_is_seeded():
    a = tasks.number_translation(max_value=999, held_out=0.2, validation=0.1, seed=3)
    b = tasks.number_translation(max_value=999, held_out=0.2, validation=0.1, seed=3)
    c = tasks.number_translation(max_value=999, held_out=0.2, validation=0.1, seed=4)
    parts = {s: set(a[s]["number"]) for s in ("train", "validation", "test")}
    assert parts["train"] | parts["validation"] | parts["test"] == set(range(1000))
    assert not parts["train"] & parts["test"] and not parts["train"] & parts["validation"]
    assert (len(parts["test"]), len(parts["validation"])) == (200, 100)
    assert a["test"]["number"] == b["test"]["number"] != c["test"]["number"]
    row = a["test"][0]
    assert row["english"] == number_to_english(row["number"]) and row["chinese"] == number_to_chinese(row["number"])


def test_number_translation_refuses_an_empty_test_split():
    with pytest.raises(ValueError, match="leaves no test number"):
        tasks.number_translation(max_value=3, held_out=0.01)


# ------------------------------------------------------------------------------------------- the plays
@pytest.fixture(scope="module")
def questions():
    return tasks.speaker_questions(splits=("validation",), n_candidates=4, context_speeches=2)


def test_speaker_questions_answer_is_among_the_plays_most_frequent_speakers(questions):
    q = questions["validation"]
    assert len(q) > 500
    speeches = tasks._speech_rows("validation")
    for row in q.select(range(0, len(q), 97)):
        counts = {}
        for r in speeches:
            if r["play"] == row["play"] and r["speaker"]:
                counts[r["speaker"]] = counts.get(r["speaker"], 0) + 1
        top = sorted(counts, key=lambda s: (-counts[s], s))[:4]
        assert row["candidates"] == top
        assert row["candidates"][row["label"]] == row["speaker"]
        assert row["context"].endswith(speeches_before(speeches, row))


def speeches_before(speeches, row):
    i = next(i for i, r in enumerate(speeches) if r["text"] == row["text"] and r["play"] == row["play"])
    prev = speeches[i - 1]
    return f"{prev['speaker']}:\n{prev['text']}" if prev["speaker"] else prev["text"]


def test_speaker_questions_come_only_from_the_requested_plays(questions):
    from palmbook.shakespeare import shakespeare

    held_out = set(shakespeare("speech")["validation"]["play"])
    assert set(questions["validation"]["play"]) == held_out


def test_genre_passages_have_fixed_length_and_disjoint_plays():
    g = tasks.genre_passages(chars=200, per_play=5, seed=1)
    assert {len(t) for s in g for t in g[s]["text"]} == {200}
    plays = {s: set(g[s]["play"]) for s in g}
    assert not plays["train"] & plays["validation"] and not plays["train"] & plays["test"]
    assert set(g["train"]["genre"]) == {"comedies", "histories", "problems", "roman", "romances", "tragedies"}
    assert all(n == 5 for n in _counts(g["train"]["play"]).values())
    assert tasks.genre_passages(chars=200, per_play=5, seed=1)["test"]["text"] == g["test"]["text"]
    assert tasks.genre_passages(chars=200, per_play=5, seed=2)["test"]["text"] != g["test"]["text"]


def _counts(items):
    out = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return out


# ------------------------------------------------------------------------------------------- sentiment
def test_lexicon_counts_whole_words_case_insensitively():
    assert lexicon_counts("Love, LOVE and lovers; gloves are not love's") == (2, 0)  # "love's" is its own word
    assert lexicon_counts("O bloody villain! sweet") == (1, 2)


def test_mask_lexicon_removes_every_lexicon_word_and_nothing_else():
    text = "My gentle friend, thy bloody hand is fair; gloves are not."
    masked = mask_lexicon(text, mask="—")
    assert masked == "My — friend, thy — hand is —; gloves are not."
    assert lexicon_counts(masked) == (0, 0)


def test_lexicons_do_not_overlap():
    assert not POSITIVE_WORDS & NEGATIVE_WORDS


def test_sentiment_labels_follow_the_lexicon_and_the_text_is_masked():
    s = tasks.sentiment_lines()
    assert set(s["train"]["label"]) == {"positive", "negative"}
    rng = random.Random(0)
    for split in ("train", "test"):
        d = s[split]
        for i in rng.sample(range(len(d)), 50):
            row = d[i]
            pos, neg = lexicon_counts(row["original"])
            assert (pos, neg) == (row["n_positive"], row["n_negative"]) and pos != neg
            assert row["label"] == ("positive" if pos > neg else "negative")
            assert lexicon_counts(row["text"]) == (0, 0)
    assert not set(s["train"]["play"]) & set(s["test"]["play"])


# ------------------------------------------------------------------------------------------- last-word cloze
@pytest.fixture(scope="module")
def cloze():
    return tasks.last_word_cloze(splits=("validation",), seed=0)["validation"]


def test_cloze_answer_is_the_word_that_ends_a_line_after_the_context(cloze):
    for row in cloze.select(range(0, len(cloze), 997)):
        assert row["candidates"][row["label"]] == row["answer"]
        text = _play_text(row["play"]) + "\n"
        assert f"{row['context']} {row['answer']}{row['tail']}\n" in text, (row["context"][-60:], row["answer"])


def _play_text(play):
    rows = [r for r in tasks._speech_rows("validation") if r["play"] == play]
    return "\n\n".join(tasks.render_speech(r["speaker"], r["text"]) for r in rows)


def test_cloze_candidates_are_distinct_last_words_of_the_same_play_and_the_answer_place_is_uniform(cloze):
    for row in cloze.select(range(0, len(cloze), 101)):
        assert len({c.lower() for c in row["candidates"]}) == len(row["candidates"]) == 4
    labels = cloze["label"]
    counts = [labels.count(i) for i in range(4)]
    assert min(counts) > 0.2 * len(labels)  # the answer is not always in the same place


def test_cloze_is_deterministic_and_checks_its_arguments():
    a = tasks.last_word_cloze(splits=("test",), seed=3)["test"]
    b = tasks.last_word_cloze(splits=("test",), seed=3)["test"]
    assert a[:50] == b[:50]
    with pytest.raises(ValueError, match="at least 2 candidates"):
        tasks.last_word_cloze(n_candidates=1)


# ------------------------------------------------------------------------------------------- turn-taking prompts
def test_turn_taking_prompts_alternate_two_speakers_and_end_before_the_answer():
    ds = tasks.turn_taking_prompts(splits=("test",), max_turns=6, per_pair=2, seed=0)["test"]
    assert len(ds) > 0
    for row in ds:
        names = [t.split(":\n", 1)[0] for t in row["turns"]]
        a, b = row["answer"], names[-1]
        assert a != b and names == [a, b] * 3  # ..., A, B and then A speaks
        assert row["candidates"][row["label"]] == a and b in row["candidates"]
        assert all("\n" not in t.split(":\n", 1)[1] for t in row["turns"])  # one line each
    with pytest.raises(ValueError, match="max_turns"):
        tasks.turn_taking_prompts(max_turns=0)


# ------------------------------------------------------------------------------------------- line order
def test_line_order_holds_the_same_lines_in_another_order():
    ds = tasks.line_order(splits=("test",), n_lines=4, seed=0)["test"]
    assert len(ds) > 100
    for row in ds.select(range(0, len(ds), 50)):
        real, shuffled = row["real"].split("\n")[:-1], row["shuffled"].split("\n")[:-1]
        assert len(real) == 4 and sorted(real) == sorted(shuffled) and real != shuffled
        assert row["prompt"] == f"{row['speaker']}:\n" and row["real"].endswith("\n")
    with pytest.raises(ValueError, match="n_lines"):
        tasks.line_order(n_lines=1)
