"""``python -m inference probe CLIP [--json]``: what the media pipeline sees in a clip.

Runs the whole preprocessing (no model) and prints the clip's facts, the sampled frame times,
the audio and its 30 s chunks, the tensor shapes and the exact number of LLM tokens the clip's
audio-visual block costs. A bad file: exit code 2 and the one-line reason on stderr.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from inference.model.layout import VIDEO_TOKENS_PER_FRAME


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("clip", type=Path, help="video file (MP4, MOV, MKV, WEBM, ...)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--audio", type=Path, help="separate audio file to use instead of the clip's track")
    parser.add_argument(
        "--max-duration",
        type=float,
        default=None,
        metavar="S",
        help="longest clip accepted, in seconds (default 600)",
    )
    parser.add_argument(
        "--max-file-mb",
        type=float,
        default=None,
        metavar="MB",
        help="largest file accepted, in MB (default 500)",
    )


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict, replace

    from inference.media import MediaLimits, load_media

    limits = MediaLimits()
    if args.max_duration is not None:
        limits = replace(limits, max_duration_s=args.max_duration)
    if args.max_file_mb is not None:
        limits = replace(limits, max_file_mb=args.max_file_mb)
    inputs = load_media(args.clip, limits, audio_path=args.audio)
    report = describe(inputs)
    report["clip"] = asdict(inputs.clip)
    if args.json:
        print(json.dumps(report))
    else:
        print(format_text(report))
    return 0


def describe(inputs: Any) -> dict[str, Any]:
    """The probe's facts about one MediaInputs, JSON-ready."""
    n_frames, n_chunks = inputs.n_frames, inputs.n_chunks
    tokens = inputs.llm_tokens
    return {
        "source_frames": inputs.source_frames,
        "real_time_s": inputs.real_time,
        "frames": n_frames,
        "frame_indices": inputs.frame_indices,
        "audio_source": inputs.audio_source,
        "audio_seconds": inputs.audio_samples / 16000,
        "audio_samples": inputs.audio_samples,
        "audio_chunks": n_chunks,
        "pixel_values_shape": list(inputs.pixel_values.shape),
        "spectrogram_shape": list(inputs.spectrogram.shape),
        "llm_tokens": tokens,
        "video_tokens": n_frames * VIDEO_TOKENS_PER_FRAME,
        "audio_tokens": tokens - n_frames * VIDEO_TOKENS_PER_FRAME,
        "decode_s": round(inputs.timings.get("decode_s", 0.0), 3),
    }


def format_text(report: dict[str, Any]) -> str:
    clip = report["clip"]
    times = " ".join(f"{t:.2f}" for t in clip["frame_times_s"])
    audio = {
        "container": "the clip's own track",
        "file": "separate file",
        "silence": "none (silence)",
    }[report["audio_source"]]
    lines = [
        f"clip        {clip['name']}  sha256 {clip['sha256'][:16]}",
        f"duration    {clip['duration_s']:.3f} s ({report['source_frames']} frames at {clip['fps']:.3f} fps)",
        f"size        {clip['width']}x{clip['height']} (as displayed)",
        f"has_audio   {str(clip['has_audio']).lower()}: {audio}",
        f"frames      {report['frames']} sampled, at (s): {times}",
        f"audio       {report['audio_seconds']:.3f} s -> {report['audio_chunks']} chunk(s) of 30 s",
        f"tensors     pixel_values {tuple(report['pixel_values_shape'])}, "
        f"spectrogram {tuple(report['spectrogram_shape'])}",
        f"LLM tokens  {report['llm_tokens']} ({report['frames']} frames x {VIDEO_TOKENS_PER_FRAME} + "
        f"{report['audio_tokens']} audio)",
        f"decode      {report['decode_s']:.3f} s",
    ]
    return "\n".join(lines)
