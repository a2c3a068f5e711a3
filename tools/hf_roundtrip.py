#!/usr/bin/env python3
"""Check a berth export against Hugging Face transformers.

Loads the exported folder (HF layout: config.json, model.safetensors, tokenizer files) with
transformers, recomputes the logits for every input line in float64 (eval mode, eager
attention), and compares them with the logits that `berth predict` wrote.

Usage:
  python tools/hf_roundtrip.py --model DIR --input FILE --expected FILE [--tol 1e-4]
      [--max-length N] [--expect-problem-type NAME] [--expect-labels NAMES]

--input     one example per line; a TAB separates an optional text pair ("text<TAB>pair").
            Blank lines are skipped.
--expected  JSONL, one object per input line, each with a "logits" array: [C] for sequence
            heads ([[...C]] is accepted too), [T][C] for token classification. For token
            heads the rows are compared with every non-padding token (including [CLS] and
            [SEP]) or, when the counts say so, with the tokens less the special ones.

Prints the max absolute difference. Exits 0 when it is <= --tol, 1 when it is larger, and 2
on a usage or shape error.
"""

import argparse
import json
import os
import sys


def fail(msg, code=2):
    print(f"hf_roundtrip: {msg}", file=sys.stderr)
    sys.exit(code)


def read_inputs(path):
    examples = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            text, sep, pair = line.partition("\t")
            examples.append((text, pair if sep else None))
    return examples


def read_expected(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                fail(f"{path}:{lineno}: not JSON: {e}")
            if not isinstance(obj, dict) or "logits" not in obj:
                fail(f"{path}:{lineno}: no \"logits\" field")
            rows.append(obj["logits"])
    return rows


def architecture(model_dir):
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    archs = config.get("architectures") or []
    return archs[0] if archs else None


def main(argv=None):
    p = argparse.ArgumentParser(description="Compare `berth predict` logits with HF transformers in float64.")
    p.add_argument("--model", required=True, help="berth export folder in HF layout")
    p.add_argument("--input", required=True, help="texts, one per line, TAB before an optional pair")
    p.add_argument("--expected", required=True, help="JSONL with a \"logits\" array per line")
    p.add_argument("--tol", type=float, default=1e-4, help="max abs difference allowed (default: %(default)s)")
    p.add_argument("--expect-problem-type", default=None,
                   help="fail unless config.problem_type is this (`none` for no problem type)")
    p.add_argument("--expect-labels", default=None,
                   help="fail unless id2label lists these names in id order, joined by the 0x1f character")
    p.add_argument("--max-length", type=int, default=None,
                   help="truncate to N tokens (default: the tokenizer's limit, capped at max_position_embeddings)")
    args = p.parse_args(argv)

    if not os.path.isfile(os.path.join(args.model, "config.json")):
        fail(f"{args.model}: no config.json")

    import numpy as np
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    arch = architecture(args.model)
    token_task = bool(arch) and arch.endswith("ForTokenClassification")
    auto_cls = AutoModelForTokenClassification if token_task else AutoModelForSequenceClassification
    model = auto_cls.from_pretrained(args.model, attn_implementation="eager", dtype=torch.float64)
    model = model.to(torch.float64).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if args.expect_problem_type is not None:
        want = None if args.expect_problem_type == "none" else args.expect_problem_type
        if model.config.problem_type != want:
            print(f"hf_roundtrip: FAIL: problem_type is {model.config.problem_type!r}, expected {want!r}")
            return 1
    if args.expect_labels is not None:
        want = args.expect_labels.split("\x1f")
        got = [model.config.id2label[i] for i in range(model.config.num_labels)]
        if got != want or [model.config.label2id[n] for n in want] != list(range(len(want))):
            print(f"hf_roundtrip: FAIL: id2label {got} / label2id {model.config.label2id}, expected {want}")
            return 1

    max_len = args.max_length
    if max_len is None:
        # RoBERTa-style positions start at pad_token_id + 1, so fewer tokens fit.
        offset = model.config.pad_token_id + 1 if model.config.model_type in ("roberta", "xlm-roberta") else 0
        max_len = min(tokenizer.model_max_length, model.config.max_position_embeddings - offset)

    examples = read_inputs(args.input)
    expected = read_expected(args.expected)
    if len(examples) != len(expected):
        fail(f"{len(examples)} input example(s) but {len(expected)} expected line(s)")
    if not examples:
        fail("no input examples")

    max_diff = 0.0
    worst = 0
    with torch.inference_mode():
        for i, ((text, pair), exp) in enumerate(zip(examples, expected)):
            enc = tokenizer(text, pair, truncation=True, max_length=max_len,
                            return_tensors="pt", return_special_tokens_mask=True)
            special = enc.pop("special_tokens_mask")[0].bool()
            logits = model(**enc).logits[0].numpy()  # [C] or [T, C]
            exp = np.asarray(exp, dtype=np.float64)
            if token_task:
                if exp.ndim != 2 or exp.shape[1] != logits.shape[1]:
                    fail(f"example {i + 1}: expected token logits [T][{logits.shape[1]}], got shape {list(exp.shape)}")
                if exp.shape[0] != logits.shape[0] and exp.shape[0] == int((~special).sum()):
                    logits = logits[(~special).numpy()]
                if exp.shape[0] != logits.shape[0]:
                    fail(f"example {i + 1}: {exp.shape[0]} expected token rows, HF has {logits.shape[0]} tokens "
                         f"({int((~special).sum())} without special tokens)")
            else:
                if exp.ndim == 2 and exp.shape[0] == 1:
                    exp = exp[0]
                if exp.shape != logits.shape:
                    fail(f"example {i + 1}: expected logits shape {list(exp.shape)}, HF gives {list(logits.shape)}")
            diff = float(np.max(np.abs(logits - exp)))
            if not np.isfinite(diff):
                diff = float("inf")
            if diff > max_diff or i == 0:
                max_diff, worst = diff, i

    print(f"hf_roundtrip: {arch or 'unknown architecture'}, {len(examples)} example(s), "
          f"max abs diff {max_diff:.3e} (worst: example {worst + 1}), tol {args.tol:g}")
    if max_diff > args.tol:
        print("hf_roundtrip: FAIL")
        return 1
    print("hf_roundtrip: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
