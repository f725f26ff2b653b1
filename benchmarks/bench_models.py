"""Benchmark the model backends: seconds per slice and peak memory, printed as a Markdown table.

    python benchmarks/bench_models.py                     # every case, median of 3 timed runs each
    python benchmarks/bench_models.py --case sam-vit-b --repeats 5 --device cuda --dtype bf16
    python benchmarks/bench_models.py --case classical compact-sam filterbank compact-features dinov2-vits14 sam-vit-b
    python benchmarks/bench_models.py --threads 1        # steadier timings on a shared CPU

Real-size architectures with random weights, built from configs in code (nothing is downloaded): runtime
does not depend on weight values. Each case runs in a fresh Python process, so its peak memory is its own:
on the CPU the peak resident-set size minus the RSS after imports (so it includes the model's weights),
on a GPU the peak of `torch.cuda.max_memory_allocated`. One warm-up run precedes the timed runs.

Cases:
- SAM ViT-B image encoder on one 1024 x 1024 input (`HFPromptableSegmenter.embed` of a 1024^2 slice);
- DINOv2 ViT-S/14, B/14, L/14 on one 518 x 518 input (`HFFeatureExtractor.extract` of a 518^2 slice);
- SAM ViT-B prompt decoding of 32 single-point prompts on a 512 x 512 slice, one `predict` call per
  prompt against one batched call (masks upsampled to the slice included; the image embedding is random,
  so the peak memory is the decoder's);
- the weight-free filter bank (`FilterBankExtractor`, default config) on 512 x 512 slices in a batch of 8;
- cryoseg's own: the classical segmenter and compact-sam (embedding a 512 x 512 slice and decoding one point, what
  a propagation step costs), compact-features on 512 x 512 slices in a batch of 8 (untrained networks of the
  shipped architectures: their cost does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CASES = {
    "sam-vit-b": "SAM ViT-B image encoder, 1024²",
    "dinov2-vits14": "DINOv2 ViT-S/14, 518²",
    "dinov2-vitb14": "DINOv2 ViT-B/14, 518²",
    "dinov2-vitl14": "DINOv2 ViT-L/14, 518²",
    "decode-single": "SAM ViT-B decoder, 32 prompts one call each, 512² slice",
    "decode-batched": "SAM ViT-B decoder, 32 prompts in one call, 512² slice",
    "filterbank": "filter bank (default config), 512² slices, batch of 8",
    "classical": "classical segmenter, embed + one decode, 512² slice",
    "compact-sam": "compact-sam (0.8 M), embed + one decode, 512² slice",
    "compact-features": "compact-features (U-Net), 512² slices, batch of 8",
}
N_PROMPTS = 32


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def run_child(case: str, repeats: int, device_name: str, dtype_name: str, threads: int | None) -> None:
    """Build one case, time it, print JSON (in a fresh process)."""
    import resource

    import numpy as np
    import torch

    if threads:
        torch.set_num_threads(threads)

    from cryoseg.models.device import resolve_device, resolve_dtype
    from cryoseg.models.tiny import build_from_config, full_size_config

    device = resolve_device(device_name)
    dtype = resolve_dtype(dtype_name, device)
    rng = np.random.default_rng(0)
    rss0 = _rss_mb()
    per = 1  # slices (or prompts) per timed call
    if case == "sam-vit-b" or case.startswith("decode"):
        from cryoseg.models.hf_segmenters import HFPromptableSegmenter

        model = build_from_config("SamModel", full_size_config("sam-vit-b")).to(device, dtype)
        seg = HFPromptableSegmenter(model, "sam", "sam-vit-b", "random")
        if case == "sam-vit-b":
            image = rng.random((1024, 1024)).astype(np.float32)

            def step() -> None:
                seg.embed(image)
        else:
            from cryoseg.models.base import SliceEmbedding

            # a random image embedding (decoder cost does not depend on its values), so the peak
            # memory measured is the decoder's, not the image encoder's
            tensor = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(0)).to(device, dtype)
            emb = SliceEmbedding({"image_embeddings": tensor}, (512, 512))
            points = rng.uniform(0, 511, size=(N_PROMPTS, 1, 2))
            labels = np.ones((N_PROMPTS, 1), int)
            per = N_PROMPTS
            if case == "decode-single":
                def step() -> None:
                    for i in range(N_PROMPTS):
                        seg.predict(emb, points[i:i + 1], labels[i:i + 1])
            else:
                def step() -> None:
                    seg.predict(emb, points, labels)
    elif case.startswith("dinov2"):
        from cryoseg.models.hf_features import HFFeatureExtractor

        model = build_from_config("Dinov2Model", full_size_config(case)).to(device, dtype)
        ext = HFFeatureExtractor(model, "dinov2", case, "random", 518, batch_size=1)
        image = rng.random((1, 518, 518)).astype(np.float32)

        def step() -> None:
            ext.extract(image)
    elif case == "filterbank":
        from cryoseg.models.filterbank import FilterBankExtractor

        ext = FilterBankExtractor()
        images = rng.random((8, 512, 512)).astype(np.float32)
        per = 8

        def step() -> None:
            ext.extract(images)
    elif case in ("classical", "compact-sam"):
        if case == "classical":
            from cryoseg.models.classical import ClassicalSegmenter

            seg = ClassicalSegmenter()
        else:
            from cryoseg.models.compact import compact_sam_config
            from cryoseg.models.hf_segmenters import HFPromptableSegmenter

            model = build_from_config("SamModel", compact_sam_config()).to(device, dtype).eval()
            seg = HFPromptableSegmenter(model, "sam", case, "random")
        image = rng.random((512, 512)).astype(np.float32)

        def step() -> None:
            seg.predict(seg.embed(image), np.array([[[256.0, 256.0]]]), np.array([[1]]))
    elif case == "compact-features":
        from cryoseg.models.compact_features import CompactFeatureExtractor, CompactFeaturesConfig, build_network

        config = CompactFeaturesConfig()
        ext = CompactFeatureExtractor(build_network(config), config, "random", device=device, batch_size=8)
        images = rng.random((8, 512, 512)).astype(np.float32)
        per = 8

        def step() -> None:
            ext.extract(images)
    else:
        raise SystemExit(f"unknown case {case}")
    rss_model = _rss_mb() - rss0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step()  # warm-up
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0  # kB on Linux
    print(json.dumps({"median_s": statistics.median(times), "min_s": min(times), "per": per,
                      "model_mb": rss_model, "peak_mb": peak, "device": str(device),
                      "dtype": str(dtype).replace("torch.", ""), "threads": torch.get_num_threads()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=[*CASES, "all"], nargs="+", default=["all"])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case after one warm-up (median)")
    parser.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, mps")
    parser.add_argument("--dtype", default="fp32", help="fp32, or fp16/bf16 on a GPU")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice); 1 is steadiest on a shared machine")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.case[0], args.repeats, args.device, args.dtype, args.threads)
        return
    cases = list(CASES) if "all" in args.case else args.case
    results = {}
    for case in cases:
        command = [sys.executable, __file__, "--case", case, "--child", "--repeats", str(args.repeats),
                   "--device", args.device, "--dtype", args.dtype]
        if args.threads:
            command += ["--threads", str(args.threads)]
        out = subprocess.run(command, check=True, capture_output=True, text=True,
                             env={**os.environ, "PYTHONWARNINGS": "ignore"})
        results[case] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  done {case}: {results[case]['median_s']:.3f} s", file=sys.stderr)
    first = next(iter(results.values()))
    mem_label = "peak GPU memory (MB)" if first["device"].startswith("cuda") else "peak RSS Δ (MB)"
    print(f"device: {first['device']}, dtype: {first['dtype']}, torch threads: {first['threads']}, "
          f"cpu cores available: {len(os.sched_getaffinity(0))}, load average at end: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; median of {args.repeats} runs after one warm-up")
    print()
    print(f"| case | s per call | s per slice / prompt | model RSS (MB) | {mem_label} |")
    print("|---|---:|---:|---:|---:|")
    for case, r in results.items():
        print(f"| {CASES[case]} | {r['median_s']:.3f} | {r['median_s'] / r['per']:.4f} | {r['model_mb']:.0f} | "
              f"{r['peak_mb']:.0f} |")
    if "decode-single" in results and "decode-batched" in results:
        ratio = results["decode-batched"]["median_s"] / results["decode-single"]["median_s"]
        print()
        print(f"One batched call for {N_PROMPTS} prompts took {ratio:.2f}x the time of "
              f"{N_PROMPTS} single-prompt calls.")


if __name__ == "__main__":
    main()
