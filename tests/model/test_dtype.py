"""The compute dtype follows the card: bfloat16 where it is native (compute capability 8.0 and up),
float16 below (a T4 is 7.5), float32 on the CPU, and ``--compute-dtype`` overrides it. The
capability is stubbed: no GPU here."""

from __future__ import annotations

import argparse

import pytest
import torch

from inference.model.loading import CheckpointError, choose_dtype


@pytest.mark.parametrize(
    ("capability", "expected"),
    [((7, 5), torch.float16), ((7, 0), torch.float16), ((8, 0), torch.bfloat16), ((8, 6), torch.bfloat16), ((9, 0), torch.bfloat16)],
)  # fmt: skip
def test_auto_follows_the_capability(monkeypatch, capability, expected):
    asked = []
    monkeypatch.setattr(
        torch.cuda, "get_device_capability", lambda device=None: asked.append(device) or capability
    )
    assert choose_dtype("auto", "cuda") == expected
    assert choose_dtype("auto", "cuda:1") == expected
    assert asked == [torch.device("cuda"), torch.device("cuda:1")]


def test_cpu_is_float32_and_flags_override(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert choose_dtype("auto", "cpu") == torch.float32
    assert choose_dtype("bfloat16", "cuda") == torch.bfloat16  # a T4 told to use bf16 anyway
    assert choose_dtype("float16", "cpu") == torch.float16
    assert choose_dtype("float32", "cuda") == torch.float32


def test_unknown_dtype_is_one_line():
    with pytest.raises(CheckpointError) as caught:
        choose_dtype("fp8", "cuda")
    assert str(caught.value) == "compute dtype must be one of auto, bfloat16, float16, float32, not 'fp8'"


def test_flag_and_variable_reach_the_load_settings(monkeypatch):
    from inference.options import ModelOptions

    monkeypatch.setenv("STUDIO_COMPUTE_DTYPE", "float16")
    parser = argparse.ArgumentParser()
    ModelOptions.add_arguments(parser)
    options = ModelOptions.from_args(parser.parse_args(["--checkpoint", "/some/folder"]))
    assert options.to_load_settings().dtype == "float16"
    options = ModelOptions.from_args(parser.parse_args(["--checkpoint", "/x", "--compute-dtype", "bfloat16"]))
    assert options.to_load_settings().dtype == "bfloat16"
