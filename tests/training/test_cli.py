"""``python -m training.pdpo``: the adapter folder, its settings and log, and the adapter
reloading through ``inference.model.loading`` with the same effect it had in training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from testkit.app_process import free_port
from training.config import LoraSettings, PDPOConfig

REPO = Path(__file__).resolve().parents[2]


def run_pdpo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "training.pdpo", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""},
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory, toy_pairs, tiny_checkpoint):
    out = tmp_path_factory.mktemp("run") / "adapter"
    cache = out.parent / "features"
    result = run_pdpo(
        "--pairs", str(toy_pairs["train"]), "--eval-pairs", str(toy_pairs["held_out"]),
        "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--feature-cache", str(cache),
        "--max-steps", "5", "--batch-pairs", "4", "--lr", "1e-3", "--warmup-ratio", "0",
        "--lora-r", "8", "--lora-alpha", "16", "--lora-dropout", "0", "--seed", "3", "--no-group-by-clip",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_adapter_folder_holds_adapter_settings_hash_and_log(trained, toy_pairs, tiny_checkpoint):
    from training.data import file_sha256

    out, result = trained
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",  # peft's model card
        "adapter_config.json",
        "adapter_model.safetensors",
        "log.jsonl",
        "training_config.json",
    ]
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"]) == (8, 16)
    assert sorted(adapter["target_modules"]) == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    settings = json.loads((out / "training_config.json").read_text())
    assert settings["pairs"]["sha256"] == file_sha256(toy_pairs["train"])
    assert settings["pairs"]["used"] == 21 and settings["eval_pairs"]["used"] == 9
    assert settings["eval_pairs"]["sha256"] == file_sha256(toy_pairs["held_out"])
    assert settings["config"]["seed"] == 3 and settings["config"]["beta"] == 0.1
    config = PDPOConfig.from_dict(settings["config"])  # the settings read back as they were
    assert config == PDPOConfig(
        learning_rate=1e-3, warmup_ratio=0.0, max_steps=5, batch_pairs=4, seed=3, group_by_clip=False,
        lora=LoraSettings(r=8, alpha=16, dropout=0.0),
    )  # fmt: skip
    assert settings["config"]["lora"] == {
        "r": 8, "alpha": 16, "dropout": 0.0,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    }  # fmt: skip
    assert settings["model"]["checkpoint_dir"] == str(tiny_checkpoint)
    assert settings["model"]["quantization"] == "none"
    assert settings["summary"]["eval"]["accuracy"] > settings["summary"]["base_eval"]["accuracy"]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["event"] for r in log] == ["eval"] + ["step"] * 5 + ["eval"]
    assert set(log[1]) >= {"loss", "accuracy", "margin", "grad_norm", "lr", "pairs_per_s"}
    # progress on stdout, one line per step
    assert sum(line.startswith("step ") for line in result.stdout.splitlines()) == 5


def test_saved_adapter_reloads_and_changes_the_model_output(trained, toy_pairs, tiny_checkpoint, tiny_model):
    from inference.model.loading import LoadSettings, load_model
    from training.data import load_pairs
    from training.features import FeatureCache
    from training.trainer import adapter_margins

    out, _ = trained
    adapted = load_model(
        LoadSettings(checkpoint=str(tiny_checkpoint), device="cpu", quantization="none", adapter=str(out))
    )
    assert adapted.describe()["adapter"] == str(out)
    ids = [151644, -200, 198, 40, 1490, 264]
    av = torch.zeros(20, tiny_model.model.embed_tokens.weight.shape[1])
    with torch.no_grad():
        base = tiny_model.model.llm(inputs_embeds=tiny_model.model.embed_prompt(ids, [av])).logits
        tuned = adapted.model.llm(inputs_embeds=adapted.model.embed_prompt(ids, [av])).logits
        with adapted.model.llm.disable_adapter():
            off = adapted.model.llm(inputs_embeds=adapted.model.embed_prompt(ids, [av])).logits
    assert (tuned - base).abs().max() > 1e-3  # the adapter changes the output
    torch.testing.assert_close(off, base)  # and switching it off gives the base model back

    # the reloaded adapter has the held-out margins the training run reported
    held_out = load_pairs(toy_pairs["held_out"], adapted.tokenizer).pairs
    losses = adapter_margins(adapted.model, held_out, FeatureCache(adapted.model, out.parent / "features"))
    reported = json.loads((out / "training_config.json").read_text())["summary"]["eval"]
    assert abs(float(losses.margin.mean()) - reported["margin"]) < 1e-4
    assert float((losses.margin > 0).float().mean()) == reported["accuracy"]


def test_user_errors_exit_2_with_one_line(trained, toy_pairs, tmp_path):
    out, _ = trained
    again = run_pdpo("--pairs", str(toy_pairs["train"]), "--out", str(out), "--checkpoint", "tiny")
    assert again.returncode == 2 and again.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "already holds an adapter" in again.stderr
    missing = run_pdpo("--pairs", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "a"), "--beta", "0")
    assert missing.returncode == 2 and "beta must be positive" in missing.stderr


def test_two_processes_train_the_same_adapter_as_one(trained, toy_pairs, tiny_checkpoint):
    """``accelerate launch`` with 2 CPU processes (gloo DDP) and 2 pairs each per step takes the
    same pairs per step as the single-process run with 4 (the 21 pairs split 10 + 10: 5 full
    steps; both runs draw batches from all clips, ``--no-group-by-clip``), and DDP averages the two
    halves' gradients, so the adapters agree."""
    from safetensors.torch import load_file

    out, _ = trained
    twin = out.parent / "two_processes"
    config = REPO / "examples" / "accelerate" / "one_node_multi_gpu.yaml"
    accelerate = Path(sys.executable).with_name("accelerate")
    result = subprocess.run(
        [
            str(accelerate), "launch", "--config_file", str(config), "--num_processes", "2",
            "--main_process_port", str(free_port()), "-m", "training.pdpo",
            "--pairs", str(toy_pairs["train"]), "--checkpoint", str(tiny_checkpoint), "--out", str(twin),
            "--feature-cache", str(out.parent / "features"), "--device", "cpu",
            "--max-steps", "5", "--batch-pairs", "2", "--lr", "1e-3", "--warmup-ratio", "0",
            "--lora-r", "8", "--lora-alpha", "16", "--lora-dropout", "0", "--seed", "3", "--no-group-by-clip",
        ],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    settings = json.loads((twin / "training_config.json").read_text())
    assert settings["processes"] == 2
    log = [json.loads(line) for line in (twin / "log.jsonl").read_text().splitlines()]
    assert [r["pairs"] for r in log] == [4] * 5  # 2 per process, gathered
    one_log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()][1:-1]
    for a, b in zip(one_log, log, strict=True):
        assert abs(a["loss"] - b["loss"]) < 1e-5 and abs(a["margin"] - b["margin"]) < 1e-5
    one = load_file(str(out / "adapter_model.safetensors"))
    two = load_file(str(twin / "adapter_model.safetensors"))
    assert one.keys() == two.keys()
    for key in one:  # the same up to the order of float sums (measured: 1.5e-6)
        torch.testing.assert_close(two[key], one[key], atol=2e-5, rtol=0)


