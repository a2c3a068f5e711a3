#!/usr/bin/env python3
"""PyTorch and ONNX Runtime peer benchmark for berth: the same BERT workloads on the CPU.

Measures, per model config and mode (--modes), on the CPU:
  fwd-b1     inference forward, B=1,  T=128 (model.eval(), torch.inference_mode)
  fwd-b32    inference forward, B=32, T=128
  train-b32  one training step, B=32, T=128: forward with labels, loss.backward(),
             AdamW step, zero_grad (model.train(), dropout on, as HF Trainer does)
  fwdbwd-b32 forward with labels and loss.backward() only (no optimizer), B=32, T=128:
             the same work as `berth bench --case train`

Modes (each peer's best CPU settings):
  fp32       transformers in float32 (the default)
  bf16       the same under torch.autocast("cpu", dtype=torch.bfloat16), forward and train
  int8       torch.ao.quantization.quantize_dynamic on every nn.Linear (qint8), forward only
  ort-fp32   the model exported with torch.onnx.export, run by ONNX Runtime with every
             graph optimisation and --threads intra-op threads, forward only
  ort-int8   that export quantized by onnxruntime.quantization.quantize_dynamic (QInt8
             weights, dynamic activations), forward only
Cases a mode cannot run (train under int8 or ONNX Runtime) are left out.

Each case runs in a fresh subprocess, so the peak resident memory (ru_maxrss) is per case.
That peak covers the whole process: the Python interpreter, torch and transformers
themselves, the model, the optimizer state and the activations. The table also shows the
peak right after importing torch and transformers, so the framework's own share can be
told apart (it is large with the CUDA-bundled torch wheel, even on the CPU).

Usage:
  python tools/bench-vs-torch.py [--model DIR] [--configs minilm,bert-base]
      [--cases fwd-b1,fwd-b32,train-b32] [--threads N] [--iters N] [--warmup N]
      [--attn sdpa|eager] [--seq-len T] [--modes fp32,bf16,int8,ort-fp32,ort-int8] [--json OUT]

Needs torch, transformers and safetensors (CPU wheels are enough); the ort-* modes also
need onnxruntime, onnx and onnxscript (pip install them locally; CI does not).
"""

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = "models/all-MiniLM-L6-v2"
ALL_CONFIGS = ("minilm", "bert-base", "roberta-base", "xlm-roberta-base", "distilbert-base", "electra-base",
               "modernbert-base", "deberta-v3-base")
# The published base checkpoints' shapes, as `berth bench --config NAME` builds them:
# (transformers config class, sequence-classification class, config arguments).
BASE_SIZED = {
    "bert-base": ("BertConfig", "BertForSequenceClassification", {}),
    "roberta-base": ("RobertaConfig", "RobertaForSequenceClassification", {
        "vocab_size": 50265, "max_position_embeddings": 514, "type_vocab_size": 1, "pad_token_id": 1,
        "layer_norm_eps": 1e-5}),
    "xlm-roberta-base": ("XLMRobertaConfig", "XLMRobertaForSequenceClassification", {
        "vocab_size": 250002, "max_position_embeddings": 514, "type_vocab_size": 1, "pad_token_id": 1,
        "layer_norm_eps": 1e-5}),
    "distilbert-base": ("DistilBertConfig", "DistilBertForSequenceClassification", {
        "dim": 768, "n_layers": 6, "n_heads": 12, "hidden_dim": 3072}),
    "electra-base": ("ElectraConfig", "ElectraForSequenceClassification", {"embedding_size": 768}),
    "modernbert-base": ("ModernBertConfig", "ModernBertForSequenceClassification", {
        "vocab_size": 50368, "num_hidden_layers": 22, "intermediate_size": 1152, "max_position_embeddings": 8192,
        "local_attention": 128, "global_attn_every_n_layers": 3, "global_rope_theta": 160000.0,
        "local_rope_theta": 10000.0, "pad_token_id": 50283, "classifier_pooling": "mean"}),
    "deberta-v3-base": ("DebertaV2Config", "DebertaV2ForSequenceClassification", {
        "vocab_size": 128100, "relative_attention": True, "pos_att_type": ["p2c", "c2p"], "position_buckets": 256,
        "max_relative_positions": -1, "share_att_key": True, "norm_rel_ebd": "layer_norm",
        "position_biased_input": False, "type_vocab_size": 0, "layer_norm_eps": 1e-7, "pooler_hidden_size": 768,
        "pooler_dropout": 0, "pooler_hidden_act": "gelu", "pad_token_id": 0}),
}
BERT_BASE_SHAPES = {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
                    "num_attention_heads": 12, "intermediate_size": 3072}
