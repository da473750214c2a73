"""Benchmark of the media pipeline: wall time and peak memory of ``load_media`` per clip, beside
one plain decode of the video (the floor for long-GOP H.264) and a naive pipeline.

    .venv/bin/python bench/media.py             # the figures in bench/RESULTS.md
    .venv/bin/python bench/media.py --quick     # the generated 720p 30 s clip only
    .venv/bin/python bench/media.py --ablate    # also ours without each speed-up
    .venv/bin/python bench/media.py --torch-threads 1   # as the app and batch run on a shared CPU

Clips: the 30 s and 70 s real clips of ../shared/clips (skipped where absent), and two generated
ones (bench/out/, written on first use: 1280x720, 30 fps, x264 superfast with B-frames and its
default 250-frame GOP, textured background, moving shapes, AAC chirp): 30 s and 10 minutes.

Modes, each run in fresh processes after a warm-up on a tiny clip that pays the one-time costs
(imports, building the Whisper feature extractor):
- ``ours``: ``inference.media.load_media`` with default options (all of pixel values, log-mel,
  ClipInfo with its sha256);
- ``plain``: one sequential decode of every video frame, nothing else (FFmpeg threads on);
- ``naive``: decode every frame to RGB24 and keep them all, then take the sampled ones, resize
  and normalise (same audio path as ours). Stopped once it holds ``--naive-cap-gb``.
Times: ours, plain (and the ablations) take turns in one process, ``--repeat`` rounds, best of
each; the CPU seconds (all threads) beside the wall times depend less on other load, which
matters on a shared machine (its load average is printed). Peak memory: one run in a process of
its own, peak RSS above the RSS after the warm-up (Linux clear_refs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

OUT = REPO / "bench" / "out"
SHARED = REPO.parent / "shared" / "clips"
GENERATED = {
    "gen_720p_30s.mp4": 30.0,
    "gen_720p_10min.mp4": 600.0,
}


def clip_list(quick: bool) -> list[tuple[str, Path]]:
    clips = []
    if not quick:
        for label, name in (("real 30 s", "nextqa_1.mp4"), ("real 70 s", "medical_example_clip.mp4")):
            if (SHARED / name).exists():
                clips.append((label, SHARED / name))
    names = ["gen_720p_30s.mp4"] if quick else list(GENERATED)
    for name in names:
        path = OUT / name
        if not path.exists():
            from examples.synth import write_clip

            OUT.mkdir(parents=True, exist_ok=True)
            print(f"writing {path} ...", file=sys.stderr, flush=True)
            partial = path.with_suffix(".partial.mp4")
            write_clip(
                partial,
                seconds=GENERATED[name],
                fps=30,
                size=(1280, 720),
                audio="chirp",
                texture=True,
                number=False,
            )
            partial.replace(path)
        clips.append(("generated 720p " + ("30 s" if GENERATED[name] == 30 else "10 min"), path))
    return clips


# --- one measurement (child process) ------------------------------------------------------------


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def mode_ours(path: Path, options) -> dict:
    from inference.media import load_media

    inputs = load_media(path, options=options)
    return {
        "timings": {k: round(v, 3) for k, v in inputs.timings.items()},
        "stats": inputs.stats,
        "frames": inputs.n_frames,
        "chunks": inputs.n_chunks,
    }


def mode_plain(path: Path) -> dict:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        count = sum(1 for _ in container.decode(stream))
    return {"decoded": count}


def mode_naive(path: Path, cap_gb: float) -> dict:
    import av
    import numpy as np
    from PIL import Image

    from inference.media import MediaLimits, sample_frame_indices, to_pixel_values
    from inference.media.audio import LogMelStream, decode_container_audio

    frames = []
    held = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        n, fps = stream.frames, float(stream.average_rate)
        for frame in container.decode(stream):
            rgb = frame.to_ndarray(format="rgb24")
            frames.append(rgb)
            held += rgb.nbytes
            if held > cap_gb * 2**30:
                return {
                    "aborted_at_frames": len(frames),
                    "of_frames": n,
                    "projected_gb": round(held / len(frames) * n / 2**30, 1),
                }
    indices = sample_frame_indices(n, fps, MediaLimits())
    small = np.stack(
        [np.asarray(Image.fromarray(frames[i]).resize((384, 384), Image.BICUBIC)) for i in indices]
    )
    to_pixel_values(small)
    stream = LogMelStream(n / fps)
    decode_container_audio(path, container_audio_index(path), stream)
    stream.finish()
    return {"decoded": len(frames)}


ABLATIONS = ("threads=1", "skip_nonref=false", "seek=false", "convert_threads=0")


def decode_options(option: str | None):
    from dataclasses import replace

    from inference.media import DecodeOptions

    options = DecodeOptions()
    if option:
        key, value = option.split("=")
        options = replace(options, **{key: type(getattr(options, key))(json.loads(value))})
    return options


def warm_up() -> None:
    """Imports, the Whisper feature extractor, codec tables: costs paid once per process."""
    from examples.synth import write_clip
    from inference.media import load_media

    with tempfile.TemporaryDirectory() as tmp:
        load_media(write_clip(Path(tmp) / "warm.mp4", seconds=1, fps=10, size=(160, 96)))


def container_audio_index(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return container.streams.audio[0].index


def child_timing(path: Path, repeat: int, variants: list[str]) -> dict:
    """Round robin over the variants, ``repeat`` rounds: load on a shared machine comes and goes,
    so each variant sees the same conditions. Best wall and CPU seconds of each."""
    warm_up()
    results: dict[str, dict] = {v: {"wall": [], "cpu": []} for v in variants}
    for _ in range(repeat):
        for variant in variants:
            start, start_cpu = time.perf_counter(), time.process_time()
            if variant == "plain":
                detail = mode_plain(path)
            else:
                detail = mode_ours(path, decode_options(variant.partition(":")[2] or None))
            results[variant]["wall"].append(time.perf_counter() - start)
            results[variant]["cpu"].append(time.process_time() - start_cpu)
            results[variant]["detail"] = detail
    return {
        v: {
            "best_s": round(min(r["wall"]), 3),
            "cpu_s": round(min(r["cpu"]), 3),
            "runs_s": [round(t, 2) for t in r["wall"]],
            **r["detail"],
        }
        for v, r in results.items()
    }


def child_memory(mode: str, path: Path, cap_gb: float) -> dict:
    """One run in a process of its own: peak RSS above the RSS after the warm-up."""
    warm_up()
    base = rss_mb("VmRSS")
    reset_peak()
    start, start_cpu = time.perf_counter(), time.process_time()
    detail = mode_ours(path, decode_options(None)) if mode == "ours" else mode_naive(path, cap_gb)
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return {
        "best_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "peak_mb": round(rss_mb("VmHWM") - base, 1),
        "base_mb": round(base, 1),
        **detail,
    }


# --- orchestration -------------------------------------------------------------------------------


def run_child(*args: str, torch_threads: int = 0) -> dict:
    cmd = [sys.executable, __file__, "--torch-threads", str(torch_threads), "--child", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=3600)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"rc {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def describe_clip(path: Path) -> str:
    import av

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = "AAC" if container.streams.audio else "no audio"
        fps = float(video.average_rate)
        return (
            f"{video.codec_context.width}x{video.codec_context.height}, {fps:.2f} fps, "
            f"{video.frames} frames, {video.frames / fps:.1f} s, {audio}, "
            f"{path.stat().st_size / 2**20:.1f} MB"
        )


def machine() -> str:
    import av
    import PIL
    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    ffmpeg = ".".join(str(v) for v in av.library_versions["libavcodec"])
    return (
        f"{os.cpu_count()}-core VM ({cpu}), no GPU, Linux {platform.release()}; Python "
        f"{platform.python_version()}, PyAV {av.__version__} (libavcodec {ffmpeg}), Pillow "
        f"{PIL.__version__}, torch {torch.__version__}"
    )


def fmt_naive(result: dict) -> tuple[str, str]:
    if "error" in result:
        return "error", result["error"]
    if "aborted_at_frames" in result:
        return (
            f"stopped at {result['aborted_at_frames']}/{result['of_frames']} frames",
            f"> {result['peak_mb']:.0f} (needs ~{result['projected_gb']} GB)",
        )
    return f"{result['best_s']:.2f} ({result['cpu_s']:.2f})", f"{result['peak_mb']:.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--ablate", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--naive-cap-gb", type=float, default=6.0)
    parser.add_argument("--torch-threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)  # the log-mel's STFTs run on torch threads
    if args.child:
        kind, path, *rest = args.child
        if kind == "timing":
            result = child_timing(Path(path), args.repeat, rest)
        else:
            result = child_memory(kind, Path(path), args.naive_cap_gb)
        print(json.dumps(result))
        return 0

    clips = clip_list(args.quick)
    print(f"Machine: {machine()}. Load average at start {os.getloadavg()[0]:.1f}.")
    print(f"torch threads: {args.torch_threads or 'default'}.\n")
    variants = ["plain", "ours"] + ([f"ours:{a}" for a in ABLATIONS] if args.ablate else [])
    rows, details = [], []
    for label, path in clips:
        threads = args.torch_threads
        timing = run_child(
            "timing", str(path), *variants, "--repeat", str(args.repeat), torch_threads=threads
        )
        memory = run_child("ours", str(path), torch_threads=threads)
        naive = run_child("naive", str(path), "--naive-cap-gb", str(args.naive_cap_gb), torch_threads=threads)
        if "error" in timing:
            rows.append(f"| {label} | error: {timing['error']} | | | | |")
            continue
        ours, plain = timing["ours"], timing["plain"]
        naive_time, naive_mem = fmt_naive(naive)
        rows.append(
            f"| {label}: {describe_clip(path)} | {ours['best_s']:.2f} ({ours['cpu_s']:.2f}) | "
            f"{memory.get('peak_mb', '?')} | {plain['best_s']:.2f} ({plain['cpu_s']:.2f}) | "
            f"{naive_time} | {naive_mem} |"
        )
        details.append(f"- {label}: ours {json.dumps(ours)}; plain {json.dumps(plain)}")
        for variant in variants[2:]:
            r = timing[variant]
            details.append(
                f"  - ours with {variant.partition(':')[2]}: {r['best_s']:.2f} s "
                f"({r['cpu_s']:.2f} CPU s), {r['stats']}"
            )
        print(rows[-1], file=sys.stderr, flush=True)
    print(
        "| clip | ours: wall s (CPU s) | ours: peak MB | plain decode: wall s (CPU s) | "
        "naive: wall s (CPU s) | naive: peak MB |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    print()
    print("\n".join(details))
    print(f"\nLoad average at end {os.getloadavg()[0]:.1f}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
