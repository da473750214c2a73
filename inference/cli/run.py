"""``python -m inference run``: reason about one clip and print the Trace (JSON or text)."""

from __future__ import annotations

import argparse
import sys

from inference.options import add_model_arguments, load_from_args


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
    parser.add_argument("--max-duration-s", type=float, default=600.0)
    parser.add_argument(
        "--json", action="store_true", help="print the Trace as JSON (default: readable text)"
    )
    parser.add_argument("--out", help="also write the Trace JSON to this file")
    add_model_arguments(parser)


def format_trace(trace) -> str:
    lines = [f"Q: {trace.question}"]
    for i, option in enumerate(trace.options or []):
        lines.append(f"   {chr(ord('A') + i)}. {option}")
    for step in trace.steps:
        score = f"  [score {step.score:.4g}{' TOP' if step.top_t else ''}]" if step.score is not None else ""
        lines.append(f"{step.index + 1}. {step.text}{score}")
    lines.append(f"Answer: {trace.answer.text}  (choice: {trace.answer.choice})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from inference.media import MediaLimits, load_media
    from inference.reasoning.generate import DecodingSettings, DoneEvent, ReasoningRequest, stream_reasoning

    media = load_media(args.video, MediaLimits(max_duration_s=args.max_duration_s), audio_path=args.audio)
    loaded = load_from_args(args)
    request = ReasoningRequest(
        question=args.question,
        options=args.options or None,
        prompt_kind=args.prompt,
        reference_answer=args.reference,
        decoding=DecodingSettings(
            max_new_tokens=args.max_new_tokens,
            do_sample=args.sample,
            temperature=args.temperature,
            top_p=args.top_p,
            seed=args.seed,
        ),
    )
    # Encode the clip once: generation and scoring both start from the same clean AV block.
    encoded = loaded.model.encode_media(media.pixel_values, media.spectrogram, media.real_time)
    done = next(
        e for e in stream_reasoning(loaded, media, request, encoded=encoded) if isinstance(e, DoneEvent)
    )
    trace = done.trace
    if args.score:
        from inference.reasoning.scoring import score_trace

        names = [p.strip() for p in args.perturb.split(",") if p.strip()]
        score_trace(
            loaded, media, trace, perturbations=names, top_t=args.top_t, seed=args.seed, encoded=encoded,
            clean_cache=done.cache,  # generation's prefill of the prompt: scoring skips its own
        )  # fmt: skip
    del done
    trace.clip.path = str(args.video)
    text = trace.to_json(indent=2)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    print(text if args.json else format_trace(trace))
    if loaded.is_tiny:
        print("note: tiny demo model: the reasoning above is meaningless", file=sys.stderr)
    return 0
