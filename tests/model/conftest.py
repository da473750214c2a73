"""Model fixtures: the official tiny checkpoint (golden data) loaded once per session."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session")
def official_model(official_tiny):
    """The official tiny checkpoint, loaded as it is, with the hub stand-ins as sources."""
    from inference.model.config import ComponentSources
    from inference.model.loading import LoadSettings, load_model

    stand_ins = official_tiny / "hub_stand_ins"
    settings = LoadSettings(
        checkpoint=str(official_tiny / "checkpoint"),
        device="cpu",
        quantization="none",
        sources=ComponentSources(
            vision=str(stand_ins / "google" / "siglip-so400m-patch14-384"),
            whisper=str(stand_ins / "whisper-large-v3"),
            qformer=str(stand_ins / "bert-base-uncased"),
        ),
    )
    return load_model(settings)


@pytest.fixture(scope="session")
def golden(official_tiny):
    """Loader for the reference arrays: ``golden("spectrogram")`` -> torch tensor."""
    ref = official_tiny / "reference"

    def load(name: str) -> torch.Tensor:
        if name == "pixel_values":
            return torch.from_numpy(np.load(ref / "pixel_values.npz")["pixel_values"])
        if name == "noisy_pixel_values":
            bits = np.load(ref / "noisy_pixel_values_bf16bits.npz")["bits"]
            return torch.from_numpy((bits.astype(np.uint32) << 16).view(np.float32))
        return torch.from_numpy(np.load(ref / f"{name}.npy"))

    return load
