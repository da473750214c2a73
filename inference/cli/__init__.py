"""``python -m inference <command>``: one subcommand per module, imported only when used.

Each command module defines ``add_arguments(parser)`` and ``run(args) -> int``. User errors are
typed exceptions with a one-line message: they go to stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "probe": ("inference.cli.probe", "show what the media pipeline sees in a clip"),
    "tiny-checkpoint": ("inference.tiny", "write a tiny random-init checkpoint in the released layout"),
    "run": ("inference.cli.run", "reason about a clip and print the Trace"),
    "alternatives": ("inference.cli.alternatives", "sample alternative steps for one step of a Trace"),
    "rollouts": ("inference.cli.rollouts", "expected correctness of a step (and alternatives) by rollouts"),
    "batch": (
        "inference.batch.run",
        "Traces for every question of a manifest, on one or many GPUs (accelerate)",
    ),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (so ``--help`` stays instant and a
    command's heavy imports never slow the others)."""
    parser = argparse.ArgumentParser(prog="python -m inference", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        command_parser.set_defaults(_module=module_name)
        if name == command:
            importlib.import_module(module_name).add_arguments(command_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    from inference.errors import UserError

    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else None).parse_args(argv)
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (``... | head``): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141
