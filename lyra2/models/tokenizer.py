"""The umT5 tokenizer of Lyra-2's text encoder, in C (``csrc/models/tokenizer.c``), without PyTorch or
Hugging Face at run time.

Upstream tokenises each prompt with ``transformers.AutoTokenizer("google/umt5-xxl")``, i.e. the *fast*
``T5TokenizerFast`` that transformers 4.57 converts from ``spiece.model`` (upstream T5:62-102, T5:77-80, T5:36-45),
after cleaning the text (ftfy, html unescape, whitespace collapse). ``Tokenizer(path)`` loads that
``spiece.model`` and reproduces both steps:

* ``clean(text)``: the prompt cleaning (Step A);
* ``tokenize(text)``: the ids of the fast tokenizer, without EOS (added tokens such as ``</s>`` or
  ``<extra_id_0>`` written in the text are kept as their ids, as HF does);
* ``encode(text)``: ``(ids, mask)``, int64 arrays of shape (512,): at most 511 tokens, ``</s>``, then pad
  id 0; the mask is 1 on the tokens and ``</s>``. ``encode_batch(texts)`` gives (B, 512) arrays.

``clean`` reproduces ftfy 6.3's default fixes exactly except two, documented in
``csrc/models/text_clean.h``: the final NFC normalisation and the mojibake repair are not done.

Differences from the ``sentencepiece`` library that come from HF's pipeline and are reproduced on purpose:
unknown characters become ``<unk>`` even when the model has byte pieces (HF's T5 converter disables byte
fallback; pass ``byte_fallback=True`` for the sentencepiece behaviour), consecutive unknowns fuse into one
``<unk>``, a grapheme cluster shorter than 6 bytes is replaced whole by its first charsmap match, and
special-token text in the prompt is recognised.
"""
from __future__ import annotations

import os

import numpy as np

from .. import _core

__all__ = ["Tokenizer"]

SEQ_LEN = 512  # upstream's text_len (get_t5_emb.py, HuggingfaceTokenizer(seq_len=512))


class Tokenizer:
    """umT5 tokenizer loaded from a SentencePiece unigram ``spiece.model``.

    ``extra_ids``: number of ``<extra_id_N>`` tokens T5 appends after the pieces (umT5: 300).
    ``byte_fallback``: False (upstream, HF's T5 conversion) maps unknown characters to ``<unk>``; True
    splits them into the model's ``<0xXX>`` byte pieces as the sentencepiece library does.
    """

    def __init__(self, path: str | os.PathLike, *, extra_ids: int = 300, byte_fallback: bool = False,
                 seq_len: int = SEQ_LEN):
        if not isinstance(extra_ids, int) or isinstance(extra_ids, bool):
            raise TypeError(f"extra_ids: expected int, got {type(extra_ids).__name__}")
        if not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len < 1:
            raise ValueError(f"seq_len: expected a positive int, got {seq_len!r}")
        self.path = os.fspath(path)
        self.seq_len = seq_len
        self._tok = _core.tokenizer_load(self.path, extra_ids, bool(byte_fallback))
        info = _core.tokenizer_info(self._tok)
        self.vocab_size: int = info["vocab_size"]
        self.unk_id: int = info["unk_id"]
        self.eos_id: int = info["eos_id"]
        self.pad_id: int = info["pad_id"]
        self.byte_fallback: bool = info["byte_fallback"]
        self.normalizer: str = info["normalizer"]

    def __repr__(self) -> str:
        return (f"Tokenizer({self.path!r}, vocab_size={self.vocab_size}, normalizer={self.normalizer!r}, "
                f"byte_fallback={self.byte_fallback})")

    def __len__(self) -> int:
        return self.vocab_size

    def id_to_piece(self, i: int) -> str:
        """Text of token id ``i`` (a piece, or ``<extra_id_N>``)."""
        return _core.tokenizer_piece(self._tok, int(i))

    @staticmethod
    def clean(text: str) -> str:
        """Upstream's prompt cleaning (ftfy fixes, html unescape, whitespace collapse)."""
        return _core.text_clean(text)

    def tokenize(self, text: str, *, clean: bool = True) -> list[int]:
        """Token ids of ``text`` (cleaned first unless ``clean=False``), without EOS or truncation."""
        if clean:
            text = _core.text_clean(text)
        return _core.tokenizer_tokenize(self._tok, text)

    def encode_batch(self, texts, *, clean: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, mask)``, int64 (B, seq_len) each, for a list of prompts."""
        if isinstance(texts, str):
            raise TypeError("texts: expected a list of str, got a str (use encode() for one prompt)")
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}]: expected str, got {type(t).__name__}")
        if clean:
            texts = [_core.text_clean(t) for t in texts]
        return _core.tokenizer_encode(self._tok, texts, self.seq_len)

    def encode(self, text: str, *, clean: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, mask)``, int64 (seq_len,) each: tokens, ``</s>``, padding (upstream T5:62-102, T5:77-80,
        T5:36-45)."""
        if not isinstance(text, str):
            raise TypeError(f"text: expected str, got {type(text).__name__}")
        ids, mask = self.encode_batch([text], clean=clean)
        return ids[0], mask[0]
