"""The tokenizer's contract: PaLM's vocabulary is lossless, byte-backed and splits digits (§2 "Vocabulary")."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from palmbook import Tokenizer
from palmbook.tokenizer import _cut, _TrainingFeed

# English prose and verse, code with tabs and runs of spaces, and numbers; no CJK and no emoji, so those must take
# the byte-fallback path.
CORPUS = [
    (
        "To be, or not to be: that is the question:\n"
        "Whether 'tis nobler in the mind to suffer\n"
        "The slings and arrows of outrageous fortune,\n"
        "Or to take arms against a sea of troubles,\n"
        "And by opposing end them? To die: to sleep;\n\n"
    )
    * 3,
    "def area(r):\n\treturn 3.14159 * r ** 2  # circle\n\n\nclass Shape:\n    def __init__(self, n):\n"
    "        self.n = n\n" * 3,
    "In 1599 the Globe opened; by 1613 it had burned. 42 plays? No: 38, or 39 with Edward III.\n" * 3,
    " ".join(f"word{i} item{i * 7} thing{i % 13} and {i * i}" for i in range(1500)),
]
VOCAB = 340

SAMPLES = [
    "我爱Python",
    "今天天气很好，我们去公园玩吧。",
    "emoji 👩‍👩‍👧 and 🇫🇷, skin tone 👍🏽",
    "def f(x):\n\tif x:\n\t\treturn  x   # two spaces, three spaces\n",
    "    leading spaces, trailing spaces    ",
    "\n\n\nblank lines\n\n",
    "windows\r\nline ends\r\n",
    "e\u0301 (combining accent), ｆｕｌｌ-width, ﬁ ligature, no\u00a0break, zero\u200bwidth",
    "a literal ▁ (U+2581), sentencepiece's own space marker",
    "123.5 + 0.25 = 123.75",
    "",
]


@pytest.fixture(scope="module")
def trained() -> tuple[Tokenizer, list[str]]:
    """A small tokenizer, trained inside an empty working directory that is listed afterwards."""
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            tok = Tokenizer.train(CORPUS, vocab_size=VOCAB)
            left = sorted(os.listdir(tmp))
        finally:
            os.chdir(cwd)
    return tok, left


@pytest.fixture(scope="module")
def tok(trained: tuple[Tokenizer, list[str]]) -> Tokenizer:
    return trained[0]


# ---------------------------------------------------------------------------------------------- lossless
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text())
def test_decode_inverts_encode_for_any_unicode_text(tok: Tokenizer, text: str) -> None:
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.unk_id not in ids  # byte fallback: nothing is ever unknown


@pytest.mark.parametrize("text", SAMPLES)
def test_decode_inverts_encode_for_chinese_emoji_code_and_whitespace(tok: Tokenizer, text: str) -> None:
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(), min_size=1, max_size=6))
def test_batch_encode_equals_encoding_each_string(tok: Tokenizer, texts: list[str]) -> None:
    batch = tok.encode(texts)
    assert batch == [tok.encode(t) for t in texts]
    assert tok.decode(batch) == texts


def test_whitespace_runs_tabs_and_newlines_survive_as_tokens(tok: Tokenizer) -> None:
    text = "a  b\t\tc\n\n   d"
    pieces = tok.pieces(text)
    assert "".join(pieces).count("▁") == text.count(" ")  # every space is in some piece, none invented
    assert pieces.count("\n") == 2  # newline is its own piece (a user-defined symbol), once per newline
    assert tok.pieces("\n") == ["\n"]
    assert not tok.pieces("x")[0].startswith("▁")  # no dummy prefix: "x" is not " x"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(number=st.from_regex(r"[0-9]{1,12}(\.[0-9]{1,6})?", fullmatch=True))
def test_every_digit_is_its_own_token(tok: Tokenizer, number: str) -> None:
    pieces = tok.pieces(number)
    digits = [p for p in pieces if p.isdigit()]
    assert digits == [c for c in number if c.isdigit()]  # "123.5" -> 1 2 3 . 5: one piece per digit, in order
    assert all(not tok.is_byte(tok.piece_to_id(d)) for d in digits)  # digits are pieces, not byte fallbacks


def test_no_vocabulary_piece_joins_a_digit_to_anything(tok: Tokenizer) -> None:
    text_pieces = [tok.id_to_piece(i) for i in range(3, tok.vocab_size) if not tok.is_byte(i)]  # not <0x31> etc.
    with_digits = [p for p in text_pieces if any(c.isdigit() for c in p)]
    assert sorted(with_digits) == list("0123456789")  # the corpus is full of numbers; none became a piece


def test_digits_have_pieces_even_when_the_corpus_lacks_them() -> None:
    tok = Tokenizer.train(["no numbers in this text at all, only words and words again\n" * 4], vocab_size=290)
    assert tok.pieces("2024") == ["2", "0", "2", "4"]


@pytest.mark.parametrize("char", ["我", "爱", "👩", "ü"])
def test_unseen_characters_become_one_byte_token_per_utf8_byte(tok: Tokenizer, char: str) -> None:
    ids = tok.encode(char)
    assert len(ids) == len(char.encode("utf-8"))
    assert all(tok.is_byte(i) for i in ids)
    assert tok.pieces(char) == [f"<0x{b:02X}>" for b in char.encode("utf-8")]


def test_seen_characters_are_not_byte_tokens(tok: Tokenizer) -> None:
    assert not any(tok.is_byte(i) for i in tok.encode("To be, or not to be"))


# ---------------------------------------------------------------------------------------------- special ids
def test_special_ids_are_pad_0_end_of_document_1_unk_2_and_no_bos(tok: Tokenizer) -> None:
    assert (tok.pad_id, tok.eod_id, tok.unk_id) == (0, 1, 2)
    assert [tok.id_to_piece(i) for i in range(3)] == ["<pad>", "</s>", "<unk>"]
    assert tok.sp.bos_id() == -1
    assert tok.decode([tok.eod_id, *tok.encode("hi"), tok.pad_id]) == "hi"  # specials decode to nothing
    assert tok.eod_id not in tok.encode("</s> is text, not a token")


def test_vocab_size_is_the_requested_size(tok: Tokenizer) -> None:
    assert tok.vocab_size == len(tok) == VOCAB
    assert max(max(ids) for ids in tok.encode(SAMPLES) if ids) < VOCAB


# ---------------------------------------------------------------------------------------------- training
def test_training_writes_no_files(trained: tuple[Tokenizer, list[str]]) -> None:
    assert trained[1] == []


def test_training_feed_cuts_documents_into_lines_that_rejoin_exactly() -> None:
    doc = "line one\n\nline  three\ttab\nno final newline"
    feed = list(_TrainingFeed([doc, "second doc\n"], max_bytes=4192))
    assert feed == ["line one\n", "\n", "line  three\ttab\n", "no final newline", "second doc\n"]


@settings(max_examples=200, deadline=None)
@given(line=st.text(), max_bytes=st.integers(min_value=8, max_value=64))
def test_long_lines_are_cut_into_pieces_within_the_byte_limit_that_rejoin_exactly(line: str, max_bytes: int) -> None:
    parts = list(_cut(line, max_bytes))
    assert "".join(parts) == line
    assert all(len(p.encode("utf-8")) <= max_bytes for p in parts)


def test_a_document_with_a_line_longer_than_sentencepiece_accepts_still_trains_and_round_trips() -> None:
    words = ("".join("etaoinshrd"[int(d)] for d in str(i * 7919)) for i in range(2500))
    long_line = " ".join(words)  # ~20 kB in one line, five times what sentencepiece reads as one sentence
    tok = Tokenizer.train([long_line], vocab_size=300)
    assert tok.decode(tok.encode(long_line)) == long_line
    learned = [tok.id_to_piece(i) for i in range(tok.vocab_size) if len(tok.id_to_piece(i).replace("▁", " ")) > 1]
    learned = [p for p in learned if not p.startswith("<")]  # drop <pad>, <0x41>, ...
    assert len(learned) >= 10  # multi-letter pieces, learned from the only line there is
    assert all(p.replace("▁", " ") in long_line for p in learned)
    assert len(tok.encode(long_line)) < len(long_line)


# ---------------------------------------------------------------------------------------------- files
def test_save_and_load_give_identical_ids(tok: Tokenizer, tmp_path: Path) -> None:
    path = tok.save(tmp_path / "tok.model")
    loaded = Tokenizer.load(path)
    assert loaded == tok
    assert loaded.encode(SAMPLES) == tok.encode(SAMPLES)
    assert (loaded.vocab_size, loaded.eod_id, loaded.pad_id) == (tok.vocab_size, tok.eod_id, tok.pad_id)
    assert path.read_bytes() == tok.to_bytes()
    assert path.read_bytes()[:1] != b"\x80"  # a protobuf, not a pickle
    assert [p.name for p in tmp_path.iterdir()] == ["tok.model"]  # the atomic write left no temporary file


def test_save_into_a_directory_writes_tokenizer_model_that_load_finds(tok: Tokenizer, tmp_path: Path) -> None:
    assert tok.save(tmp_path) == tmp_path / "tokenizer.model"
    assert Tokenizer.load(tmp_path) == tok


def test_pickling_keeps_the_vocabulary(tok: Tokenizer) -> None:
    copy = pickle.loads(pickle.dumps(tok))
    assert copy == tok and copy.encode(SAMPLES) == tok.encode(SAMPLES)
    assert pickle.dumps(tok) == pickle.dumps(copy)  # deterministic bytes: datasets' cache keys depend on it


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("texts", [[], [""], ["", ""]])
def test_an_empty_corpus_is_a_value_error(texts: list[str]) -> None:
    with pytest.raises(ValueError, match="empty corpus"):
        Tokenizer.train(texts, vocab_size=500)


def test_a_vocabulary_larger_than_the_corpus_supports_is_a_value_error_naming_the_limit() -> None:
    with pytest.raises(ValueError, match=r"larger than this corpus .* use vocab_size <= \d+"):
        Tokenizer.train(["a small corpus with few words\n"], vocab_size=5000)


def test_a_vocabulary_too_small_for_the_reserved_pieces_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="too small"):
        Tokenizer.train(CORPUS, vocab_size=100)


@pytest.mark.parametrize(("texts", "match"), [(["fine", 3], "item 1 is of type int"), ("one string", "wrap it")])
def test_training_on_non_strings_is_a_type_error(texts: object, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        Tokenizer.train(texts, vocab_size=500)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [b"bytes", 42, ["ok", None]])
def test_encoding_a_non_string_is_a_type_error(tok: Tokenizer, bad: object) -> None:
    with pytest.raises(TypeError):
        tok.encode(bad)  # type: ignore[arg-type]


def test_decoding_an_id_outside_the_vocabulary_is_a_value_error(tok: Tokenizer) -> None:
    with pytest.raises(ValueError, match="outside this vocabulary"):
        tok.decode([5, VOCAB])
    with pytest.raises(ValueError, match="outside this vocabulary"):
        tok.decode([-1])


def test_loading_a_missing_tokenizer_is_a_file_not_found_error_naming_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"Tokenizer\.train"):
        Tokenizer.load(tmp_path / "nope.model")


@pytest.mark.parametrize("content", [b"", b"not a model at all", pickle.dumps({"vocab": [1, 2]})])
def test_loading_a_corrupt_tokenizer_is_a_value_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.model"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a SentencePiece model"):
        Tokenizer.load(path)


def test_loading_a_truncated_tokenizer_is_a_value_error(tok: Tokenizer, tmp_path: Path) -> None:
    path = tmp_path / "cut.model"
    path.write_bytes(tok.to_bytes()[: len(tok.to_bytes()) // 2])
    with pytest.raises(ValueError, match="not a SentencePiece model"):
        Tokenizer.load(path)


# ---- invalid input: one ValueError naming the fix (reliability review, defect 8)
@pytest.mark.parametrize("text", ["\ud800", "caf\udce9", "ok \udfff end"])
def test_a_lone_surrogate_is_one_value_error_naming_its_index_and_the_fix(tok: Tokenizer, text: str) -> None:
    index = next(i for i, c in enumerate(text) if 0xD800 <= ord(c) <= 0xDFFF)
    with pytest.raises(ValueError, match=rf"lone surrogate .* at index {index} .*re-encode the input as UTF-8"):
        tok.encode(text)


def test_a_lone_surrogate_in_a_batch_names_the_item_not_a_type_error(tok: Tokenizer) -> None:
    with pytest.raises(ValueError, match=r"item 1 contains a lone surrogate"):
        tok.encode(["a", "\ud800"])


def test_training_on_a_lone_surrogate_names_the_document() -> None:
    with pytest.raises(ValueError, match=r"document 1 contains a lone surrogate '\\udce9' at index 3"):
        Tokenizer.train(["plain text " * 50, "caf\udce9"], vocab_size=300)


@pytest.mark.parametrize("bad", [-1, 10**6])
def test_ids_outside_the_vocabulary_are_value_errors_everywhere(tok: Tokenizer, bad: int) -> None:
    for call in (tok.is_byte, tok.id_to_piece, lambda i: tok.decode([i])):
        with pytest.raises(ValueError, match=rf"id {bad} is outside this vocabulary"):
            call(bad)


def test_a_non_integer_id_is_a_type_error(tok: Tokenizer) -> None:
    with pytest.raises(TypeError, match="token id must be an int"):
        tok.is_byte("a")
    assert tok.is_byte(torch.tensor(3)) == tok.is_byte(3)  # a 0-d tensor is an id


def test_unk_decodes_to_sentencepiece_s_marker_and_encode_never_makes_it(tok: Tokenizer) -> None:
    assert tok.decode([tok.unk_id]) == " \u2047 "
    assert tok.unk_id not in tok.encode("\u4e00\u2047\U0001f600 never seen")
