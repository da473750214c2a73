"""GPU work on Hugging Face ZeroGPU Spaces: ``spaces.GPU`` when the package is present.

On a ZeroGPU Space a GPU is attached only while a function decorated with ``spaces.GPU`` runs;
everywhere else (a dedicated GPU, a laptop, CI) the package is absent and the decorator below
returns the function unchanged. What the decorated functions return must not hold CUDA
tensors: ours yield Steps, Answers and Traces (plain Python).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)

# Seconds ZeroGPU reserves per call: a 30 s clip's encode + 512 tokens + scoring on an H200
# slice, with room; calls that need longer are cut by the Space, not by us.
ZERO_GPU_DURATION_S = 180


def zero_gpu_available() -> bool:
    return importlib.util.find_spec("spaces") is not None


def gpu_task(fn: F) -> F:
    """``spaces.GPU(duration=ZERO_GPU_DURATION_S)(fn)`` where ``spaces`` is installed, else ``fn``."""
    if not zero_gpu_available():
        return fn
    import spaces

    return spaces.GPU(duration=ZERO_GPU_DURATION_S)(fn)
