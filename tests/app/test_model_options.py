"""One model-options type (issue 13): the app, every model command and training read the same
flags and environment variables into the same ``ModelOptions``, and build the LoadSettings from it."""

from __future__ import annotations

import argparse

import pytest

from inference.cli import build_parser as cli_parser
from inference.model.config import ComponentSources
from inference.options import MODEL_FLAGS, ModelOptions
from ui.config import parse_config

ENV = {
    "STUDIO_CHECKPOINT": "/models/ckpt",
    "STUDIO_REVISION": "v2",
    "STUDIO_QUANTIZATION": "8bit",
    "STUDIO_DEVICE": "cpu",
    "STUDIO_ADAPTER": "/adapters/run1",
}
FLAGS = ["--checkpoint", "/other", "--quantization", "none", "--vision-source", "/siglip"]


def cli_options(command: list[str], argv: list[str], environ: dict[str, str], monkeypatch) -> ModelOptions:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return ModelOptions.from_args(cli_parser(command[0]).parse_args([*command, *argv]))


RUN = ["run", "--video", "clip.mp4"]
BATCH = ["batch", "--manifest", "m.jsonl", "--out", "out"]


@pytest.mark.parametrize("command", [RUN, BATCH], ids=["run", "batch"])
@pytest.mark.parametrize(
    "argv, environ",
    [([], {}), ([], ENV), (FLAGS, ENV), (FLAGS, {})],
    ids=["defaults", "environment", "flags over environment", "flags"],
)
def test_app_and_commands_read_the_same_options(command, argv, environ, monkeypatch):
    app = parse_config(argv, environ).model_options
    assert cli_options(command, argv, environ, monkeypatch) == app
    expected = ModelOptions()
    if environ:
        expected = ModelOptions(
            checkpoint="/models/ckpt",
            revision="v2",
            quantization="8bit",
            device="cpu",
            adapter="/adapters/run1",
        )
    if argv:
        expected = ModelOptions(
            **{
                **expected.__dict__,
                "checkpoint": "/other",
                "quantization": "none",
                "vision_source": "/siglip",
            }
        )
    assert app == expected


def test_training_reads_the_same_flags_and_variables(monkeypatch):
    from training.pdpo import add_arguments

    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--pairs", "p.jsonl", "--out", "o", "--checkpoint", "/other"])
    # Training makes an adapter: it takes no --adapter and ignores STUDIO_ADAPTER.
    assert ModelOptions.from_args(args) == ModelOptions(
        checkpoint="/other", revision="v2", quantization="8bit", device="cpu"
    )


def test_every_flag_has_a_field_and_the_load_settings_carry_them():
    assert [spec.field for spec in MODEL_FLAGS] == list(ModelOptions.__dataclass_fields__)
    options = ModelOptions(
        checkpoint="/models/ckpt",
        revision="v2",
        quantization="4bit",
        device="cuda",
        adapter="/a",
        vision_source="/v",
        whisper_source="/w",
        qformer_source="/q",
    )
    settings = options.to_load_settings()
    assert (
        settings.checkpoint,
        settings.revision,
        settings.quantization,
        settings.device,
        settings.adapter,
    ) == (
        "/models/ckpt",
        "v2",
        "4bit",
        "cuda",
        "/a",
    )
    assert settings.sources == ComponentSources(vision="/v", whisper="/w", qformer="/q")
    assert options.to_load_settings(device="cpu", quantization="none", dtype="float32").device == "cpu"


def test_a_bad_quantization_is_refused_by_the_app_and_the_commands(monkeypatch, capsys):
    with pytest.raises(SystemExit):
        parse_config(["--quantization", "3bit"], {})
    with pytest.raises(SystemExit):
        cli_options(RUN, ["--quantization", "3bit"], {}, monkeypatch)
    assert "invalid choice: '3bit'" in capsys.readouterr().err
