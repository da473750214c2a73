"""pDPO training throughput and peak memory (``training.trainer.PDPOTrainer``).

    python bench/train.py [--steps 6] [--batch-pairs 4] [--real-size] [--skip-cpu]

Every row runs in a process of its own (clean peak memory): one optimizer step as warm-up, then
``--steps`` steps of ``--batch-pairs`` pairs, all pairs new, so each costs what a first epoch
costs: the reference pass (adapter off, no gradients) + the policy's packed forward and
backward. Pairs alternate between step pairs (3 prefix steps, ~15-token candidates) and
full-path pairs (5 steps each), as the paper mixes them; the AV block is computed once per clip.
"pairs per forward": a batch's pairs (all on one clip) packed into one pass (the default), or
one pair per pass (``pack_pairs=1``, the cost when no two pairs of a batch share a clip).

CPU (always): the tiny checkpoint (hidden 64, 2 layers, the real 151k vocabulary), float32 and
NF4, on a 2 s clip (~880-token AV block) and on a 30 s clip (~11k tokens, the real length).
Peak memory = the process's peak RSS.

GPU (``--real-size``, only when CUDA is present): the released LLM's dimensions (Qwen2-7B:
hidden 3584, 28 layers, vocab 152064) with random weights in 4-bit NF4 (built layer by layer,
nothing is downloaded), LoRA r 64 / alpha 256 on every projection, gradient checkpointing, bf16,
and a random 30 s AV block (60 frames x 184 tokens = 11,040 tokens; the encoders are frozen and
their output cached, so they are not in memory during training). Peak memory =
``torch.cuda.max_memory_allocated``. Target: fits a 24 GB card.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("STUDIO_CACHE", str(REPO / ".cache" / "studio"))  # the tests' tiny checkpoint

QWEN2_7B = {
    "vocab_size": 152064,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "rope_theta": 1e6,
    "rms_norm_eps": 1e-6,
    "max_position_embeddings": 32768,
    "tie_word_embeddings": False,
}
SMALL = {**QWEN2_7B, "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2}  # fmt: skip
STEPS = [
    "The video opens on a kitchen counter with a cutting board.",
    "A person picks up a knife and starts slicing an onion.",
    "Someone off screen says that dinner will be ready soon.",
    "The person puts the onion into a hot pan, which sizzles.",
    "So the person is cooking, and the answer is A.",
]


def toy_records(clip_path: str, sha256: str, prompt: str, n: int) -> list[dict]:
    """``n`` pdpo export records on one clip: step pairs and full-path pairs in turn, each pair
    with its own text (so no reference log-prob is ever reused)."""
    records = []
    for i in range(n):
        base = {"video_path": clip_path, "video_sha256": sha256, "prompt": prompt, "soft_label": 0.9}
        if i % 2 == 0:
            records.append({**base, "pair_type": "step", "prefix_steps": STEPS[:3],
                            "chosen_steps": [f"{STEPS[3]} ({i})"], "rejected_steps": [f"The pan stays cold ({i})."]})  # fmt: skip
        else:
            records.append({**base, "pair_type": "full_path", "prefix_steps": [],
                            "chosen_steps": [*STEPS[:4], f"{STEPS[4]} ({i})"],
                            "rejected_steps": [*STEPS[:3], "The pan stays cold.", f"So the answer is B ({i})."]})  # fmt: skip
    return records


def random_nf4_llm(config: dict, device: str, dtype=None):
    """A Qwen2ForCausalLM with random weights, every decoder projection a bnb NF4 Linear4bit,
    the rest in ``dtype`` (default bf16, also the 4-bit compute dtype); built one layer at a time
    so peak host memory is one layer."""
    import bitsandbytes as bnb
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer, Qwen2RMSNorm, Qwen2RotaryEmbedding

    qcfg = Qwen2Config(**config)
    qcfg._attn_implementation = "sdpa"
    with torch.device("meta"):
        llm = Qwen2ForCausalLM(qcfg)
    bf16 = dtype or torch.bfloat16
    llm.model.embed_tokens = torch.nn.Embedding(qcfg.vocab_size, qcfg.hidden_size, dtype=bf16, device=device)
    torch.nn.init.normal_(llm.model.embed_tokens.weight, std=0.02)
    llm.lm_head = torch.nn.Linear(qcfg.hidden_size, qcfg.vocab_size, bias=False, dtype=bf16, device=device)
    torch.nn.init.normal_(llm.lm_head.weight, std=0.02)
    llm.model.norm = Qwen2RMSNorm(qcfg.hidden_size, eps=qcfg.rms_norm_eps).to(device, bf16)
    llm.model.rotary_emb = Qwen2RotaryEmbedding(qcfg).to(device)
    for i in range(qcfg.num_hidden_layers):
        layer = Qwen2DecoderLayer(qcfg, i).to(bf16)  # on the CPU, default (kaiming) init
        for parent in (layer.self_attn, layer.mlp):
            for name, linear in list(parent.named_children()):
                if not isinstance(linear, torch.nn.Linear):
                    continue
                q = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=linear.bias is not None,
                                      compute_dtype=bf16, quant_type="nf4", compress_statistics=True)  # fmt: skip
                q.weight = bnb.nn.Params4bit(linear.weight.data, requires_grad=False, quant_type="nf4",
                                             compress_statistics=True)  # fmt: skip
                if linear.bias is not None:
                    q.bias = torch.nn.Parameter(linear.bias.data, requires_grad=False)
                setattr(parent, name, q.to(device))  # .to() quantizes the weight
        llm.model.layers[i] = layer.to(device)
    return llm


def random_real_size_loaded(config: dict, device: str):
    """LoadedModel stand-in: the random NF4 LLM beside tiny encoders (their output is cached)."""
    import torch

    from inference.model.loading import LoadedModel
    from inference.model.modeling import VideoSalmonnO1
    from inference.model.tokenizer import build_qwen2_tokenizer
    from inference.tiny import TinyRecipe, tiny_configs

    parts = tiny_configs(TinyRecipe())
    llm = random_nf4_llm(config, device)
    model = VideoSalmonnO1(
        torch.nn.Identity(), parts["vision_config"], parts["speech_config"], parts["qformer_config"],
        parts["vision_config"]["hidden_size"], config["hidden_size"],
    )  # fmt: skip
    model.llm = llm
    return LoadedModel(
        model.eval(), build_qwen2_tokenizer(), Path("."), "random-nf4", None, "4bit", device, {}
    )


def run_one(spec: dict) -> dict:
    """One row, in this process."""
    import torch

    from training.config import PDPOConfig
    from training.data import load_pairs
    from training.features import FeatureCache
    from training.trainer import PDPOTrainer, peak_memory_mb

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    tmp = Path(spec["tmp"])
    n_pairs = spec["batch_pairs"] * (spec["steps"] + 1)
    if spec["model"] == "tiny":
        from inference.media import load_media
        from inference.model.loading import LoadSettings, load_model
        from inference.tiny import default_tiny_checkpoint

        loaded = load_model(
            LoadSettings(
                checkpoint=str(default_tiny_checkpoint()), device="cpu", quantization=spec["quantization"]
            )
        )
        media = load_media(spec["clip"])
        sha, av_length = media.clip.sha256, None
    else:
        torch.manual_seed(0)
        loaded = random_real_size_loaded(QWEN2_7B if spec["model"] == "real" else SMALL, spec["device"])
        sha, av_length = "f" * 64, spec["av_tokens"]
    from inference.model.prompts import build_prompt

    prompt = build_prompt(
        loaded.tokenizer, "reasoning", "What is the person doing?", ["cooking", "running"]
    ).text
    pairs_file = tmp / f"pairs-{os.getpid()}.jsonl"
    records = toy_records(spec.get("clip", ""), sha, prompt, n_pairs)
    pairs_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    pairs = load_pairs(pairs_file, loaded.tokenizer).pairs
    features = FeatureCache(loaded.model)
    if av_length is not None:  # a random AV block stands in for the cached encoder output
        dim = loaded.model.embed_tokens.weight.shape[1]
        features._remember(sha, (torch.randn(av_length, dim) * 0.02).to(torch.bfloat16))
    t0 = time.perf_counter()
    block = features.get(sha, spec.get("clip", ""))
    encode_s = time.perf_counter() - t0
    config = PDPOConfig(
        batch_pairs=spec["batch_pairs"],
        learning_rate=1e-5,
        warmup_ratio=0.0,
        pack_pairs=None if spec["grouped"] else 1,
    )
    trainer = PDPOTrainer(loaded, config, features, log=lambda m: None)
    cuda = spec["device"].startswith("cuda")
    trainer.train(pairs[: spec["batch_pairs"]])  # warm-up step
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    trainer.train(pairs[spec["batch_pairs"] :])  # the remaining steps x batch_pairs pairs
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    seq = [len(p.prompt_ids) - 1 + block.shape[0] + len(p.context_ids) + len(p.chosen_ids) + len(p.rejected_ids)
           for p in pairs]  # fmt: skip
    return {
        **{k: spec[k] for k in ("model", "quantization", "device", "label", "grouped", "batch_pairs")},
        "av_tokens": int(block.shape[0]),
        "packed_tokens": round(sum(seq) / len(seq)),
        "pairs": spec["steps"] * spec["batch_pairs"],
        "pairs_per_s": spec["steps"] * spec["batch_pairs"] / elapsed,
        "encode_s": encode_s,
        "peak_mb": peak_memory_mb(spec["device"]),
        "reserved_mb": torch.cuda.max_memory_reserved() / 2**20 if cuda else None,
        "trainable": sum(p.numel() for p in trainer.llm.parameters() if p.requires_grad),
        "gpu": torch.cuda.get_device_name() if cuda else None,
    }


def spawn(spec: dict) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True, timeout=3600
    )
    if done.returncode != 0:
        return {**spec, "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def spec_pack(row: dict) -> str:
    return f"{row['batch_pairs']} per pass" if row["grouped"] else "1 per pass"


def print_table(rows: list[dict]) -> None:
    print(
        "| model | LLM weights | device | pairs per forward | AV tokens | tokens / pair alone | pairs/s | peak memory MiB |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if "error" in r:
            print(
                f"| {r['label']} | {r['quantization']} | {r['device']} | - | - | - | error: {r['error']} | - |"
            )
            continue
        peak = f"{r['peak_mb']:.0f}" + (f" (reserved {r['reserved_mb']:.0f})" if r.get("reserved_mb") else "")
        print(
            f"| {r['label']} | {r['quantization']} | {r['gpu'] or r['device']} | "
            f"{spec_pack(r)} | {r['av_tokens']} | "
            f"{r['packed_tokens']} | {r['pairs_per_s']:.2f} | {peak} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-pairs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--real-size", action="store_true", help="also the 7B-sized NF4 LLM on CUDA")
    parser.add_argument("--small-nf4-cpu", action="store_true", help="smoke-run the real-size builder on CPU")
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return
    import torch

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        common = {"tmp": tmp, "steps": args.steps, "batch_pairs": args.batch_pairs, "threads": args.threads}
        if not args.skip_cpu:
            from examples.synth import write_clip

            short = write_clip(Path(tmp) / "short.mp4", seconds=2.0, fps=10, number=False)
            long = write_clip(Path(tmp) / "long.mp4", seconds=30.0, fps=10, size=(160, 96), number=False)
            for clip, quant, grouped in (
                (short, "none", True),
                (short, "4bit", True),
                (long, "none", True),
                (long, "4bit", True),
                (long, "none", False),
            ):
                spec = {**common, "model": "tiny", "quantization": quant, "device": "cpu", "clip": str(clip)}
                rows.append(spawn({**spec, "grouped": grouped, "label": f"tiny, {clip.stem} clip"}))
                print(json.dumps(rows[-1]), file=sys.stderr)
        if args.small_nf4_cpu:
            spec = {
                **common,
                "model": "small",
                "quantization": "4bit",
                "device": "cpu",
                "av_tokens": 880,
                "grouped": True,
            }
            rows.append(spawn({**spec, "label": "random NF4 builder, hidden 256 (smoke)"}))
            print(json.dumps(rows[-1]), file=sys.stderr)
        if args.real_size:
            if not torch.cuda.is_available():
                print("no CUDA device: --real-size skipped")
            else:
                spec = {
                    **common,
                    "model": "real",
                    "quantization": "4bit",
                    "device": "cuda",
                    "av_tokens": 11040,
                }
                rows.append(spawn({**spec, "label": "Qwen2-7B size, random, 30 s clip"}))
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
