"""AV blocks are computed once per clip and cached in memory and on disk."""

from __future__ import annotations

import pytest
import torch

from training.features import ClipMismatchError, FeatureCache


def test_block_is_computed_once_and_read_back_from_disk(tiny_model, toy_clips, tmp_path):
    model = tiny_model.model
    clip = toy_clips[1]
    first = FeatureCache(model, tmp_path / "cache")
    block = first.get(clip["sha256"], clip["path"])
    again = first.get(clip["sha256"], clip["path"])
    assert again is block and first.stats == {"memory": 1, "disk": 0, "encoded": 1}
    files = list((tmp_path / "cache").glob("*/*.pt"))
    assert [f.name for f in files] == [f"{clip['sha256']}.pt"]
    assert files[0].parent.name == first.fingerprint

    # another process (a new cache) needs neither the clip nor the encoders
    second = FeatureCache(model, tmp_path / "cache")
    from_disk = second.get(clip["sha256"], "/nowhere/clip.mp4")
    assert second.stats == {"memory": 0, "disk": 1, "encoded": 0}
    assert torch.equal(from_disk, block)

    from inference.media import load_media

    media = load_media(clip["path"])
    with torch.no_grad():
        direct = model.encode_media(media.pixel_values, media.spectrogram, float(media.real_time)).av_block
    assert torch.equal(block, direct)


def test_memory_keeps_the_last_clips_when_a_disk_cache_holds_the_rest(tiny_model, toy_clips, tmp_path):
    cache = FeatureCache(tiny_model.model, tmp_path / "cache", memory_clips=1)
    for clip in toy_clips[:2]:
        cache.get(clip["sha256"], clip["path"])
    assert list(cache._memory) == [toy_clips[1]["sha256"]]
    assert cache.has(toy_clips[0]["sha256"])


def test_a_changed_or_missing_clip_is_an_error(tiny_model, toy_clips, tmp_path):
    cache = FeatureCache(tiny_model.model, video_roots=[tmp_path])
    clip = toy_clips[0]
    with pytest.raises(ClipMismatchError, match="not the .* it was labelled on"):
        cache.get("0" * 64, clip["path"])
    with pytest.raises(ClipMismatchError, match="not found .*pass --video-root"):
        cache.get(clip["sha256"], "missing.mp4")


def test_the_fingerprint_follows_the_encoder_weights(tiny_checkpoint):
    from inference.model.loading import LoadSettings, load_model
    from training.features import encoder_fingerprint

    model = load_model(LoadSettings(checkpoint=str(tiny_checkpoint), device="cpu", quantization="none")).model
    before = encoder_fingerprint(model)
    assert encoder_fingerprint(model) == before
    with torch.no_grad():
        model.mm_projector[0].weight[0, 0] += 1.0
    assert encoder_fingerprint(model) != before
