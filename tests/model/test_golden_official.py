"""The port computes what the official code computed on the official tiny checkpoint.

Tolerances are those of shared/reference/official_tiny/README.md section 3: intermediates and
inputs_embeds atol 2e-4, logits atol 1e-3, log-probs atol 5e-4, greedy ids and layout exact.
"""

from __future__ import annotations

import json

import pytest
import torch

REAL_TIME = 6.006  # reference.json real_time: 180 frames / (30000/1001) fps


@pytest.fixture(scope="module")
def reference(official_tiny):
    return json.loads((official_tiny / "reference" / "reference.json").read_text())


@pytest.fixture(scope="module")
def encoded(official_model, golden):
    return official_model.model.encode_media(golden("pixel_values"), golden("spectrogram"), REAL_TIME)


def test_vision_tower_output(official_model, golden):
    with torch.no_grad():
        out = official_model.model.vision_features(golden("pixel_values"))
    torch.testing.assert_close(out, golden("vision_tower_out"), atol=2e-4, rtol=0)


def test_projector_output_after_max_pool(official_model, golden):
    m = official_model.model
    with torch.no_grad():
        out = m.project_frames(m.vision_features(golden("pixel_values")))
    torch.testing.assert_close(out, golden("mm_projector_out"), atol=2e-4, rtol=0)


def test_whisper_encoder_output(official_model, golden):
    with torch.no_grad():
        out = official_model.model.speech_encoder(golden("spectrogram")).last_hidden_state
    torch.testing.assert_close(out, golden("speech_encoder_out"), atol=2e-4, rtol=0)


def test_speech_tokens_before_segment_position(official_model, golden):
    m = official_model.model
    with torch.no_grad():
        windows = m.speech_windows(golden("spectrogram"))
        queries = m.speech_query_tokens.expand(windows.shape[0], -1, -1)
        q = m.speech_Qformer(query_embeds=queries, encoder_hidden_states=windows).last_hidden_state
        out = m.final_linear(m.speech_llama_proj(q))
    torch.testing.assert_close(out, golden("speech_tokens_final_linear_out"), atol=2e-4, rtol=0)


def test_av_layout_is_exact(encoded, reference):
    ref = reference["av_layout"]
    layout = encoded.layout
    start = ref["av_block_start"]
    assert layout.length == ref["av_block_len"] == 2340
    assert layout.n_frames == ref["n_frames"]
    assert layout.audio_tokens == ref["speech_tokens_before_interpolation"]
    assert layout.audio_tokens_interleaved == ref["speech_tokens_after_interpolation"]
    assert layout.audio_tokens_per_frame == ref["audio_tokens_per_frame"]
    ours = [
        {"video": [start + f.video[0], start + f.video[1]], "audio": [start + f.audio[0], start + f.audio[1]]}
        for f in layout.frames
    ]
    assert ours == ref["frames"]


def test_inputs_embeds(official_model, encoded, golden):
    full_ids = golden("full_input_ids")[0].tolist()
    with torch.no_grad():
        embeds = official_model.model.embed_prompt(full_ids, [encoded.av_block])
    ref = golden("inputs_embeds")
    assert embeds.shape == ref.shape == (1, 2429, 32)
    torch.testing.assert_close(embeds, ref, atol=2e-4, rtol=0)


def test_continuation_logits_and_logprobs(official_model, encoded, golden, reference):
    full_ids = golden("full_input_ids")[0].tolist()
    with torch.no_grad():
        embeds = official_model.model.embed_prompt(full_ids, [encoded.av_block])
        logits = official_model.model.llm(inputs_embeds=embeds).logits[0, -21:-1].float()
    torch.testing.assert_close(logits, golden("continuation_logits"), atol=1e-3, rtol=0)
    targets = torch.tensor(reference["continuation_ids"])
    logprobs = torch.log_softmax(logits, -1)[torch.arange(20), targets]
    torch.testing.assert_close(
        logprobs, torch.tensor(reference["continuation_token_logprobs"]), atol=5e-4, rtol=0
    )


def test_placeholder_count_mismatch_raises(official_model, encoded, golden):
    from inference.model.modeling import PlaceholderMismatchError

    ids = golden("prompt_input_ids")[0].tolist()
    with pytest.raises(PlaceholderMismatchError, match="1 AV placeholder"):
        official_model.model.embed_prompt(ids, [encoded.av_block, encoded.av_block])
    no_placeholder = [t for t in ids if t != -200]
    with pytest.raises(PlaceholderMismatchError, match="0 AV placeholder"):
        official_model.model.embed_prompt(no_placeholder, [encoded.av_block])
