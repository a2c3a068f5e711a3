#!/usr/bin/env python3
"""PyTorch's side of the GPU comparison (issue: GPU on real hardware).

Runs on the lent GPU machine, whose image has torch and transformers:
randomly initialised bert-base `BertForSequenceClassification` (2 labels,
SDPA attention) at T=128:

  train      one step = forward + backward + AdamW (fused), bf16 autocast, B=64
  infer-b1   forward latency, B=1, fp32 and bf16 autocast
  infer-b128 forward throughput, B=128, bf16 autocast

MFU counts model FLOPs per token as 6·N_matmul + 12·L·T·d (training) against
989 TFLOP/s, with N_matmul the weights of the encoder's matrix products.
Times come from CUDA events after warm-up. Prints a markdown table and a
JSON line.

Usage: python3 tools/torch-gpu-baseline.py [--iters N]
"""

import argparse
import json
import time

PEAK_FLOPS = 989e12


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iters", type=int, default=20)
    args = p.parse_args()

    import torch
    import transformers
    from transformers import BertConfig, BertForSequenceClassification

    transformers.logging.set_verbosity_error()
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    config = BertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                        vocab_size=30522, num_labels=2, attn_implementation="sdpa")
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).to(dev)
    layers, d, inter, t = 12, 768, 3072, 128
    n_matmul = layers * (4 * d * d + 2 * d * inter)
    train_flops_per_token = 6 * n_matmul + 12 * layers * t * d
    infer_flops_per_token = 2 * n_matmul + 4 * layers * t * d

    def timed(step, iters, warmup=5):
        for _ in range(warmup):
            step()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            step()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / iters  # ms

    def batch(b):
        ids = torch.randint(0, config.vocab_size, (b, t), device=dev)
        return ids, torch.ones_like(ids), torch.randint(0, 2, (b,), device=dev)

    rows = []
    # Training, bf16 autocast, B=64.
    b = 64
    ids, mask, labels = batch(b)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=True)

    def train_step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    ms = timed(train_step, args.iters)
    tps = b * t / (ms / 1e3)
    rows.append({"case": "train bf16 B=64", "ms": ms, "tokens_per_s": tps, "mfu": tps * train_flops_per_token / PEAK_FLOPS})

    model.eval()
    for name, b, dtype in [("infer fp32 B=1", 1, None), ("infer bf16 B=1", 1, torch.bfloat16), ("infer bf16 B=128", 128, torch.bfloat16)]:
        ids, mask, _ = batch(b)

        def infer():
            with torch.inference_mode():
                if dtype is None:
                    model(input_ids=ids, attention_mask=mask)
                else:
                    with torch.autocast("cuda", dtype=dtype):
                        model(input_ids=ids, attention_mask=mask)

        ms = timed(infer, args.iters * (5 if b == 1 else 1))
        tps = b * t / (ms / 1e3)
        rows.append({"case": name, "ms": ms, "tokens_per_s": tps, "mfu": tps * infer_flops_per_token / PEAK_FLOPS})

    print(f"# torch {torch.__version__}, transformers {transformers.__version__}, {torch.cuda.get_device_name(0)}, T={t}, SDPA, TF32 off")
    print("| case | ms per step | tokens/s | MFU |")
    print("| --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['case']} | {r['ms']:.3f} | {r['tokens_per_s']:,.0f} | {100 * r['mfu']:.1f}% |")
    print(json.dumps({"rows": rows, "torch": torch.__version__, "device": torch.cuda.get_device_name(0), "time": time.strftime("%Y-%m-%d %H:%M:%S")}))


if __name__ == "__main__":
    main()
