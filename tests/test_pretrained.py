"""The model that ships with the book: small enough to package, trained enough to write a play."""

import json
import math
import re

import pytest
import torch

import palmbook
from palmbook import PaLM, PaLMConfig, Tokenizer, shakespeare
from palmbook.pretrained import export_pretrained, pretrained_dir

NAME = "shakespeare-small"
shipped = pytest.mark.skipif(NAME not in palmbook.available_pretrained(), reason="model not shipped yet")


def test_export_writes_bf16_weights_that_load_back_as_float32(tmp_path):
    torch.manual_seed(0)
    model = PaLM(PaLMConfig.preset("palm-tiny"))
    model.save_pretrained(tmp_path / "run" / "best")
    tok = Tokenizer.train(["To be, or not to be: that is the question.\n"] * 50, vocab_size=288)
    tok.save(tmp_path / "run" / "tokenizer.model")
    dest = export_pretrained(tmp_path / "run" / "best", tmp_path / "ship")
    assert sorted(p.name for p in dest.iterdir()) == ["config.json", "model.safetensors", "tokenizer.model"]
    back = PaLM.from_pretrained(dest, dtype=torch.float32)
    assert back.embed.weight.dtype == torch.float32
    torch.testing.assert_close(back.embed.weight, model.embed.weight.bfloat16().float(), rtol=0, atol=0)


def test_an_unknown_model_name_lists_what_is_available():
    with pytest.raises(FileNotFoundError, match="palmbook train"):
        pretrained_dir("no-such-model")


@shipped
def test_shipped_model_fits_the_size_budget_and_records_how_it_was_made():
    path = pretrained_dir(NAME)
    size = sum(p.stat().st_size for p in path.iterdir())
    assert size <= 40 * 2**20, f"{size / 2**20:.1f} MB"
    record = (path / "TRAINING.md").read_text()
    assert "palmbook train" in record
    steps = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    assert any("val_nats_per_char" in s for s in steps)


@shipped
def test_shipped_model_predicts_held_out_shakespeare_far_better_than_chance():
    model, tok = palmbook.pretrained(NAME)
    text = shakespeare(level="play")["validation"][0]["text"][:6000]
    ids = torch.tensor([tok.encode(text)[: model.config.max_seq_len + 1]])
    with torch.no_grad():
        nats = palmbook.lm_loss(model(ids[:, :-1]), ids[:, 1:], z_loss=0.0).item() * (ids.shape[1] - 1)
    chars = len(tok.decode(ids[0, 1:].tolist()))
    # A uniform guess over the vocabulary costs ln(V) nats per token: ~3 nats per character here.
    assert nats / chars < 0.6 * math.log(model.config.vocab_size) * (ids.shape[1] - 1) / chars
    assert nats / chars < 1.8


@shipped
def test_shipped_model_writes_speaker_names_and_verse_lines():
    model, tok = palmbook.pretrained(NAME)
    prompt = torch.tensor([tok.encode("ROMEO:\n")])
    out = tok.decode(model.generate(prompt, 120, temperature=0.8, top_k=40, seed=0)[0].tolist())
    assert re.search(r"^[A-Z][A-Z' ]+[A-Z]:$", out, flags=re.MULTILINE), out
    assert out.count("\n") >= 3, out