def test_the_app_serves_base_plus_adapter(trained, tiny_checkpoint, tmp_path):
    """``python app.py --adapter DIR``: the app's configuration and model loader apply it."""
    from peft import PeftModel

    from ui.config import parse_config
    from ui.services import ModelHolder

    out, _ = trained
    config = parse_config(
        [
            "--checkpoint",
            str(tiny_checkpoint),
            "--adapter",
            str(out),
            "--device",
            "cpu",
            "--db",
            str(tmp_path / "a.db"),
        ],
        environ={},
    )
    assert config.adapter == str(out)
    loaded = ModelHolder(config)._load()  # the loader get() runs (without its process-wide GC freeze)
    assert isinstance(loaded.model.llm, PeftModel) and loaded.describe()["adapter"] == str(out)


def test_drop_rollout_conflicts_flag_reaches_the_saved_settings():
    import argparse

    from training.pdpo import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = ["--pairs", "p.jsonl", "--out", "o"]
    assert config_from_args(parser.parse_args(base)).drop_rollout_conflicts is False
    config = config_from_args(parser.parse_args([*base, "--drop-rollout-conflicts"]))
    assert config.drop_rollout_conflicts is True
    assert PDPOConfig.from_dict(config.to_dict()) == config
    # A training_config.json written before the setting existed reads back with it off.
    older = {k: v for k, v in config.to_dict().items() if k != "drop_rollout_conflicts"}
    assert PDPOConfig.from_dict(older).drop_rollout_conflicts is False
