"""``python -m inference run``: reason about one clip and print the Trace (JSON or text)."""

from __future__ import annotations

import argparse
import sys

from inference.errors import UserError
from inference.options import ModelOptions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", required=True, help="the clip (mp4, webm, mov, ...)")
    parser.add_argument("--audio", help="a separate audio file instead of the clip's own track (16 kHz WAV)")
    parser.add_argument("--question", default="", help="the question (omit for --prompt synthdec)")
    parser.add_argument("--options", nargs="*", default=None, help="answer options, in order (A, B, ...)")
    parser.add_argument(
        "--reference", help="the correct answer (option letter or YES/NO), stored on the trace"
    )
    parser.add_argument("--prompt", choices=["reasoning", "direct", "synthdec"], default="reasoning")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--sample", action="store_true", help="sample (top-p) instead of greedy decoding")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--score", action="store_true", help="add the contrastive step scores")
    parser.add_argument("--perturb", default="noise", help="comma-separated: noise,mute,shuffle")
    parser.add_argument("--top-t", type=int, default=3, help="flag this many highest-scoring steps")
    parser.add_argument(
        "--no-clip-spans",
        action="store_true",
        help="skip each step's clip span (the moment it attends to most; costs about one scoring pass)",
    )
    parser.add_argument("--max-duration-s", type=float, default=600.0)
    parser.add_argument(
        "--json", action="store_true", help="print the Trace as JSON (default: readable text)"
    )
    parser.add_argument("--out", help="also write the Trace JSON to this file")
    ModelOptions.add_arguments(parser)


def format_trace(trace) -> str:
    lines = [f"Q: {trace.question}"]
    for i, option in enumerate(trace.options or []):
        lines.append(f"   {chr(ord('A') + i)}. {option}")
    for step in trace.steps:
        score = f"  [score {step.score:.4g}{' TOP' if step.top_t else ''}]" if step.score is not None else ""
        lines.append(f"{step.index + 1}. {step.text}{score}")
    lines.append(f"Answer: {trace.answer.text}  (choice: {trace.answer.choice})")
    return "\n".join(lines)


def settings_from_args(args: argparse.Namespace):
    from inference.reasoning.perturb import perturbation_names
    from inference.reasoning.pipeline import AnalysisSettings

    perturbations = perturbation_names(args.perturb) if args.score else ()
    if args.score and not perturbations:
        raise UserError("--score needs at least one --perturb name, e.g. noise")
    return AnalysisSettings(
        prompt_kind=args.prompt,
        question=args.question,
        options=tuple(args.options or ()),
        reference_answer=args.reference,
        max_new_tokens=args.max_new_tokens,
        do_sample=args.sample,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        perturbations=perturbations,
        top_t=args.top_t,
        clip_spans=not args.no_clip_spans,
    )


def run(args: argparse.Namespace) -> int:
    from inference.media import MediaLimits, load_media
    from inference.reasoning.pipeline import ClipSession, analysis_trace, analyze

    settings = settings_from_args(args)
    media = load_media(args.video, MediaLimits(max_duration_s=args.max_duration_s), audio_path=args.audio)
    loaded = ModelOptions.from_args(args).load()
    trace = analysis_trace(analyze(ClipSession(loaded, media), settings))
    trace.clip.path = str(args.video)
    text = trace.to_json(indent=2)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    print(text if args.json else format_trace(trace))
    if loaded.is_tiny:
        print("note: tiny demo model: the reasoning above is meaningless", file=sys.stderr)
    return 0
