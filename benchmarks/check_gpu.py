"""Does every transformers backend run on a CUDA GPU in half precision? (Run where a GPU is lent.)

    python benchmarks/check_gpu.py

Prints one row per tiny random-weight model: device, precision, seconds, and whether the outputs are finite and
float32 when they leave the backend. Exits non-zero if any check fails. On a machine without CUDA it says so and
exits 1: the test suite covers the CPU, this covers what it cannot.
"""

from __future__ import annotations

import sys
import time

import numpy as np


def main() -> int:
    import torch

    from cryoseg.models import load_feature_extractor, load_segmenter

    if not torch.cuda.is_available():
        print("no CUDA GPU on this machine: nothing checked")
        return 1
    rng = np.random.default_rng(0)
    image = rng.random((30, 50))
    rows, ok = [], True
    for name, dtype in (("tiny-sam", "bf16"), ("tiny-sam-hq", "fp16"), ("tiny-sam2", "bf16")):
        start = time.perf_counter()
        seg = load_segmenter(name, device="cuda", dtype=dtype)
        pred = seg.predict(seg.embed(image), np.array([[[5.0, 5.0]]]), np.array([[1]]))
        good = pred.logits.dtype == np.float32 and bool(np.isfinite(pred.logits).all())
        good &= seg.signature()["dtype"] == {"bf16": "bfloat16", "fp16": "float16"}[dtype]
        rows.append((name, dtype, time.perf_counter() - start, good))
    for name, dtype in (("tiny-dinov2-reg", "fp16"), ("tiny-dinov3", "bf16"), ("tiny-mae", "fp16")):
        start = time.perf_counter()
        ext = load_feature_extractor(name, device="cuda", dtype=dtype)
        feats = ext.extract(rng.random((2, 30, 50))).features
        rows.append((name, dtype, time.perf_counter() - start, bool(np.isfinite(feats).all())))
    print(f"GPU: {torch.cuda.get_device_name(0)}")
    print("| model | precision | seconds | finite float32 outputs |")
    print("|---|---|---|---|")
    for name, dtype, seconds, good in rows:
        print(f"| {name} | {dtype} | {seconds:.2f} | {'yes' if good else 'NO'} |")
        ok &= good
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
