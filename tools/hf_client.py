"""Drive `berth serve` with huggingface_hub's InferenceClient.

For each line of --input, calls `text_classification` (one text per call,
as the client does) with each of the option sets below, and prints one JSON
line per input: {"case name": [{"label", "score"}, ...], ...}. The test
(tests/r15_serve.rs) compares these answers with `berth predict`'s.

    python tools/hf_client.py --url http://127.0.0.1:PORT --input texts.txt
"""

import argparse
import json
import sys

from huggingface_hub import InferenceClient

CASES = {
    "default": {},
    "top_k_1": {"top_k": 1},
    "softmax_top_k_2": {"function_to_apply": "softmax", "top_k": 2},
    "sigmoid": {"function_to_apply": "sigmoid"},
    "none": {"function_to_apply": "none"},
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--input", required=True)
    args = parser.parse_args()
    client = InferenceClient(model=args.url)
    with open(args.input, encoding="utf-8") as f:
        texts = [line.rstrip("\n") for line in f if line.strip()]
    for text in texts:
        row = {}
        for name, options in CASES.items():
            answer = client.text_classification(text, **options)
            if not isinstance(answer, list):
                sys.exit(f"{name}: the client returned {type(answer).__name__}, not a list: {answer!r}")
            row[name] = [{"label": e.label, "score": e.score} for e in answer]
        print(json.dumps(row))


if __name__ == "__main__":
    main()
