"""Builds the classification-metrics test cases and scikit-learn's answers.

Run from the repository root, with scikit-learn installed:

    python3 tests/data/metrics/make_expected.py

It writes tests/data/metrics/cases.json, which tests/metrics.rs reads. Every
case stores its inputs (label ids and label names) beside what scikit-learn
computes from them, so the Rust tests never need Python.
"""

import json
import random
import sys
from pathlib import Path

import numpy as np
import sklearn
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    precision_recall_fscore_support,
)

COMMAND = "python3 tests/data/metrics/make_expected.py"
OUT = Path(__file__).resolve().parent / "cases.json"


def random_case(seed, n_classes, n_samples, p_correct):
    """y_true uniform over the classes; y_pred right with p_correct, else uniform."""
    rng = random.Random(seed)
    y_true = [rng.randrange(n_classes) for _ in range(n_samples)]
    y_pred = [t if rng.random() < p_correct else rng.randrange(n_classes) for t in y_true]
    return y_true, y_pred


def cases():
    yield dict(
        name="missing_class",
        note="class 2 (`c`) never occurs in y_true (support 0) but is predicted twice",
        labels=["a", "b", "c", "d"],
        y_true=[0, 1, 1, 3, 0, 3, 1, 0, 3, 1],
        y_pred=[0, 2, 1, 3, 2, 3, 1, 0, 1, 1],
    )
    yield dict(
        name="never_predicted",
        note="class 1 (`neutral`) has support 3 and is never predicted",
        labels=["negative", "neutral", "positive"],
        y_true=[0, 1, 2, 1, 0, 2, 1, 2, 0, 2, 2],
        y_pred=[0, 0, 2, 2, 0, 2, 0, 2, 2, 2, 0],
    )
    yield dict(
        name="unused_label",
        note="class 3 (`O`) neither occurs nor is predicted; class 0 is always wrong",
        labels=["B-PER", "I-PER", "B-LOC", "O"],
        y_true=[0, 1, 2, 2, 1, 0, 2],
        y_pred=[1, 1, 2, 2, 1, 2, 0],
    )
    yield dict(
        name="perfect",
        note="every prediction right",
        labels=["x", "y", "z"],
        y_true=[2, 0, 1, 1, 2, 0, 2],
        y_pred=[2, 0, 1, 1, 2, 0, 2],
    )
    yield dict(
        name="all_wrong",
        note="every prediction wrong: accuracy 0, every score 0",
        labels=["left", "right"],
        y_true=[0, 1, 0, 1, 1],
        y_pred=[1, 0, 1, 0, 0],
    )
    yield dict(
        name="binary",
        note="two classes, one name non-ASCII; precision of `positif` is 5/8 = 0.625, "
        "an exact tie at 2 digits that round-half-even prints as 0.62",
        labels=["négatif", "positif"],
        y_true=[0] * 9 + [1] * 7,
        y_pred=[0] * 6 + [1] * 3 + [1] * 5 + [0] * 2,
    )
    yield dict(
        name="single_sample",
        note="one sample, three classes",
        labels=["p", "q", "r"],
        y_true=[1],
        y_pred=[1],
    )
    y_true, y_pred = random_case(seed=20240607, n_classes=5, n_samples=200, p_correct=0.6)
    yield dict(
        name="random_5class_200",
        note="Python random.Random(20240607): y_true uniform over 5 classes, y_pred right with p=0.6 else uniform",
        labels=["World", "Sports", "Business", "Sci/Tech", "a much longer class name"],
        y_true=y_true,
        y_pred=y_pred,
    )


def expected(case):
    y_true, y_pred, names = case["y_true"], case["y_pred"], case["labels"]
    ids = list(range(len(names)))
    # labels= must be passed: without it scikit-learn reports only the labels
    # that occur in y_true or y_pred, and drops the rest from every average.
    kw = dict(labels=ids, zero_division=0)
    report = classification_report(y_true, y_pred, target_names=names, output_dict=True, **kw)
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="micro", **kw)
    return dict(
        report=report,
        text_digits2=classification_report(y_true, y_pred, target_names=names, digits=2, **kw),
        text_digits4=classification_report(y_true, y_pred, target_names=names, digits=4, **kw),
        confusion_matrix=confusion_matrix(y_true, y_pred, labels=ids).tolist(),
        accuracy=float(accuracy_score(y_true, y_pred)),
        micro_avg={"precision": float(p), "recall": float(r), "f1-score": float(f)},
    )


def main():
    out = {
        "command": COMMAND,
        "generator": "tests/data/metrics/make_expected.py",
        "versions": {
            "python": sys.version.split()[0],
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
        },
        "cases": [dict(case, expected=expected(case)) for case in cases()],
    }
    OUT.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT.name}: {len(out['cases'])} cases")


if __name__ == "__main__":
    main()
