#!/usr/bin/env python3
"""One row of docs/results.md's Reuters table from a held-out report.

    tools/reuters-summary.py NAME [TRAINING_SECONDS]

Reads runs/reuters-NAME.eval.json (`berth eval --output` on the even lines of
dev.jsonl) and the training file, and prints micro-F1, two macro-F1s and the
rare-topic macro-F1:
- macro-F1 (all 90): scikit-learn's over every topic of labels.txt, where a
  topic absent from the report half and never predicted scores 0;
- macro-F1 (present): over the topics with at least one document in the
  report half, as the published ModApte results average;
- rare macro-F1: over the present topics that are on fewer than 1% of the
  training documents.
"""
import json
import sys
from collections import Counter
from pathlib import Path

name = sys.argv[1]
seconds = sys.argv[2] if len(sys.argv) > 2 else "?"
report = json.loads(Path(f"runs/reuters-{name}.eval.json").read_text())
train = [json.loads(line) for line in Path("../shared/data/reuters/train.jsonl").read_text().splitlines() if line.strip()]
positives = Counter(topic for row in train for topic in row["labels"])
topics = [line.strip() for line in Path("../shared/data/reuters/labels.txt").read_text().splitlines() if line.strip()]

present = [t for t in topics if report[t]["support"] > 0]
rare = [t for t in present if positives[t] < 0.01 * len(train)]


def macro(ts):
    return sum(report[t]["f1-score"] for t in ts) / max(len(ts), 1)


print(
    f"| {name} | {report['micro avg']['f1-score']:.4f} | {report['macro avg']['f1-score']:.4f} | "
    f"{macro(present):.4f} ({len(present)} topics) | {macro(rare):.4f} ({len(rare)} topics) | {seconds} s |"
)
