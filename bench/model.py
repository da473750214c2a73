"""Model throughput and memory: prefill and decode on a 30 s clip.

    python bench/model.py [--clip PATH] [--tokens 64] [--real-size]

CPU (always): the tiny checkpoint (built on first use), float32; a 30 s clip (the real
nextqa_1.mp4 from ../shared/clips when present, else a generated 30 s clip). Reports media
preprocessing, encoder, prefill and decode times, decode tokens/s and peak RSS.

GPU (``--real-size``, only when CUDA is present): a random-init model with the released
dimensions (Qwen2-7B LLM in 4-bit NF4, SigLIP so400m and Whisper large-v3 encoders in bf16),
built in memory (nothing is downloaded): peak GPU memory for a 30 s clip, time to the first
streamed step (prefill; random weights never write a step, so this is time to first token),
decode tokens/s. Append the printed table to bench/RESULTS.md with the machine.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def a_30s_clip(tmp: Path) -> Path:
    real = REPO.parent / "shared" / "clips" / "nextqa_1.mp4"
    if real.exists():
        return real
    from examples.synth import write_clip

    out = tmp / "bench_30s.mp4"
    write_clip(out, seconds=30.0, fps=30, size=(640, 360))
    return out


def time_decode(loaded, media, n_tokens: int) -> dict[str, float]:
    import torch

    from inference.model.prompts import build_prompt
    from inference.reasoning.generate import Decoder, DecodingSettings, TokenPicker

    model = loaded.model
    sync = torch.cuda.synchronize if loaded.device == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    encoded = model.encode_media(media.pixel_values, media.spectrogram, media.real_time)
    sync()
    t_encode = time.perf_counter() - t0
    prompt = build_prompt(loaded.tokenizer, "reasoning", "What happens in the video?", ["A", "B", "C"])
    decoder = Decoder(model)
    t0 = time.perf_counter()
    logits = decoder.feed_embeds(model.embed_prompt(list(prompt.ids), [encoded.av_block]))
    sync()
    t_prefill = time.perf_counter() - t0
    prefill_tokens = decoder.length
    t0 = time.perf_counter()
    # no stop id: always decode n_tokens
    ids = list(decoder.generate(logits, TokenPicker(DecodingSettings()), n_tokens, stop_ids=[]))
    sync()
    t_decode = time.perf_counter() - t0
    return {
        "encode_s": t_encode,
        "prefill_s": t_prefill,
        "prefill_tokens": prefill_tokens,
        "prefill_tok_per_s": prefill_tokens / t_prefill,
        "decode_tokens": len(ids),
        "decode_tok_per_s": len(ids) / t_decode,
    }


def bench_cpu(clip: Path, n_tokens: int) -> None:
    from inference.media import load_media
    from inference.model.loading import LoadSettings, load_model
    from inference.tiny import default_tiny_checkpoint

    checkpoint = default_tiny_checkpoint()
    t0 = time.perf_counter()
    media = load_media(clip)
    t_media = time.perf_counter() - t0
    loaded = load_model(LoadSettings(checkpoint=str(checkpoint), device="cpu", quantization="none"))
    figures = time_decode(loaded, media, n_tokens)
    print(
        f"## tiny checkpoint, CPU, float32 -- clip {clip.name} ({media.clip.duration_s:.1f} s, "
        f"{media.n_frames} frames, {media.n_chunks} audio chunks)"
    )
    print("| media s | encode s | prefill tokens | prefill s | prefill tok/s | decode tok/s | peak RSS MB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {t_media:.2f} | {figures['encode_s']:.2f} | {figures['prefill_tokens']} | "
        f"{figures['prefill_s']:.2f} | {figures['prefill_tok_per_s']:.0f} | "
        f"{figures['decode_tok_per_s']:.1f} | {peak_rss_mb():.0f} |"
    )


def real_size_model(dtype=None):
    """The released dimensions, random init, LLM quantized to NF4 on the GPU (no download).
    ``dtype``: compute and encoder dtype; default as the loader picks it for this card."""
    import torch

    from inference.model.loading import choose_dtype

    dtype = dtype or choose_dtype("auto", "cuda")
    from transformers import BitsAndBytesConfig, Qwen2Config, Qwen2ForCausalLM
    from transformers.integrations import replace_with_bnb_linear

    from inference.model.config import BERT_BASE_UNCASED, SIGLIP_SO400M, WHISPER_LARGE_V3
    from inference.model.modeling import VideoSalmonnO1

    config = Qwen2Config(
        vocab_size=152064,
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        rope_theta=1e6,
        rms_norm_eps=1e-6,
        max_position_embeddings=32768,
        tie_word_embeddings=False,
    )
    config._attn_implementation = "sdpa"
    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
    )
    with torch.device("meta"):
        llm = Qwen2ForCausalLM(config)
    llm = replace_with_bnb_linear(llm, modules_to_not_convert=["lm_head"], quantization_config=quant)
    llm.to_empty(device="cuda")
    for module in llm.modules():  # random weights, then quantize each Linear4bit on the GPU
        if hasattr(module, "weight") and module.weight is not None and module.weight.dtype.is_floating_point:
            torch.nn.init.normal_(module.weight, std=0.02)
    llm = llm.to(dtype)
    model = VideoSalmonnO1(llm, SIGLIP_SO400M, WHISPER_LARGE_V3, BERT_BASE_UNCASED, 1152, 3584)
    for name, child in model.named_children():
        if name != "llm":
            child.to(device="cuda", dtype=dtype)
    model.image_newline.data = model.image_newline.data.to("cuda", dtype)
    model.speech_query_tokens.data = model.speech_query_tokens.data.to("cuda", dtype)
    model.segment_table = model.segment_table.to("cuda")
    return model.eval()


def bench_gpu(clip: Path, n_tokens: int) -> None:
    import torch

    from inference.media import load_media
    from inference.model.loading import LoadedModel
    from inference.model.tokenizer import build_qwen2_tokenizer

    if not torch.cuda.is_available():
        print("no CUDA device: --real-size skipped")
        return
    media = load_media(clip)
    torch.cuda.reset_peak_memory_stats()
    model = real_size_model()
    loaded = LoadedModel(
        model, build_qwen2_tokenizer(), Path("."), "random-real-size", None, "4bit", "cuda", {}
    )
    figures = time_decode(loaded, media, n_tokens)
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"## real-size random init, {torch.cuda.get_device_name()}, LLM NF4 + encoders bf16")
    print("| prefill tokens | time to first token s | decode tok/s | peak GPU GiB |")
    print("| --- | --- | --- | --- |")
    print(
        f"| {figures['prefill_tokens']} | {figures['encode_s'] + figures['prefill_s']:.2f} | "
        f"{figures['decode_tok_per_s']:.1f} | {peak:.2f} |"
    )


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--real-size", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clip = args.clip or a_30s_clip(Path(tmp))
        bench_cpu(clip, args.tokens)
        if args.real_size:
            bench_gpu(clip, args.tokens)


if __name__ == "__main__":
    main()
