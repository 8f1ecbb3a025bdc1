"""PaLM's vocabulary: a SentencePiece model that is lossless, byte-backed and digit-splitting (§2 "Vocabulary").

The paper: "a SentencePiece vocabulary with 256k tokens ... chosen to support the large number of languages in the
training corpus without excess tokenization. The vocabulary was generated from the training data ... completely
lossless and reversible, which means that whitespace is completely preserved in the vocabulary (especially important
for code) and out-of-vocabulary Unicode characters are split into UTF-8 bytes, with a vocabulary token for each byte.
Numbers are always split into individual digit tokens (e.g., '123.5 -> 1 2 3 . 5')."

Each of those sentences is one sentencepiece option in :data:`PALM_OPTIONS`. The book's vocabularies are small
(1k-8k pieces, trained on a few MB of Shakespeare) where the paper's has 256,000; the options are the same.

Special ids (the same layout as T5's SentencePiece vocabularies):

====  ========  =====================================================================================
id    piece     why it exists
====  ========  =====================================================================================
0     ``<pad>`` fills fine-tuning batches of unequal length; pre-training never pads (documents are packed)
1     ``</s>``  end of document: packing puts it between documents (§5 "Sequence length")
2     ``<unk>`` sentencepiece requires one; byte fallback means encoding never produces it
====  ========  =====================================================================================

There is no beginning-of-sequence token: a packed decoder-only model conditions on the previous document's
end-of-document token instead, and PaLM's paper mentions none.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import sentencepiece as spm

from .io import TOKENIZER_NAME, atomic_write

__all__ = ["PALM_OPTIONS", "Tokenizer"]


# One entry per clause of §2 "Vocabulary". sentencepiece's own defaults differ on every line: they NFKC-normalise
# text, collapse runs of spaces, add a leading space, and map unseen characters to <unk>; none of that is lossless.
PALM_OPTIONS: dict[str, Any] = {
    "byte_fallback": True,  # unseen characters -> one token per UTF-8 byte, never <unk>
    "split_digits": True,  # "123.5" -> 1 2 3 . 5
    "normalization_rule_name": "identity",  # no NFKC: full-width forms, ligatures, combining marks stay as written
    "remove_extra_whitespaces": False,  # runs of spaces are kept (code indentation)
    "add_dummy_prefix": False,  # no invented leading space, so decode(encode(s)) == s exactly
    "allow_whitespace_only_pieces": True,  # "    " may be one piece, as in code
    "required_chars": "0123456789",  # every digit gets its own piece even if the corpus has none
    "pad_id": 0,
    "eos_id": 1,  # PaLM's end-of-document token
    "unk_id": 2,
    "bos_id": -1,  # none: see the module docstring
}

# sentencepiece trains on "sentences" and silently skips any longer than this many bytes (its default).
MAX_SENTENCE_BYTES = 4192

# sentencepiece writes a space as U+2581 "▁" inside pieces, so a literal "▁" in the input would decode as a space.
# encode() sends a literal "▁" as its three UTF-8 byte tokens instead, which decode back to "▁" itself.
_META_SPACE = "\u2581"


def _check_utf8(text: str, what: str = "text") -> None:
    """Raise one ValueError if ``text`` holds a lone surrogate (U+D800..U+DFFF), which no UTF-8 can carry.

    Python keeps undecodable bytes as lone surrogates: ``sys.argv`` does for invalid UTF-8 on a command line, and
    so does ``open(..., errors="surrogateescape")``. sentencepiece would fail on them with a bare C++ cast error.
    """
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"{what} contains a lone surrogate {text[e.start]!r} at index {e.start} (invalid UTF-8 on the "
            "command line or in a file read with errors='surrogateescape'?): re-encode the input as UTF-8, "
            "e.g. iconv -f latin1 -t utf-8"
        ) from None


class _TrainingFeed:
    """The sentences sentencepiece trains on: each text cut into lines, each line kept with its newline.

    Why lines: sentencepiece reads one "sentence" at a time and drops any over ``max_bytes``; a whole play would be
    dropped. Cutting at newlines loses nothing learnable: newline is a user-defined symbol, which sentencepiece
    always keeps as one piece of its own, so no piece could have spanned a line anyway. Lines still over the
    limit (minified code, long paragraphs) are cut at whitespace.

    Errors are recorded and re-raised after training: an exception thrown inside sentencepiece's C++ loop would
    lose its type and message.
    """

    def __init__(self, texts: Iterable[str], max_bytes: int) -> None:
        if isinstance(texts, (str, bytes)):
            raise TypeError(
                "Tokenizer.train expects an iterable of strings (documents), got a single "
                f"{type(texts).__name__}; wrap it in a list: Tokenizer.train([text], ...)"
            )
        self.texts = texts
        self.max_bytes = max_bytes
        self.error: Exception | None = None
        self.n_chars = 0

    def __iter__(self) -> Iterator[str]:
        try:
            for i, text in enumerate(self.texts):
                if not isinstance(text, str):
                    raise TypeError(
                        f"Tokenizer.train expects strings; item {i} is of type {type(text).__name__}: "
                        "decode bytes first (text.decode('utf-8')) or convert it with str()"
                    )
                _check_utf8(text, f"Tokenizer.train: document {i}")
                self.n_chars += len(text)
                for line in text.splitlines(keepends=True):
                    yield from _cut(line, self.max_bytes)
        except Exception as e:  # re-raised by Tokenizer.train, see the class docstring
            self.error = e


def _cut(line: str, max_bytes: int) -> Iterator[str]:
    """Yield ``line`` in pieces of at most ``max_bytes`` UTF-8 bytes, cutting after whitespace when possible."""
    if len(line.encode("utf-8")) <= max_bytes:
        yield line
        return
    chunk, size = [], 0
    for word in re.findall(r"\S*\s*", line):
        n = len(word.encode("utf-8"))
        if size + n > max_bytes and chunk:
            yield "".join(chunk)
            chunk, size = [], 0
        while n > max_bytes:  # one "word" longer than the limit: cut it by characters (<= 4 bytes each)
            step = max_bytes // 4
            yield word[:step]
            word = word[step:]
            n = len(word.encode("utf-8"))
        chunk.append(word)
        size += n
    if chunk:
        yield "".join(chunk)


class Tokenizer:
    """A SentencePiece vocabulary with PaLM's options.

    >>> tok = Tokenizer.train(texts, vocab_size=4096)
    >>> ids = tok.encode("To be, or not to be")      # list[int]
    >>> tok.decode(ids)                                # 'To be, or not to be'
    >>> tok.encode(["a", "b"])                         # list[list[int]], one batched (multi-threaded) call
    >>> tok.save("tok.model"); Tokenizer.load("tok.model")

    Any SentencePiece model can be loaded; only those trained by :meth:`train` carry PaLM's guarantees.
    """

    def __init__(self, model_proto: bytes) -> None:
        """Wrap a serialized SentencePiece ``ModelProto`` (what :meth:`save` writes)."""
        if not isinstance(model_proto, (bytes, bytearray)):
            raise TypeError(f"Tokenizer(model_proto) expects bytes, got {type(model_proto).__name__}")
        try:
            sp = spm.SentencePieceProcessor(model_proto=bytes(model_proto))
        except Exception as e:  # sentencepiece raises RuntimeError/OSError depending on the corruption
            raise ValueError(
                f"not a SentencePiece model ({e}); the file may be truncated or something else: "
                "re-create it with Tokenizer.train(...).save(path)"
            ) from None
        if sp.get_piece_size() == 0:  # b"" and some junk parse as an empty protobuf message
            raise ValueError(
                "not a SentencePiece model (it holds no pieces); re-create it with Tokenizer.train(...).save(path)"
            )
        if sp.eos_id() < 0:
            raise ValueError(
                "this SentencePiece model has no end-of-document (eos) token, which packing needs; "
                "train one with Tokenizer.train (eos id 1)"
            )
        self._proto = bytes(model_proto)
        self.sp = sp
        self.vocab_size: int = sp.get_piece_size()
        self.eod_id: int = sp.eos_id()  # PaLM's end-of-document token, put between packed documents
        self.pad_id: int | None = sp.pad_id() if sp.pad_id() >= 0 else None  # fine-tuning batches only
        self.unk_id: int = sp.unk_id()
        # Literal "▁" is sent as bytes (see _META_SPACE); without byte pieces it cannot be represented at all.
        self._meta_space_ids: list[int] | None = None
        byte_pieces = [f"<0x{b:02X}>" for b in _META_SPACE.encode("utf-8")]
        byte_ids = [sp.piece_to_id(p) for p in byte_pieces]
        if all(sp.is_byte(i) for i in byte_ids):
            self._meta_space_ids = byte_ids
        self._threads = max(1, min(8, os.cpu_count() or 1))

    # ---- training
    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        *,
        model_type: str = "unigram",
        character_coverage: float = 0.9995,
        user_defined_symbols: Sequence[str] = (),
        max_sentence_bytes: int = MAX_SENTENCE_BYTES,
        num_threads: int | None = None,
        verbose: bool = False,
        **options: Any,
    ) -> Tokenizer:
        """Train a vocabulary of ``vocab_size`` pieces on ``texts`` (an iterable of documents), in memory.

        ``model_type``: "unigram" (sentencepiece's default; the paper does not say which PaLM used) or "bpe".
        ``character_coverage``: the share of the corpus's characters that get pieces of their own; the rarest
        characters are left to byte fallback. ``options`` go to ``sentencepiece.SentencePieceTrainer.train``
        and override :data:`PALM_OPTIONS` (the book does this to show what sentencepiece's defaults lose).

        Nothing touches the disk: sentences stream in through ``sentence_iterator`` and the model comes back
        through ``model_writer``.
        """
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
            raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
        # <pad> <\s> <unk>, 256 bytes, "\n", 10 digits: fewer pieces than these leaves no room to learn anything.
        floor = 3 + 256 + 1 + 10 + len(user_defined_symbols)
        if vocab_size <= floor:
            raise ValueError(
                f"vocab_size={vocab_size} is too small: {floor} pieces are reserved (3 special, 256 byte "
                f"pieces, newline, 10 digits); use vocab_size >= {floor + 64}"
            )
        feed = _TrainingFeed(texts, max_sentence_bytes)
        symbols = ["\n", *(s for s in user_defined_symbols if s != "\n")]
        spec = {
            **PALM_OPTIONS,
            "model_type": model_type,
            "vocab_size": vocab_size,
            "character_coverage": character_coverage,
            # Newline is a user-defined symbol: always its own piece, so it survives training on
            # line-sized "sentences" and decodes back exactly (sentencepiece would otherwise treat it as a
            # sentence boundary and never see it).
            "user_defined_symbols": symbols,
            "max_sentence_length": max_sentence_bytes,
            "num_threads": num_threads or os.cpu_count() or 1,
            "minloglevel": 0 if verbose else 2,
            **options,
        }
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(sentence_iterator=iter(feed), model_writer=model, **spec)
        except RuntimeError as e:
            if feed.error is not None:
                raise feed.error from None
            raise _training_error(str(e), vocab_size, feed.n_chars) from None
        if feed.error is not None:
            raise feed.error
        if feed.n_chars == 0:  # sentencepiece may still succeed on zero sentences with a tiny vocabulary
            raise _training_error("", vocab_size, 0)
        return cls(model.getvalue())

    # ---- encoding
    @overload
    def encode(self, text: str) -> list[int]: ...
    @overload
    def encode(self, text: Sequence[str]) -> list[list[int]]: ...

    def encode(self, text: str | Sequence[str]) -> list[int] | list[list[int]]:
        """Token ids of one string, or of each string in a list (one multi-threaded sentencepiece call).

        No end-of-document token is added; :func:`palmbook.pack` puts one between documents.
        """
        if isinstance(text, str):
            return self._encode_one(text)
        if not isinstance(text, (bytes, bytearray)) and isinstance(text, Iterable):
            text = list(text)  # a list, a tuple, a datasets Column, a generator
            for i, t in enumerate(text):
                if not isinstance(t, str):
                    raise TypeError(f"encode expects a str or a list of str; item {i} is of type {type(t).__name__}")
                _check_utf8(t, f"encode: item {i}")
            plain = [i for i, t in enumerate(text) if _META_SPACE not in t]
            out: list[list[int]] = [[] for _ in text]
            if plain:
                ids = self.sp.encode([text[i] for i in plain], out_type=int, num_threads=self._threads)
                for i, row in zip(plain, ids, strict=True):
                    out[i] = row
            for i, t in enumerate(text):
                if _META_SPACE in t:
                    out[i] = self._encode_one(t)
            return out
        raise TypeError(
            f"encode expects a str or a list of str, got {type(text).__name__}"
            + ("; decode bytes first: text.decode('utf-8')" if isinstance(text, (bytes, bytearray)) else "")
        )

    def _encode_one(self, text: str) -> list[int]:
        _check_utf8(text)
        if _META_SPACE not in text:
            return self.sp.encode(text, out_type=int)
        if self._meta_space_ids is None:
            raise ValueError(
                "this vocabulary has no byte pieces, so it cannot represent U+2581 '▁' losslessly; "
                "train with Tokenizer.train (byte_fallback=True)"
            )
        ids: list[int] = []
        for k, part in enumerate(text.split(_META_SPACE)):
            if k:
                ids.extend(self._meta_space_ids)
            if part:
                ids.extend(self.sp.encode(part, out_type=int))
        return ids

    @overload
    def decode(self, ids: Sequence[int]) -> str: ...
    @overload
    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]: ...

    def decode(self, ids: Any) -> str | list[str]:
        """Text of a list of ids (or a 1-D tensor); a list of texts for a list of lists (or a 2-D tensor).

        Special tokens (pad, end-of-document) decode to nothing. ``unk_id`` decodes to " \u2047 " (sentencepiece's
        marker for an unknown piece); :meth:`encode` never produces it (byte fallback), so it only appears in ids
        that came from elsewhere, e.g. sampled from an untrained model.
        """
        if hasattr(ids, "tolist"):  # torch.Tensor, numpy array
            ids = ids.tolist()
        if isinstance(ids, int):
            raise TypeError("decode expects a list of ids; for a single id use tok.decode([i]) or tok.id_to_piece(i)")
        ids = list(ids)
        if ids and isinstance(ids[0], (list, tuple)):
            return [self.decode(row) for row in ids]
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, int):
                raise TypeError(f"decode expects integer ids, got {type(i).__name__} ({i!r})")
            if not 0 <= i < self.vocab_size:
                raise ValueError(
                    f"id {i} is outside this vocabulary (0..{self.vocab_size - 1}): were these ids made by "
                    "another tokenizer or a model with a larger vocab_size?"
                )
        return self.sp.decode(ids)

    # ---- inspection
    def pieces(self, text: str) -> list[str]:
        """The pieces ``text`` is cut into, as strings ("▁" marks a space, "<0xE6>" a byte piece)."""
        return [self.id_to_piece(i) for i in self.encode(text)]

    def _check_id(self, i: Any) -> int:
        if isinstance(i, bool) or not isinstance(i, int):
            if hasattr(i, "item") and getattr(i, "ndim", 1) == 0:  # a 0-d tensor or numpy integer
                return self._check_id(i.item())
            raise TypeError(f"a token id must be an int, got {type(i).__name__} ({i!r})")
        if not 0 <= i < self.vocab_size:
            raise ValueError(f"id {i} is outside this vocabulary (0..{self.vocab_size - 1})")
        return i

    def id_to_piece(self, i: int) -> str:
        """The piece of id ``i``."""
        return self.sp.id_to_piece(self._check_id(i))

    def piece_to_id(self, piece: str) -> int:
        """The id of ``piece``; ``unk_id`` if the vocabulary has no such piece."""
        if not isinstance(piece, str):
            raise TypeError(f"piece_to_id expects a str piece, got {type(piece).__name__}")
        _check_utf8(piece, "piece")
        return self.sp.piece_to_id(piece)

    def is_byte(self, i: int) -> bool:
        """True if id ``i`` is one of the 256 byte-fallback pieces ``<0x00>`` .. ``<0xFF>``."""
        return bool(self.sp.is_byte(self._check_id(i)))

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, eod_id={self.eod_id}, pad_id={self.pad_id})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self._proto == other._proto

    def __hash__(self) -> int:
        return hash(self._proto)

    @property
    def digest(self) -> str:
        """SHA-256 of the serialized model: names caches of text tokenized by this exact vocabulary."""
        return hashlib.sha256(self._proto).hexdigest()

    # Pickling (datasets.map hashes the functions it runs, and DataLoader workers copy them) goes through the
    # serialized proto, so two equal tokenizers pickle to equal bytes.
    def __getstate__(self) -> dict[str, bytes]:
        return {"model_proto": self._proto}

    def __setstate__(self, state: dict[str, bytes]) -> None:
        self.__init__(state["model_proto"])  # type: ignore[misc]

    # ---- files
    def to_bytes(self) -> bytes:
        """The serialized SentencePiece ``ModelProto`` (what :meth:`save` writes)."""
        return self._proto

    def save(self, path: str | os.PathLike) -> Path:
        """Write the SentencePiece model (protobuf bytes, never a pickle) atomically; return the file's path.

        A directory ``path`` gets ``tokenizer.model`` inside it (next to a model's ``model.safetensors``).
        """
        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_NAME
        if not path.parent.is_dir():
            raise FileNotFoundError(f"cannot save to {path}: directory {path.parent} does not exist; create it first")
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(self._proto))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        """Read a SentencePiece model file (or ``tokenizer.model`` inside a directory)."""
        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"no tokenizer at {path}; create one with Tokenizer.train(texts, vocab_size).save({str(path)!r})"
            )
        data = path.read_bytes()
        try:
            return cls(data)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None


def _training_error(message: str, vocab_size: int, n_chars: int) -> ValueError:
    """Turn sentencepiece's terse training failures into one error that names the fix."""
    if n_chars == 0:
        return ValueError(
            "cannot train a tokenizer on an empty corpus: texts yielded no characters; pass a list of non-empty "
            "documents, e.g. Tokenizer.train(palmbook.shakespeare(level='play')['train']['text'], 4096)"
        )
    m = re.search(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)", message)
    if m:
        return ValueError(
            f"vocab_size={vocab_size} is larger than this corpus ({n_chars:,} characters) can support; "
            f"use vocab_size <= {m.group(2)} or train on more text"
        )
    m = re.search(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)", message)
    if m:
        return ValueError(
            f"vocab_size={vocab_size} is smaller than the {m.group(2)} pieces this corpus's characters need "
            "(with the reserved ones); use a larger vocab_size or a lower character_coverage"
        )
    return ValueError(f"sentencepiece could not train on this corpus: {message.strip()}")
