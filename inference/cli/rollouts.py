"""``python -m inference rollouts``: expected correctness of a step (and of its alternatives).

    python -m inference rollouts --trace T.json --step 2 -n 6 --reference B [--alternative 0 ...]
        [--text "a rewritten step"] [--out T2.json]

From the prefix of step K plus the candidate step and ``<end_of_step>``, N continuations are
sampled to ``<|im_end|>`` (top_p 0.9), the follow-up question gets the final answer, and the
fraction of answers equal to the reference is the candidate's expected correctness p(s). With
alternatives (``--alternative J``: index into the trace's alternatives; ``--text``: a rewrite,
added to the trace as a human alternative), each gets the paper's suggested preference of the
step over it: hard 1[p(s) > p(s')], soft sigmoid((p(s) - p(s')) / mu). Prints JSON::

    {"trace_id": ..., "step_index": 2, "reference": "B",
     "results": [{"candidate": "step", "text": ..., "expected_correctness": 0.5,
                  "rollouts": [{"seed": 0, "continuation": ..., "answer": ..., "choice": "B",
                                "correct": true, "stopped": "im_end"}, ...], "settings": {...}},
                 {"candidate": "alternative:0", ...}],
     "preferences": [{"chosen_over": "alternative:0", "p_s": 0.5, "p_s_alt": 0.17,
                      "hard": 1, "soft": 0.84, "mu": 0.2}]}
"""

from __future__ import annotations

import argparse
import json
import sys

from inference.cli.alternatives import add_trace_arguments, load_trace_media, read_trace, write_trace
from inference.errors import UserError
from inference.options import ModelOptions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_trace_arguments(parser)
    parser.add_argument("-n", type=int, default=6, help="rollouts per candidate (paper: 6)")
    parser.add_argument("--reference", help="the correct answer (letter or YES/NO); default: the trace's")
    parser.add_argument(
        "--alternative",
        type=int,
        action="append",
        default=[],
        help="also roll out this alternative (repeatable)",
    )
    parser.add_argument("--text", help="also roll out this rewritten step (stored as a human alternative)")
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=512, help="per continuation")
    parser.add_argument("--answer-max-new-tokens", type=int, default=64, help="for the final answer")
    parser.add_argument("--mu", type=float, default=0.2, help="soft-label temperature (p(s)-p(s'))/mu")
    ModelOptions.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from inference.reasoning.alternatives import RolloutSettings
    from inference.reasoning.pipeline import ClipSession
    from studio_trace import Alternative

    trace = read_trace(args.trace)
    if args.n < 1:
        raise UserError("-n must be at least 1")
    if args.mu <= 0:
        raise UserError("--mu must be positive")
    if not (args.reference or trace.reference_answer):
        raise UserError("the trace has no reference answer; pass --reference (e.g. B)")
    alternatives = list(args.alternative)
    if args.text:
        if not 0 <= args.step < len(trace.steps):
            raise UserError(f"step {args.step} does not exist; the trace has {len(trace.steps)} steps")
        trace.alternatives.append(Alternative(step_index=args.step, text=args.text.strip(), source="human"))
        alternatives.append(len(trace.alternatives) - 1)
    media = load_trace_media(trace, args.video, args.audio)
    loaded = ModelOptions.from_args(args).load()
    settings = RolloutSettings(
        n=args.n,
        top_p=args.top_p,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        answer_max_new_tokens=args.answer_max_new_tokens,
        seed=args.seed,
    )
    out = ClipSession(loaded, media).rollouts(
        trace, args.step, settings, reference=args.reference, alternatives=alternatives, mu=args.mu
    )
    write_trace(trace, args.out)
    reference = out["results"][0]["reference"]
    print(
        json.dumps(
            {"trace_id": trace.id, "step_index": args.step, "reference": reference, **out},
            ensure_ascii=False,
            indent=2,
        )
    )
    if loaded.is_tiny:
        print("note: tiny demo model: these rollouts are meaningless", file=sys.stderr)
    return 0
