"""What tests and benchmarks share lives in testkit/: bench/ never imports tests/, tests/ never
import bench/, testkit/ imports neither, and the product (what app.py and the commands run) does
not import testkit. Read from the source (AST), every import, including those inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PRODUCT = ("app.py", "annotation_db", "inference", "studio_trace", "training", "ui")

# folder or file -> the top-level packages it must not import
FORBIDDEN = {
    "bench": {"tests"},
    "tests": {"bench"},
    "testkit": {"tests", "bench"},
    **{part: {"testkit", "tests", "bench"} for part in PRODUCT},
}


def imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in one file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def import_violations(root: Path) -> list[str]:
    """``path:line imports package`` for every import that ``FORBIDDEN`` rules out under ``root``."""
    out = []
    for part, forbidden in FORBIDDEN.items():
        files = [root / part] if part.endswith(".py") else sorted((root / part).rglob("*.py"))
        for path in files:
            if not path.exists() or ".venv" in path.parts:
                continue
            for line, package in imported_packages(path):
                if package in forbidden:
                    out.append(f"{path.relative_to(root)}:{line} imports {package}")
    return out


def test_tests_bench_and_product_keep_to_their_side():
    assert import_violations(REPO) == []


def test_the_check_sees_imports_at_any_depth(tmp_path):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "load.py").write_text(
        "import json\n\ndef main():\n    from tests.hardening.conftest import AppProcess\n"
    )
    (tmp_path / "tests" / "hardening").mkdir(parents=True)
    (tmp_path / "tests" / "hardening" / "test_load.py").write_text(
        "import bench.load\nfrom testkit import load\n"
    )
    (tmp_path / "inference").mkdir()
    (tmp_path / "inference" / "run.py").write_text(
        "from .model import x\nfrom testkit.bad_inputs import INPUTS\n"
    )
    assert import_violations(tmp_path) == [
        "bench/load.py:4 imports tests",
        "tests/hardening/test_load.py:1 imports bench",
        "inference/run.py:2 imports testkit",
    ]
