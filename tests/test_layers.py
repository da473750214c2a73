"""The layers' import rules (README "Layout"), checked on the source with ``ast``.

- ``annotation_db`` imports no torch, gradio, ``inference`` or ``ui``: the store runs without a model;
- ``inference`` imports no gradio, sqlite (``sqlite3``, ``sqlite_utils``), ``annotation_db`` or ``ui``;
- ``ui`` does not import ``app`` (the entry point wires the layers, not the other way round);
- ``studio_trace`` imports only the standard library and itself: every layer can import the Trace.

Every import statement counts, also one inside a function or under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "annotation_db": {"torch", "gradio", "inference", "ui"},
    "inference": {"gradio", "sqlite3", "sqlite_utils", "annotation_db", "ui"},
    "ui": {"app"},
}
STDLIB_ONLY = {"studio_trace"}
LAYERS = ("studio_trace", "annotation_db", "inference", "ui", "training")


def imported_modules(source: str, filename: str) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return sorted(found)


def violations(path: Path, layer: str) -> list[str]:
    """The broken rules in one file of ``layer`` as "file:line: layer imports name" lines."""
    where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    out = []
    for line, name in imported_modules(path.read_text(encoding="utf-8"), str(path)):
        if layer in STDLIB_ONLY:
            broken = name != layer and name not in sys.stdlib_module_names
        else:
            broken = name in FORBIDDEN.get(layer, set())
        if broken:
            out.append(f"{where}:{line}: {layer} imports {name}")
    return out


def layer_files() -> list[tuple[Path, str]]:
    files = [(path, layer) for layer in LAYERS for path in sorted((REPO / layer).rglob("*.py"))]
    return files + [(REPO / "app.py", "app")]


def test_every_layer_keeps_its_import_rules():
    files = layer_files()
    assert {layer for _, layer in files} == {*LAYERS, "app"}
    assert len(files) > 40  # the walk found the packages (not an empty glob)
    broken = [v for path, layer in files for v in violations(path, layer)]
    assert broken == []


def test_the_checker_catches_a_planted_violation(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text(
        "import json\n"
        "def f():\n"
        "    import torch.nn\n"
        "    from inference.model import prompts\n"
        "from annotation_db import Store\n"
        "from . import sibling\n"
    )
    assert violations(planted, "annotation_db") == [
        f"{planted}:3: annotation_db imports torch",
        f"{planted}:4: annotation_db imports inference",
    ]
    assert violations(planted, "inference") == [f"{planted}:5: inference imports annotation_db"]
    assert violations(planted, "studio_trace") == [
        f"{planted}:3: studio_trace imports torch",
        f"{planted}:4: studio_trace imports inference",
        f"{planted}:5: studio_trace imports annotation_db",
    ]
    planted.write_text("import app\n")
    assert violations(planted, "ui") == [f"{planted}:1: ui imports app"]