# case name -> (kind, batch size)
ALL_CASES = {
    "fwd-b1": ("forward", 1),
    "fwd-b32": ("forward", 32),
    "train-b32": ("train", 32),
    "fwdbwd-b32": ("fwdbwd", 32),
}
ALL_MODES = ("fp32", "bf16", "int8", "ort-fp32", "ort-int8")
FORWARD_ONLY_MODES = ("int8", "ort-fp32", "ort-int8")
RESULT_MARKER = "BENCH_RESULT "
NUM_LABELS = 2


def available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def resolve_model_dir(path):
    """A relative --model is looked up from the current directory, then from the repo root."""
    if os.path.isabs(path) or os.path.isdir(path):
        return path
    candidate = os.path.join(REPO_ROOT, path)
    return candidate if os.path.isdir(candidate) else path


def split_list(value, allowed, what):
    items = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in items if v not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return items


# --------------------------------------------------------------------------------------------
# Worker: one case in its own process.
# --------------------------------------------------------------------------------------------

def peak_rss_mib():
    import resource

    # Linux reports ru_maxrss in KiB, macOS in bytes.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def build_model(spec):
    import torch
    import transformers
    from transformers import BertForSequenceClassification

    if spec["config"] == "minilm":
        return BertForSequenceClassification.from_pretrained(
            spec["model_dir"],
            num_labels=NUM_LABELS,
            attn_implementation=spec["attn"],
            dtype=torch.float32,
        )
    config_class, model_class, shapes = BASE_SIZED[spec["config"]]
    arguments = dict(BERT_BASE_SHAPES) if config_class != "DistilBertConfig" else {"vocab_size": 30522}
    arguments.update(shapes)
    config = getattr(transformers, config_class)(num_labels=NUM_LABELS, **arguments)
    # DeBERTa has no sdpa path in transformers: its relative terms run eagerly.
    config._attn_implementation = "eager" if config_class == "DebertaV2Config" else spec["attn"]
    model = getattr(transformers, model_class)(config)
    return model.to(torch.float32)


def onnx_runtime_step(model, inputs, mode, threads):
    """Exports `model` to ONNX (quantizing it for ort-int8) in a temporary folder and
    returns a step that runs it once with ONNX Runtime."""
    import tempfile

    import onnxruntime as ort
    import torch

    model.eval()
    folder = tempfile.mkdtemp(prefix="berth-ort-")
    path = os.path.join(folder, "model.onnx")
    names = list(inputs)
    with torch.inference_mode():
        torch.onnx.export(model, (), path, kwargs=dict(inputs), input_names=names, output_names=["logits"],
                          dynamic_axes={n: {0: "batch", 1: "seq"} for n in names}, dynamo=False)
    if mode == "ort-int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantized = os.path.join(folder, "model.int8.onnx")
        quantize_dynamic(path, quantized, weight_type=QuantType.QInt8)
        path = quantized
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = {n: inputs[n].numpy() for n in names}

    def step():
        session.run(None, feed)

    return step


def run_worker(spec):
    threads = spec["threads"]
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    torch.set_num_threads(threads)
    rss_after_import = peak_rss_mib()

    torch.manual_seed(0)
    model = build_model(spec)
    params = sum(p.numel() for p in model.parameters())
    kind, batch = ALL_CASES[spec["case"]]
    seq = spec["seq_len"]
    vocab = model.config.vocab_size

    gen = torch.Generator().manual_seed(1234)
    input_ids = torch.randint(0, vocab, (batch, seq), generator=gen, dtype=torch.long)
    attention_mask = torch.ones(batch, seq, dtype=torch.long)
    token_type_ids = torch.zeros(batch, seq, dtype=torch.long)
    labels = torch.randint(0, NUM_LABELS, (batch,), generator=gen, dtype=torch.long)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if model.config.model_type != "distilbert":
        inputs["token_type_ids"] = token_type_ids

    mode = spec["mode"]
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if mode == "bf16" else contextlib.nullcontext
    if kind == "forward" and mode.startswith("ort-"):
        step = onnx_runtime_step(model, inputs, mode, spec["threads"])
    elif kind == "forward":
        model.eval()
        if mode == "int8":
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)

        def step():
            with torch.inference_mode(), autocast():
                model(**inputs)

    elif kind == "fwdbwd":
        model.train()

        def step():
            with autocast():
                out = model(**inputs, labels=labels)
            out.loss.backward()
            model.zero_grad(set_to_none=True)

    else:
        model.train()
        # HF Trainer defaults: AdamW, lr 5e-5, betas (0.9, 0.999), eps 1e-8, weight decay 0.
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

        def step():
            with autocast():
                out = model(**inputs, labels=labels)
            out.loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    for _ in range(spec["warmup"]):
        step()
    times_ms = []
    for _ in range(spec["iters"]):
        t0 = time.perf_counter()
        step()
        times_ms.append((time.perf_counter() - t0) * 1000.0)

    median_ms = statistics.median(times_ms)
    result = {
        "config": spec["config"],
        "case": spec["case"],
        "mode": spec["mode"],
        "kind": kind,
        "batch": batch,
        "seq_len": seq,
        "attn": spec["attn"],
        "threads": torch.get_num_threads(),
        "params": params,
        "warmup": spec["warmup"],
        "iters": spec["iters"],
        "median_ms": median_ms,
        "min_ms": min(times_ms),
        "tokens_per_s": batch * seq / (median_ms / 1000.0),
        "peak_rss_mib": peak_rss_mib(),
        "rss_after_import_mib": rss_after_import,
        "times_ms": times_ms,
    }
    print(RESULT_MARKER + json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------

def run_case(spec):
    env = dict(os.environ)
    threads = str(spec["threads"])
    env["OMP_NUM_THREADS"] = threads
    env["MKL_NUM_THREADS"] = threads
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])
    print(f"  {spec['config']}/{spec['case']}/{spec['mode']}: worker failed (exit {proc.returncode})", file=sys.stderr)
    return None


