"""The offline Qwen2 tokenizer equals the official one (official_tiny/checkpoint) id for id."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import tiktoken
from tiktoken.load import load_tiktoken_bpe
from transformers import PreTrainedTokenizerFast

from inference.model.tokenizer import (
    ENDOFTEXT_ID,
    IM_END_ID,
    IM_START_ID,
    QWEN2_SPLIT_PATTERN,
    STEP_END_ID,
    VOCAB_SIZE,
    build_qwen2_tokenizer,
    qwen_tiktoken_path,
    save_qwen2_tokenizer,
)

REPO = Path(__file__).resolve().parents[2]

GOLDEN_QUESTION = (
    "Question: What is happening in the video?\nChoose from: A. cooking B. running C. swimming\n"
    "Answer the question step by step. Output each thinking step. "
    "Mark the end of each step with <end_of_step> token."
)
CONTINUATION = "The man runs.<end_of_step>\nHe falls.<end_of_step>\nThe answer is B."
CONTINUATION_IDS = [785, 883, 8473, 15757, 408, 3575, 11946, 397, 1519, 17066, 15757, 408, 3575, 11946, 397]
CONTINUATION_IDS += [785, 4226, 374, 425, 13]  # official_tiny/README.md section 3

# Hand-picked cases: each exercises one part of the pipeline (regex branch, NFC, byte fallback).
STRINGS = [
    "",
    "a",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "I'M sure it's what they'LL say, we'd've",  # case-insensitive contractions
    "1234567890 3.14159 1,000,000 2025-02-17",  # digits are split one by one
    "0000000000000000000000000000000000",
    "   leading and trailing spaces   ",
    "tabs\tand\t\ttabs",
    "line1\nline2\n\nline4\n\n\n\nend\n",
    "windows\r\nline\r\n\r\n",
    " \n \n  \n",
    " " * 40,
    "\n" * 7,
    "ünïcödé café naïve Ångström",
    "e\u0301 A\u030a n\u0303",  # decomposed: NFC composes before splitting
    "Ω≈ç√∫˜µ≤≥÷ ∑∏ ∂ ∆",
    "视频中的人在做什么？他正在跑步。",
    "日本語のテキストとカタカナ、ひらがな。",
    "한국어 문장입니다.",
    "Привет, как дела? Ёжик в тумане.",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "🤖🎬🎤 emoji 👨‍👩‍👧‍👦 family 🇫🇷 flag 👍🏽",
    "code: def f(x):\n    return x**2  # square\n",
    '{"key": [1, 2, 3], "nested": {"a": null}}',
    "<html><body class='x'>text</body></html>",
    "runs.<end_of_step>\n",
    "Step 1: look.<end_of_step>\nStep 2: listen.<end_of_step>\nThe answer is A.",
    "<end_of_step>",
    "<end_of_step>\n<end_of_step>\n",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n",
    "<|im_start|>assistant\n",
    "<|endoftext|>",
    "text<|im_end|>more<|im_start|>",
    "<|im_start|><|im_end|><|endoftext|>",
    "<|im_start",
    "|im_end|>",
    "<|extra_0|>",  # not special here
    "\nWhat is the final answer to the question based on your thinking steps?",
    GOLDEN_QUESTION,
    "\n" + GOLDEN_QUESTION,
    CONTINUATION,
    "!!!???...,,,;;;:::---___***",
    "a  b   c    d",
    "\u00a0non-breaking\u2003em-space\u200bzero-width",
    "\ufffd replacement \x00 nul \x1b escape",
]


def _random_strings(n: int, seed: int = 0) -> list[str]:
    """Mixed-script strings with runs of spaces, newlines, digits and punctuation."""
    alphabet = list("abcXYZ  \n\n\t.,'!?0123456789-") + list("éüß中文字日本한국ДЖ🙂👍🏽\u0301<>|_")
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60))) for _ in range(n)]


@pytest.fixture(scope="module")
def tok() -> PreTrainedTokenizerFast:
    return build_qwen2_tokenizer()


@pytest.fixture(scope="module")
def official_tok(official_tiny: Path) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_file=str(official_tiny / "checkpoint" / "tokenizer.json"))


def test_special_tokens_and_size(tok):
    assert len(tok) == VOCAB_SIZE == 151646
    assert (tok.eos_token, tok.eos_token_id) == ("<|im_end|>", IM_END_ID)
    assert (tok.pad_token, tok.pad_token_id) == ("<|endoftext|>", ENDOFTEXT_ID)
    assert tok.bos_token is None
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [
        151643,
        151644,
        151645,
    ]
    assert (ENDOFTEXT_ID, IM_START_ID, IM_END_ID) == (151643, 151644, 151645)
    assert tok.convert_ids_to_tokens(STEP_END_ID) == ">Ċ"


def test_build_is_cached(tok):
    assert build_qwen2_tokenizer() is tok


def test_continuation_ids(tok):
    assert tok(CONTINUATION).input_ids == CONTINUATION_IDS


def test_end_of_step_is_plain_text(tok):
    ids = tok("runs.<end_of_step>\n").input_ids
    assert ids == [53310, 15757, 408, 3575, 11946, 397]
    assert tok.convert_ids_to_tokens(ids) == ["runs", ".<", "end", "_of", "_step", ">Ċ"]


def test_no_bos_or_eos_added(tok):
    assert tok("\n").input_ids == [198]
    assert tok("<|im_start|>user").input_ids == [151644, 872]


def test_matches_official_on_curated_strings(tok, official_tok):
    for s in STRINGS:
        assert tok(s).input_ids == official_tok(s).input_ids, repr(s)


def test_matches_official_on_random_strings(tok, official_tok):
    strings = _random_strings(400)
    assert tok(strings).input_ids == official_tok(strings).input_ids


def test_decode_round_trip(tok):
    """Byte-level BPE is lossless up to the NFC normalisation applied before splitting."""
    for s in [*STRINGS, *_random_strings(100, seed=1)]:
        assert tok.decode(tok(s).input_ids) == unicodedata.normalize("NFC", s), repr(s)
    assert tok.decode(tok("e\u0301").input_ids) == "\u00e9"


def test_decode_partial_utf8_replaces(tok):
    ids = tok("🫠").input_ids
    assert ids == [9284, 104, 254]  # a rare emoji spans three byte-level tokens
    assert tok.decode(ids[:1]) == "\ufffd"


def test_backend_equals_official_tokenizer_json(tok, official_tiny):
    official = json.loads((official_tiny / "checkpoint" / "tokenizer.json").read_text(encoding="utf-8"))
    mine = json.loads(tok.backend_tokenizer.to_str())
    assert mine["model"]["vocab"] == official["model"]["vocab"]
    assert [" ".join(m) if isinstance(m, list) else m for m in mine["model"]["merges"]] == official["model"][
        "merges"
    ]
    assert mine["normalizer"] == official["normalizer"]
    assert mine["pre_tokenizer"]["pretokenizers"][0] == official["pre_tokenizer"]["pretokenizers"][0]
    assert mine["added_tokens"] == official["added_tokens"]
    assert mine["decoder"]["type"] == "ByteLevel"


def test_saved_files_equal_official(tmp_path, official_tiny):
    out = save_qwen2_tokenizer(tmp_path / "tok")
    names = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"}
    assert {p.name for p in out.iterdir()} == names
    ckpt = official_tiny / "checkpoint"
    assert (out / "merges.txt").read_bytes() == (ckpt / "merges.txt").read_bytes()
    assert json.loads((out / "vocab.json").read_text()) == json.loads((ckpt / "vocab.json").read_text())
    config = json.loads((out / "tokenizer_config.json").read_text())
    official = json.loads((ckpt / "tokenizer_config.json").read_text())
    for key in ("added_tokens_decoder", "additional_special_tokens", "eos_token", "pad_token", "bos_token"):
        assert config[key] == official[key], key
    for key in (
        "tokenizer_class",
        "model_max_length",
        "clean_up_tokenization_spaces",
        "split_special_tokens",
    ):
        assert config[key] == official[key], key


def test_saved_files_load_offline_with_autotokenizer(tmp_path):
    """A fresh interpreter with HF_HUB_OFFLINE=1 loads the folder and encodes identically."""
    out = save_qwen2_tokenizer(tmp_path / "tok")
    code = (
        "import json, sys\n"
        "from transformers import AutoTokenizer\n"
        "t = AutoTokenizer.from_pretrained(sys.argv[1])\n"
        "print(json.dumps([type(t).__name__, len(t), t.eos_token_id, t.pad_token_id,\n"
        "                  t(sys.argv[2]).input_ids]))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code, str(out), CONTINUATION],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=True,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [
        "Qwen2Tokenizer",
        VOCAB_SIZE,
        IM_END_ID,
        ENDOFTEXT_ID,
        CONTINUATION_IDS,
    ]


def test_matches_tiktoken_without_shared_data(tok):
    """Independent of the golden files: tiktoken on the same ranks gives the same ids (NFC text)."""
    enc = tiktoken.Encoding(
        name="qwen2",
        pat_str=QWEN2_SPLIT_PATTERN,
        mergeable_ranks=load_tiktoken_bpe(str(qwen_tiktoken_path())),
        special_tokens={"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645},
    )
    for s in [*STRINGS, *_random_strings(200, seed=2)]:
        s = unicodedata.normalize("NFC", s)
        assert tok(s).input_ids == enc.encode(s, allowed_special="all"), repr(s)
