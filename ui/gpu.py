"""GPU work on Hugging Face ZeroGPU Spaces: ``spaces.GPU`` when the package is present.

On a ZeroGPU Space a GPU is attached only while a function decorated with ``spaces.GPU`` runs,
for at most the duration it declares; everywhere else (a dedicated GPU, a laptop, CI) either the
package is absent and ``gpu_task`` returns the function unchanged, or it is installed but not on
ZeroGPU and ``spaces.GPU`` itself returns it unchanged. What the decorated functions return must
not hold CUDA tensors: ours yield Steps, Answers and Traces (plain Python).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)

# Seconds ZeroGPU reserves per call, by function: a 30 s clip's encode + 512 tokens + scoring on
# an H200 slice, with room (analysis); sampling alternatives is one step's worth of decoding per
# sample; rollouts decode n full continuations. Calls that need longer are cut by the Space.
ZERO_GPU_DURATION_S = 180
DURATIONS_S = {"_reason": 180, "_sample": 60, "_rollouts": 180}

# What was handed to ``spaces.GPU`` in this process: function name -> declared seconds.
DECLARED: dict[str, int] = {}


def zero_gpu_available() -> bool:
    return importlib.util.find_spec("spaces") is not None


def gpu_task(fn: F) -> F:
    """``spaces.GPU(duration=...)(fn)`` where ``spaces`` is installed, else ``fn``."""
    if not zero_gpu_available():
        return fn
    import spaces

    duration = DURATIONS_S.get(fn.__name__, ZERO_GPU_DURATION_S)
    DECLARED[fn.__name__] = duration
    return spaces.GPU(duration=duration)(fn)
