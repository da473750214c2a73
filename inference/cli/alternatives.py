"""``python -m inference alternatives``: sample replacement candidates for one step of a Trace.

    python -m inference alternatives --trace T.json --step 2 -n 4 [--out T2.json]

Reads the Trace JSON, re-runs the media pipeline on its clip (``trace.clip.path``, or
``--video``), loads the model (same flags as ``run``) and prints JSON::

    {"trace_id": ..., "step_index": 2, "step_text": ..., "alternatives": [
        {"step_index": 2, "text": ..., "source": "model",
         "settings": {"top_p": 0.9, "temperature": 1.0, "max_new_tokens": 64, "seed": 0,
                      "stopped": "marker|im_end|length", "tokens": 9, ...},
         "expected_correctness": null}, ...]}

``--out`` also writes the Trace with the alternatives appended.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict
from pathlib import Path

from inference.errors import UserError
from inference.options import ModelOptions


class TraceFileError(UserError):
    """The --trace file cannot be read as a Trace, or its clip cannot be found."""


def add_trace_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trace", required=True, help="a Trace JSON file (as written by run --out)")
    parser.add_argument("--step", type=int, required=True, help="the step's index (0-based, as in the JSON)")
    parser.add_argument("--video", help="the clip, when not at the trace's clip.path")
    parser.add_argument("--audio", help="a separate audio file, as given to run")
    parser.add_argument("--seed", type=int, default=0, help="sample i uses seed + i")
    parser.add_argument("--out", help="also write the updated Trace JSON to this file")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_trace_arguments(parser)
    parser.add_argument("-n", type=int, default=4, help="how many alternatives (default 4)")
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=64, help="per alternative (official: 64)")
    ModelOptions.add_arguments(parser)


def read_trace(path: str):
    from studio_trace import Trace, TraceFormatError

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise TraceFileError(f"cannot read {path}: {exc.strerror or exc}; check the --trace path") from exc
    try:
        return Trace.from_json(text)
    except (TraceFormatError, TypeError) as exc:
        raise TraceFileError(
            f"{path} is not a Trace JSON file ({exc}); pass a file written by run --out"
        ) from exc


def load_trace_media(trace, video: str | None, audio: str | None = None):
    """The clip's MediaInputs, checked to be the clip the trace was made from."""
    from inference.media import load_media

    path = video or trace.clip.path
    if not path:
        raise TraceFileError("the trace does not say where its clip is (no clip.path); pass --video")
    if not Path(path).exists():
        raise TraceFileError(f"the trace's clip {path} does not exist; pass --video with the clip")
    media = load_media(path, audio_path=audio)
    expected = trace.clip.sha256
    if re.fullmatch(r"[0-9a-f]{64}", expected or "") and media.clip.sha256 != expected:
        raise TraceFileError(
            f"{path} is not the clip this trace was made from (sha256 differs); pass that clip"
        )
    return media


def write_trace(trace, path: str | None) -> None:
    if path:
        Path(path).write_text(trace.to_json(indent=2) + "\n", encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    from inference.reasoning.alternatives import AlternativeSettings
    from inference.reasoning.pipeline import ClipSession

    trace = read_trace(args.trace)
    if args.n < 1:
        raise UserError("-n must be at least 1")
    media = load_trace_media(trace, args.video, args.audio)
    loaded = ModelOptions.from_args(args).load()
    settings = AlternativeSettings(
        n=args.n,
        top_p=args.top_p,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )
    alternatives = ClipSession(loaded, media).alternatives(trace, args.step, settings)
    write_trace(trace, args.out)
    out = {
        "trace_id": trace.id,
        "step_index": args.step,
        "step_text": trace.steps[args.step].text,
        "alternatives": [asdict(a) for a in alternatives],
    }
    print(json.dumps(out, ensure_ascii=False, indent=2))
    if loaded.is_tiny:
        print("note: tiny demo model: these alternatives are meaningless", file=sys.stderr)
    return 0
