#!/usr/bin/env python3
"""Reference windows and logits for berth's chunked long-text classification.

For each fixture model, tokenizes long texts (and pairs) the way transformers
does with `return_overflowing_tokens=True, stride=S, max_length=M` (pairs:
`truncation="only_second"`, so the first text is in every window), runs the
model in float64 on every window, and writes the windows' ids and logits.
tests/long_text.rs aggregates these logits (mean, max, first) and compares
them with berth's document logits.

  .py-venv/bin/python tools/long-text-reference.py ../shared/fixtures tests/data/long_text/reference.json
"""

import json
import sys

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

MAX_LENGTH = 24
STRIDE = 8


def long_texts(texts):
    # Documents several windows long, from the fixture's own sentences, and one that fits.
    return [" ".join(texts[i:] + texts[:i]) for i in range(3)] + [texts[0]]


def windows_of(tokenizer, text, pair):
    kwargs = dict(max_length=MAX_LENGTH, stride=STRIDE, return_overflowing_tokens=True)
    if pair is None:
        enc = tokenizer(text, truncation=True, **kwargs)
    else:
        enc = tokenizer(text, pair, truncation="only_second", **kwargs)
    return enc["input_ids"], enc["token_type_ids"]


def main(fixtures, out):
    cases = []
    for name in ["a-seqcls", "a-multilabel", "a-regression", "a-pair"]:
        model_dir = f"{fixtures}/{name}"
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float64).eval()
        reference = json.load(open(f"{model_dir}/reference.json"))
        if "pairs" in reference["inputs"]:
            pairs = reference["inputs"]["pairs"]
            firsts = [p[0] for p in pairs]
            seconds = [p[1] for p in pairs]
            inputs = [(firsts[i], " ".join(seconds[i:] + seconds[:i])) for i in range(3)]
        else:
            inputs = [(t, None) for t in long_texts(reference["inputs"]["texts"])]
        documents = []
        for text, pair in inputs:
            ids, types = windows_of(tokenizer, text, pair)
            logits = []
            with torch.no_grad():
                for window, type_ids in zip(ids, types):
                    output = model(input_ids=torch.tensor([window]), token_type_ids=torch.tensor([type_ids]))
                    logits.append(output.logits[0].tolist())
            documents.append({"text": text, "pair": pair, "windows": ids, "logits": logits})
        cases.append({"model": name, "documents": documents})
    result = {
        "command": "python tools/long-text-reference.py ../shared/fixtures tests/data/long_text/reference.json",
        "max_length": MAX_LENGTH,
        "stride": STRIDE,
        "cases": cases,
    }
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
