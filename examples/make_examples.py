"""The app's example clips: three short synthetic clips the project makes itself, and a question
with options and a reference answer for each (``examples/questions.json``).

    python examples/make_examples.py [OUT_DIR]   # default examples/clips/ (git-ignored)

The app calls ``ensure_examples(out_dir)`` at startup; it writes only the clips that are
missing (about a second each on 2 cores) and returns their paths in the order of questions.json.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``examples`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.synth import write_clip

HERE = Path(__file__).resolve().parent
DEFAULT_DIR = HERE / "clips"
QUESTIONS = HERE / "questions.json"


@dataclass(frozen=True)
class Example:
    file: str
    title: str
    question: str
    options: list[str]
    reference_answer: str
    clip: dict[str, Any] = field(default_factory=dict)  # write_clip arguments


_COMMON = {"seconds": 7.0, "fps": 16, "size": (640, 360), "number": False}  # 16 fps: samples every 0.5 s

EXAMPLES = [
    Example(
        file="red_ball_chirp.mp4",
        title="Moving ball, rising tone",
        question="Which way does the red ball move, and how does the sound change?",
        options=[
            "Left to right, while the tone rises in pitch",
            "Right to left, while the tone rises in pitch",
            "Left to right, while the tone falls in pitch",
            "It stays still and there is no sound",
        ],
        reference_answer="A",
        clip={**_COMMON, "shapes": ("circle",), "audio": "chirp"},
    ),
    Example(
        file="blue_square_beeps.mp4",
        title="Falling square, beeps",
        question="How many beeps can be heard while the blue square moves down?",
        options=["3", "5", "7", "10"],
        reference_answer="C",  # one 0.2 s beep at the start of every second of a 7 s clip
        clip={**_COMMON, "shapes": ("square",), "audio": "beeps"},
    ),
    Example(
        file="silent_shapes.mp4",
        title="Two shapes, no sound",
        question="Which shape moves downward, and what can be heard?",
        options=[
            "The red circle, with a beep",
            "The blue square, in silence",
            "The blue square, with music",
            "The red circle, in silence",
        ],
        reference_answer="B",
        clip={**_COMMON, "shapes": ("circle", "square"), "audio": None},
    ),
]


def questions() -> list[dict[str, Any]]:
    """The content of questions.json: one record per clip, shaped like ../shared/clips'
    manifest (file, question, options, reference_answer) plus a title for the UI."""
    return [
        {
            "file": ex.file,
            "title": ex.title,
            "question": ex.question,
            "options": ex.options,
            "reference_answer": ex.reference_answer,
            "has_audio": ex.clip.get("audio") is not None,
        }
        for ex in EXAMPLES
    ]


def ensure_examples(out_dir: str | Path | None = None) -> list[Path]:
    """Write the example clips that are missing into ``out_dir`` and return all their paths."""
    out_dir = Path(out_dir) if out_dir is not None else DEFAULT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ex in EXAMPLES:
        path = out_dir / ex.file
        if not path.exists():
            partial = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
            write_clip(partial, **ex.clip)
            partial.replace(path)  # atomic: a crash never leaves a half-written example behind
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out_dir = Path(argv[0]) if argv else DEFAULT_DIR
    for path in ensure_examples(out_dir):
        print(path)
    QUESTIONS.write_text(json.dumps(questions(), indent=1, ensure_ascii=False) + "\n")
    print(QUESTIONS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
