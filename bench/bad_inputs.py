"""The bad-input suite as a table: every input of testkit/bad_inputs.py through the CLI
(``probe`` and ``run`` with the tiny model) and through the app, with each process's peak memory.

    .venv/bin/python bench/bad_inputs.py            # the table in bench/RESULTS.md
    .venv/bin/python bench/bad_inputs.py --no-app   # the CLI only

CLI: each command in its own process, one at a time; peak = the command's own ru_maxrss.
App: one ``python app.py`` (tiny model, CPU, scratch database, --max-duration-s 600) analyses the
inputs in order through gradio_client; its peak is its high-water mark (VmHWM) while that input
ran, reset before each one, so it includes what the app holds from earlier requests (the model,
the media cache). A ✓ means the outcome is the expected one (a correct result, or a one-line
error containing the expected phrase); ✗ lists what differs.

Writes everything as JSON to bench/out/bad_inputs.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from testkit.app_process import AppProcess, reset_peak_rss  # noqa: E402
from testkit.bad_inputs import INPUTS, InputSet  # noqa: E402
from testkit.outcomes import Outcome, app_outcome, cli_args, cli_outcome, run_cli  # noqa: E402


def mark(*outcomes: Outcome) -> str:
    problems = [problem for outcome in outcomes for problem in outcome.problems]
    return "✓" if not problems else "✗ " + "; ".join(problems)


def what_happened(outcome: Outcome) -> str:
    if outcome.kind == "failure":
        return f"FAILURE: {outcome.detail}"
    return outcome.detail.removeprefix("error: ")


def cli_cell(probe: Outcome, run: Outcome) -> str:
    """Both commands in one cell: they share the media pipeline, so they should agree."""
    how = {"result": "exit 0", "error": "exit 2", "failure": "?"}
    if (probe.kind, what_happened(probe)) == (run.kind, what_happened(run)):
        return f"{mark(probe, run)} {how[probe.kind]}: {what_happened(probe)}"
    return (
        f"{mark(probe)} probe {how[probe.kind]}: {what_happened(probe)}<br>"
        f"{mark(run)} run {how[run.kind]}: {what_happened(run)}"
    )


def app_cell(served: Outcome, cli: Outcome | None) -> str:
    if cli is not None and (served.kind, what_happened(served)) == (cli.kind, what_happened(cli)):
        same = "AppError, the same line" if served.kind == "error" else "trace stored, the same clip facts"
        return f"{mark(served)} {same}"
    head = {"result": "trace stored", "error": "AppError", "failure": ""}[served.kind]
    return f"{mark(served)} {head}: {what_happened(served)}"


def run_cli_all(inputs: InputSet, checkpoint: Path, cwd: Path) -> dict[str, dict[str, Outcome]]:
    results: dict[str, dict[str, Outcome]] = {}
    for item, path in inputs:
        results[item.name] = {}
        for command in ("probe", "run"):
            outcome = cli_outcome(item, path, command, run_cli(cli_args(command, path, checkpoint), cwd))
            results[item.name][command] = outcome
            print(
                f"cli {command:5s} {item.name:20s} {outcome.peak_mb:6.0f} MB {outcome.seconds:5.1f} s",
                file=sys.stderr,
            )
    return results


def run_app_all(inputs: InputSet, checkpoint: Path, scratch: Path) -> tuple[dict[str, Outcome], dict]:
    from annotation_db import Store

    db = scratch / "bad_inputs.db"
    flags = ["--db", str(db), "--torch-threads", "1", "--checkpoint", str(checkpoint), "--device", "cpu"]
    app = AppProcess([*flags, "--max-duration-s", "600"], log_path=scratch / "app.log").start()
    facts = {"started_mb": round(app.peak_rss_mb())}
    results: dict[str, Outcome] = {}
    store = Store.open(str(db))
    try:
        client = app.client()
        for item, path in inputs:
            resettable = reset_peak_rss(app.pid)
            outcome = app_outcome(item, path, client, lambda i: store.get_trace(i).to_dict())
            outcome.peak_mb = app.peak_rss_mb()
            if not app.alive():
                outcome.problems.append("the app died")
            results[item.name] = outcome
            print(f"app {item.name:20s} {outcome.peak_mb:6.0f} MB {outcome.seconds:5.1f} s", file=sys.stderr)
            if not app.alive():
                break
        facts["peak_reset_per_input"] = resettable
        facts["alive_at_end"] = app.alive()
        facts["traceback_in_log"] = "Traceback" in app.log()
    finally:
        store.close()
        app.stop()
    return results, facts


def table(cli: dict[str, dict[str, Outcome]], app: dict[str, Outcome]) -> str:
    rows = [
        "| input | what | CLI (`probe`, `run`) | CLI peak MB (probe / run) | app `/analyze` | app peak MB |",
        "|---|---|---|---|---|---|",
    ]
    for item in INPUTS:
        probe, run = cli.get(item.name, {}).get("probe"), cli.get(item.name, {}).get("run")
        served = app.get(item.name)
        cells = [
            f"`{item.name}`",
            item.what,
            cli_cell(probe, run) if probe and run else "-",
            f"{probe.peak_mb:.0f} / {run.peak_mb:.0f}" if probe and run else "-",
            app_cell(served, probe) if served else "-",
            f"{served.peak_mb:.0f}" if served else "-",
        ]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-app", action="store_true", help="the CLI only")
    parser.add_argument("--no-cli", action="store_true", help="the app only")
    parser.add_argument("--checkpoint", help="model folder (default: the tiny demo checkpoint)")
    parser.add_argument("--out", default=str(REPO / "bench" / "out" / "bad_inputs.json"))
    args = parser.parse_args()
    os.environ.setdefault("STUDIO_CACHE", str(REPO / ".cache" / "studio"))
    if args.checkpoint:
        checkpoint = Path(args.checkpoint)
    else:
        from inference.tiny import default_tiny_checkpoint

        checkpoint = Path(default_tiny_checkpoint(log=lambda message: print(message, file=sys.stderr)))
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory(prefix="bad-inputs-") as scratch:
        scratch = Path(scratch)
        inputs = InputSet(scratch / "inputs")
        start = time.perf_counter()
        for _ in inputs:  # all made up front, so that making them is not timed with the CLI
            pass
        made_s = time.perf_counter() - start
        cli = {} if args.no_cli else run_cli_all(inputs, checkpoint, scratch / "cwd")
        app, app_facts = ({}, {}) if args.no_app else run_app_all(inputs, checkpoint, scratch)
        pwned = sorted(
            p.name for folder in (scratch / "cwd", inputs.folder, REPO) for p in folder.glob("PWNED*")
        )
    report = {
        "machine": machine,
        "inputs_made_s": round(made_s, 1),
        "app": app_facts,
        "files_created_by_the_shell_name": pwned,
        "cli": {name: {cmd: asdict(o) for cmd, o in by_cmd.items()} for name, by_cmd in cli.items()},
        "app_outcomes": {name: asdict(o) for name, o in app.items()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"Machine: {machine}. Inputs made in {made_s:.1f} s.")
    if app_facts:
        print(
            f"App: {app_facts['started_mb']} MB after start (model loaded); alive at the end: "
            f"{app_facts['alive_at_end']}; traceback in its log: {app_facts['traceback_in_log']}."
        )
    print(f"Files created by commands in the shell-syntax file name: {pwned or 'none'}.\n")
    print(table(cli, app))
    failed = [o for by_cmd in cli.values() for o in by_cmd.values() if o.problems]
    failed += [o for o in app.values() if o.problems]
    return 1 if failed or pwned else 0


if __name__ == "__main__":
    sys.exit(main())
