"""``pip install .`` works: the packages, the data files and the console scripts, from any folder.

Installs a copy of the source into a fresh virtual environment. To stay offline and fast the
environment sees the test interpreter's site-packages through a ``.pth`` file (torch and the
rest are not installed again: ``--no-deps``); the project's own modules must come from the
fresh install, which the test checks by their file paths.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = {
    "studio-app": "usage: python app.py",
    "studio-inference": "usage: python -m inference",
    "annotation-db": "usage: python -m annotation_db",
    "studio-train": "usage: python -m training.pdpo",
}

pytestmark = pytest.mark.slow


def _requirements() -> list[str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("editable", [False, True], ids=["install", "editable"])
def test_pip_install_gives_packages_and_console_scripts(tmp_path, editable):
    source = tmp_path / "src"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "data", "build", "*.egg-info", "__pycache__", "tests", "clips"
        ),
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "shared.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps"]
    install += ["--no-build-isolation", "--no-index", "--quiet"]
    install += ["-e", str(source)] if editable else [str(source)]
    subprocess.run(install, check=True, capture_output=True, text=True)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for script, usage in SCRIPTS.items():
        result = subprocess.run(
            [str(venv / "bin" / script), "--help"], cwd=elsewhere, capture_output=True, text=True, timeout=300
        )
        assert (result.returncode, result.stdout.startswith(usage)) == (0, True), (
            script,
            result.stderr[-2000:],
        )
    for module in ("annotation_db", "inference", "training.pdpo"):
        result = subprocess.run(
            [str(python), "-m", module, "--help"], cwd=elsewhere, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, (module, result.stderr[-2000:])
    code = (
        "import app, annotation_db, inference.model, inference.media, inference.reasoning, inference.batch, "
        "studio_trace, training, ui, examples.make_examples as m; "
        "print(app.__file__); print(annotation_db.__file__); print(ui.__file__); print(m.QUESTIONS.is_file())"
    )
    out = subprocess.run([str(python), "-c", code], cwd=elsewhere, capture_output=True, text=True, check=True)
    where = source if editable else Path(site)
    app_file, db_file, ui_file, questions = out.stdout.split()
    assert [Path(p).is_relative_to(where) for p in (app_file, db_file, ui_file)] == [True] * 3
    assert questions == "True"  # examples/questions.json is installed with the package
    requires = subprocess.run(
        [
            str(python),
            "-c",
            "from importlib.metadata import requires; print('\\n'.join(requires('video-salmonn-o1-studio')))",
        ],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert [r for r in requires if r] == _requirements()
