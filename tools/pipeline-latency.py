"""PyTorch's in-process latency for tools/load-test.sh: transformers.pipeline
("text-classification") at batch 1 on the CPU, one sentence per call, over
the same sentences the load test sends.

    python3 tools/pipeline-latency.py --model DIR --sentences FILE [--threads 2] [--limit N]

Prints one JSON object: p50/p90/p99/mean latency in ms and calls per second.
"""

import argparse
import json
import time

import torch
import transformers
from transformers import pipeline


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--sentences", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="at most this many sentences (0: all)")
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    with open(args.sentences, encoding="utf-8") as f:
        sentences = [line.rstrip("\n") for line in f if line.strip()]
    if args.limit:
        sentences = sentences[: args.limit]
    classify = pipeline("text-classification", model=args.model, device=-1)
    for s in sentences[: args.warmup]:
        classify(s)
    times = []
    started = time.perf_counter()
    for s in sentences:
        t = time.perf_counter()
        classify(s)
        times.append((time.perf_counter() - t) * 1000)
    total = time.perf_counter() - started
    times.sort()

    def pct(p):
        return times[min(len(times) - 1, int(round(p / 100 * (len(times) - 1))))]

    print(json.dumps({
        "calls": len(times),
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "mean_ms": sum(times) / len(times),
        "calls_per_s": len(times) / total,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
