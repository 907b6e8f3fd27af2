"""Text encoders' configs and tokenizers whose vocabularies stylecomp writes itself (CLIP BPE, T5)."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import CLIPTextConfig, CLIPTokenizer, T5Tokenizer

_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"
# A few BPE merges, so that common words become single tokens as with the real CLIP vocabulary.
_CLIP_MERGES = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>"), ("i", "n"), ("in", "g</w>"), ("e", "r</w>")]
_T5_WORDS = ["the", "and", "a", "of", "in", "with", "style"]


def clip_text_config(
    tokenizer: CLIPTokenizer, hidden: int, projection_dim: int | None = None, act: str = "quick_gelu"
) -> CLIPTextConfig:
    """A two-layer CLIP text encoder config of width ``hidden`` for ``tokenizer``'s vocabulary."""
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=projection_dim or hidden,
        hidden_act=act,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,  # the pooled output is taken at this token
        pad_token_id=tokenizer.pad_token_id,
    )


def _byte_chars() -> list[str]:
    """GPT-2/CLIP's printable stand-ins for the 256 byte values, in their vocabulary order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def _clip_vocab() -> dict[str, int]:
    """Byte-level CLIP vocabulary: every byte alone and word-final, the merged pieces, then the specials."""
    chars = _byte_chars()
    tokens = chars + [c + "</w>" for c in chars] + ["".join(pair) for pair in _CLIP_MERGES] + [_BOS, _EOS]
    return {token: i for i, token in enumerate(tokens)}


def clip_tokenizer(pad_token: str = _EOS) -> CLIPTokenizer:
    """A byte-level CLIP tokenizer whose vocabulary stylecomp writes itself (no download), for any prompt."""
    return CLIPTokenizer(vocab=_clip_vocab(), merges=list(_CLIP_MERGES), pad_token=pad_token, model_max_length=77)


def write_clip_vocab_files(folder: Path) -> None:
    """Also write vocab.json + merges.txt, the files SD repositories ship, beside tokenizer.json."""
    (folder / "vocab.json").write_text(json.dumps(_clip_vocab(), ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    merges = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in _CLIP_MERGES)
    (folder / "merges.txt").write_text(merges, encoding="utf-8")


def _t5_tokenizer() -> T5Tokenizer:
    """A SentencePiece-free T5 tokenizer: a Unigram model over printable ASCII plus a few whole words."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + word, -1.0) for word in _T5_WORDS]
    pieces += [(chr(c), -3.0) for c in range(ord("!"), ord("~") + 1)]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=512)