def versions():
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__}


def markdown_table(results):
    lines = [
        "| config | case | mode | B | T | median ms | min ms | tokens/s | peak RSS MiB | RSS after import MiB | iters |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r['config']} | {r['case']} | {r['mode']} | {r['batch']} | {r['seq_len']} | {r['median_ms']:.2f} | "
            f"{r['min_ms']:.2f} | {r['tokens_per_s']:.0f} | {r['peak_rss_mib']:.0f} | "
            f"{r['rss_after_import_mib']:.0f} | {r['iters']} |"
        )
    return "\n".join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(description="PyTorch/transformers CPU peer benchmark for berth.")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="HF BertModel checkpoint folder for 'minilm' (default: %(default)s, "
                        "relative to the current directory or the repo root)")
    p.add_argument("--configs", default="minilm,bert-base",
                   help="comma-separated, from: %s (default: minilm,bert-base)" % ", ".join(ALL_CONFIGS))
    p.add_argument("--cases", default=",".join(ALL_CASES),
                   help="comma-separated, from: %s (default: all)" % ", ".join(ALL_CASES))
    p.add_argument("--threads", type=int, default=available_cores(),
                   help="torch intra-op threads (default: all cores, %(default)s here)")
    p.add_argument("--iters", type=int, default=20, help="timed iterations per case (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations first (default: %(default)s)")
    p.add_argument("--attn", choices=("sdpa", "eager"), default="sdpa",
                   help="attn_implementation (default: %(default)s)")
    p.add_argument("--seq-len", type=int, default=128, help="sequence length T (default: %(default)s)")
    p.add_argument("--modes", default="fp32",
                   help="comma-separated, from: %s (default: fp32)" % ", ".join(ALL_MODES))
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.iters < 1 or args.warmup < 0 or args.threads < 1 or args.seq_len < 1:
        p.error("--iters and --threads must be >= 1, --warmup >= 0, --seq-len >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        run_worker(json.loads(args.worker))
        return 0

    configs = split_list(args.configs, ALL_CONFIGS, "config")
    cases = split_list(args.cases, tuple(ALL_CASES), "case")
    modes = split_list(args.modes, ALL_MODES, "mode")
    model_dir = resolve_model_dir(args.model)
    if "minilm" in configs and not os.path.isfile(os.path.join(model_dir, "config.json")):
        print(f"skipping minilm: no checkpoint at {args.model} (run tools/fetch-model.sh)")
        configs = [c for c in configs if c != "minilm"]

    meta = versions()
    meta.update({
        "threads": args.threads,
        "cores": available_cores(),
        "attn": args.attn,
        "modes": modes,
        "device": "cpu",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "warmup": args.warmup,
        "iters": args.iters,
        "seq_len": args.seq_len,
    })
    print(f"# berth peer benchmark: torch {meta['torch']}, transformers {meta['transformers']}, "
          f"{args.threads} thread(s) of {meta['cores']} core(s), attn={args.attn}, modes {','.join(modes)} on CPU, "
          f"warmup {args.warmup}, iters {args.iters}")
    print()

    results = []
    runs = [(config, case, mode) for config in configs for case in cases for mode in modes
            if ALL_CASES[case][0] == "forward" or mode not in FORWARD_ONLY_MODES]
    for config, case, mode in runs:
        spec = {
            "mode": mode,
            "config": config,
            "case": case,
            "model_dir": os.path.abspath(model_dir),
            "attn": args.attn,
            "threads": args.threads,
            "iters": args.iters,
            "warmup": args.warmup,
            "seq_len": args.seq_len,
        }
        print(f"  running {config}/{case}/{mode} ...", file=sys.stderr, flush=True)
        r = run_case(spec)
        if r is not None:
            results.append(r)

    print(markdown_table(results))
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)
            f.write("\n")
        os.replace(tmp, args.json)
        print(f"\nwrote {args.json}")
    expected = len(runs)
    return 0 if len(results) == expected else 1


if __name__ == "__main__":
    sys.exit(main())
