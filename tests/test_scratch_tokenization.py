"""Chapter 1's from-scratch BPE: PaLM's vocabulary rules, and agreement with sentencepiece (via palmbook.Tokenizer)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from palmbook import Tokenizer
from palmbook.scratch.tokenization import (
    SPACE,
    byte_piece,
    is_valid_piece,
    pair_counts,
    script,
    split_into_words,
    train_bpe,
    utf8_bytes,
)

SOLILOQUY = """HAMLET:
To be, or not to be: that is the question:
Whether 'tis nobler in the mind to suffer
The slings and arrows of outrageous fortune,
Or to take arms against a sea of troubles,
And by opposing end them? To die: to sleep;
No more; and by a sleep to say we end
The heart-ache and the thousand natural shocks
That flesh is heir to, 'tis a consummation
Devoutly to be wish'd. To die, to sleep;
To sleep: perchance to dream: ay, there's the rub;
For in that sleep of death what dreams may come
When we have shuffled off this mortal coil,
Must give us pause: there's the respect
That makes calamity of so long life;
"""

# Everything the chapter shows: unseen scripts, emoji (with a skin-tone modifier), full-width punctuation,
# tabs, runs of spaces, blank lines, digits, text that spells a special piece or a byte piece.
MIXED = (
    "To be, or not to be 123.5\n\n我爱Python 今天天气很好，我们去公园玩吧。 🦜👍🏽\n"
    "\tdef f(x):\n\t\treturn   x  # ok\n</s> <0x41> Naïve café"
)


@pytest.fixture(scope="module")
def bpe():
    return train_bpe(SOLILOQUY, 400)


def test_utf8_bytes_are_what_python_encodes():
    assert utf8_bytes("A") == [65]
    assert utf8_bytes("é") == [0xC3, 0xA9]
    assert utf8_bytes("我") == [0xE6, 0x88, 0x91]  # a CJK character is three bytes
    assert byte_piece(0xE6) == "<0xE6>" and byte_piece(10) == "<0x0A>"
    with pytest.raises(ValueError, match=r"0\.\.255"):
        byte_piece(256)


def test_split_into_words_starts_a_word_at_each_run_of_spaces_and_isolates_newlines():
    assert split_into_words("To be,  or\nnot") == ["To", f"{SPACE}be,", f"{SPACE * 2}or", "\n", "not"]
    assert split_into_words("  x") == [f"{SPACE * 2}x"]
    assert "".join(split_into_words("a  b\n\nc ")).replace(SPACE, " ") == "a  b\n\nc "


def test_script_groups_letters_by_alphabet():
    assert script("a") == script("Z") == "LATIN"
    assert script("我") == script("の") == "CJK"  # kana count as CJK, as in sentencepiece
    assert script("7") == "DIGIT" and script(",") == script("，") == "COMMON"
    assert script("\u0301") == "INHERITED"


@pytest.mark.parametrize(
    ("piece", "valid"),
    [
        (f"{SPACE}the", True),
        (f"the{SPACE}", False),  # a space only starts a piece
        (f"{SPACE * 3}", True),  # indentation may be one piece
        (f"{SPACE * 2}a", False),
        ("be,", False),  # letters and punctuation never share a piece
        ("?!", True),
        ("1", True),
        ("12", False),  # digits are split
        (f"{SPACE}1", False),
        ("e\u0301", True),  # a combining accent belongs to its letter
        ("天气", True),
        ("天a", False),
        ("a" * 17, False),  # at most 16 characters
    ],
)
def test_valid_pieces_follow_palms_rules(piece, valid):
    assert is_valid_piece(piece) is valid


def test_without_split_digits_numbers_may_merge():
    assert is_valid_piece("12", split_digits=False)
    text = "in 1599 and 1599 and 1599"  # characters: i n a d ▁ and the 10 digits
    merged = train_bpe(text, 4 + 256 + 15 + 6, split_digits=False)
    assert any(p.isdigit() and len(p) > 1 for p in merged.pieces)
    assert merged.encode_pieces("1599") != list("1599")
    split = train_bpe(text, 4 + 256 + 15 + 6)
    assert split.encode_pieces("1599") == list("1599")


def test_pair_counts_weight_each_word_by_its_frequency_and_skip_invalid_pairs():
    words = {("a", "b", ","): 2, (SPACE, "a", "b"): 3}
    counts = pair_counts(words)
    assert counts == {("a", "b"): 5, (SPACE, "a"): 3}  # ("b", ",") would mix scripts


def test_first_merge_is_the_most_frequent_pair_with_sentencepiece_tie_breaking():
    # Pairs: ab x3, cd x3, ▁c x3, ▁a x2. Tied at 3 and equal length, the smallest UTF-8 string wins: "ab".
    # Characters: a b c d ▁ and the 10 digits every vocabulary holds.
    bpe = train_bpe("ab ab ab cd cd cd", 4 + 256 + 15 + 1)
    assert bpe.merges == [("a", "b")]
    bpe = train_bpe("ab ab ab cd cd cd", 4 + 256 + 15 + 3)
    assert bpe.merges == [("a", "b"), ("c", "d"), (SPACE, "cd")]  # ▁ab x2 loses to ▁cd x3


def test_vocabulary_layout_puts_specials_then_bytes_then_merges_then_characters(bpe):
    pieces = bpe.pieces
    assert pieces[:4] == ["<pad>", "</s>", "<unk>", "\n"]
    assert pieces[4] == "<0x00>" and pieces[259] == "<0xFF>"
    assert pieces[260] == "".join(bpe.merges[0])
    assert pieces[-10:] == list("0123456789")  # required digits, unseen in the soliloquy: frequency 0, last
    assert len(bpe) == len(pieces) == 400


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters=SPACE, blacklist_categories=("Cs",)), max_size=40))
def test_decode_inverts_encode_for_any_text(text):
    bpe = train_bpe(SOLILOQUY, 330)
    assert bpe.decode(bpe.encode(text)) == text


def test_round_trip_of_chinese_emoji_and_code_whitespace(bpe):
    assert bpe.decode(bpe.encode(MIXED)) == MIXED


def test_an_unseen_character_becomes_one_piece_per_utf8_byte(bpe):
    ids = bpe.encode("爱")
    assert [i - bpe.byte_offset for i in ids] == utf8_bytes("爱") == [0xE7, 0x88, 0xB1]
    assert bpe.encode_pieces("爱") == ["<0xE7>", "<0x88>", "<0xB1>"]


def test_digits_are_always_single_pieces(bpe):
    assert "." in bpe.characters
    assert bpe.encode_pieces("123.5") == ["1", "2", "3", ".", "5"]


def test_text_that_spells_a_special_or_a_byte_piece_stays_text(bpe):
    for text in ("</s>", "<0x41>", "<pad>"):
        ids = bpe.encode(text)
        assert len(ids) > 1 and bpe.decode(ids) == text


def test_vocab_size_too_small_names_the_minimum():
    with pytest.raises(ValueError, match="vocab_size >= "):
        train_bpe(SOLILOQUY, 100)


@pytest.mark.parametrize("vocab_size", [320, 450])
def test_scratch_bpe_equals_sentencepiece_bpe_through_palmbook_tokenizer(vocab_size):
    """Same text, same rules: the same pieces in the same order, and the same ids for any input."""
    ours = train_bpe([SOLILOQUY], vocab_size)
    library = Tokenizer.train([SOLILOQUY], vocab_size, model_type="bpe", character_coverage=1.0)
    assert [library.id_to_piece(i) for i in range(library.vocab_size)] == ours.pieces
    assert library.encode(MIXED) == ours.encode(MIXED)
    assert library.encode(SOLILOQUY) == ours.encode(SOLILOQUY)


def test_max_piece_chars_is_sentencepieces_default_max_sentencepiece_length():
    # the chapter prints both; palmbook.Tokenizer keeps SentencePiece's default, so the scratch rule must match it
    from sentencepiece.sentencepiece_model_pb2 import TrainerSpec

    from palmbook.scratch.tokenization import MAX_PIECE_CHARS

    assert TrainerSpec().max_sentencepiece_length == MAX_PIECE_CHARS
