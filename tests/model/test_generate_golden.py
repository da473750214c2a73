"""Greedy decoding reproduces the official prediction_generate ids on the official tiny model."""

from __future__ import annotations

import json

from inference.reasoning.generate import Decoder, DecodingSettings, TokenPicker

REAL_TIME = 6.006


def test_greedy_ids_match_official(official_model, golden, official_tiny):
    reference = json.loads((official_tiny / "reference" / "reference.json").read_text())
    model = official_model.model
    encoded = model.encode_media(golden("pixel_values"), golden("spectrogram"), REAL_TIME)
    decoder = Decoder(model)
    logits = decoder.feed_embeds(
        model.embed_prompt(golden("prompt_input_ids")[0].tolist(), [encoded.av_block])
    )
    ids = list(decoder.generate(logits, TokenPicker(DecodingSettings()), 16, stop_ids=[151645]))
    assert ids == reference["greedy_generated_ids"]
