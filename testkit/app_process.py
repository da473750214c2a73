"""The app as a user runs it: ``python app.py ...`` in its own process, so that a caller can kill
it, restart it and read its peak memory, and so that a crash in the app is not a crash of the
caller. Used by the hardening tests (through the ``app_process`` fixture) and the benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A local TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (Linux VmHWM), in MB; 0 where unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def reset_peak_rss(pid: int) -> bool:
    """Reset a process's peak resident memory (VmHWM) to its current size, so that the next
    reading is the peak of what follows (Linux ``clear_refs`` 5); False where not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@dataclass
class AppProcess:
    """``python app.py`` with the given flags on a free port; ``start`` waits until it serves."""

    flags: list[str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    preexec: Callable[[], None] | None = None  # run in the child before exec (limits, capabilities)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout_s: float = 240.0) -> AppProcess:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "GRADIO_ANALYTICS_ENABLED": "False",
            "STUDIO_CACHE": os.environ.get("STUDIO_CACHE", str(REPO / ".cache" / "studio")),
        }
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(REPO / "app.py"), "--port", str(self.port), *self.flags],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=self.preexec,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the app exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "config", timeout=2):
                    return self
            except OSError as exc:  # not listening yet, or 401 before login (auth on): it serves
                if getattr(exc, "code", None) in (401, 403):
                    return self
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the app did not serve within {timeout_s:.0f} s:\n{self.log()[-3000:]}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def peak_rss_mb(self) -> float:
        return peak_rss_mb(self.pid)

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed; as a crash or an OOM kill."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, **kwargs):
        from gradio_client import Client

        return Client(self.url, verbose=False, **kwargs)
