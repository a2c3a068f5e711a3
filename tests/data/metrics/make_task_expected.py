"""Builds the multi-label, entity-level and regression metric test cases and
the reference libraries' answers.

Run from the repository root, with scikit-learn, scipy and seqeval installed:

    python3 tests/data/metrics/make_task_expected.py

It writes tests/data/metrics/task_cases.json, which tests/task_metrics.rs
reads. Every case stores its inputs beside what the reference computes from
them, so the Rust tests never need Python:

- multilabel: sklearn.metrics.classification_report (output_dict and text),
  accuracy_score (subset accuracy) and hamming_loss on indicator matrices;
- thresholds / tune: sklearn.metrics.precision_recall_curve, then F1 =
  2PR/(P+R) (0 where P+R = 0) in numpy and the best F1, ties to the largest
  threshold;
- entity: seqeval.metrics.classification_report (default mode, and
  mode="strict" with scheme=IOB2), and each sentence's entities;
- regression: scipy.stats.pearsonr, scipy.stats.spearmanr and
  sklearn.metrics.mean_squared_error.
"""

import importlib.metadata
import json
import random
import sys
import warnings
from pathlib import Path

import numpy as np
import scipy
import sklearn
from scipy.stats import pearsonr, spearmanr
from seqeval.metrics import classification_report as seqeval_report
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import IOB2, Entities
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    hamming_loss,
    mean_squared_error,
    precision_recall_curve,
)

COMMAND = "python3 tests/data/metrics/make_task_expected.py"
OUT = Path(__file__).resolve().parent / "task_cases.json"


def plain(v):
    """numpy scalars and containers to plain Python, for json."""
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


# ---------------------------------------------------------------- multi-label


def multilabel_cases():
    yield dict(
        name="handcrafted",
        note="`threat` has positives but is never predicted; `spam` is predicted but never true; "
        "row 5 has no true and no predicted label; row 0 is exactly right",
        labels=["toxic", "obscene", "threat", "insult", "spam"],
        y_true=[
            [1, 1, 0, 1, 0],
            [1, 0, 1, 0, 0],
            [0, 1, 0, 0, 0],
            [1, 0, 0, 1, 0],
            [0, 0, 1, 1, 0],
            [0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0],
        ],
        y_pred=[
            [1, 1, 0, 1, 0],
            [1, 0, 0, 0, 1],
            [0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [0, 0, 0, 1, 1],
            [0, 0, 0, 0, 0],
            [0, 1, 0, 0, 1],
        ],
    )
    yield dict(
        name="unused_label",
        note="label `c` is neither true nor predicted in any row",
        labels=["a", "b", "c"],
        y_true=[[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]],
        y_pred=[[1, 1, 0], [0, 1, 0], [1, 0, 0], [1, 0, 0]],
    )
    yield dict(
        name="no_true_label",
        note="y_true has no positive at all: weighted average falls back to the plain mean",
        labels=["x", "y"],
        y_true=[[0, 0], [0, 0], [0, 0]],
        y_pred=[[1, 0], [0, 0], [1, 1]],
    )
    yield dict(
        name="perfect",
        note="every cell right",
        labels=["p", "q", "r"],
        y_true=[[1, 0, 1], [0, 1, 0], [1, 1, 1]],
        y_pred=[[1, 0, 1], [0, 1, 0], [1, 1, 1]],
    )
    rng = random.Random(20240611)
    rates = [0.4, 0.25, 0.1, 0.05, 0.3, 0.15]
    y_true = [[int(rng.random() < p) for p in rates] for _ in range(300)]
    # Right with probability 0.85 per cell; label 5 is never predicted.
    y_pred = [[(t if rng.random() < 0.85 else 1 - t) if j != 5 else 0 for j, t in enumerate(row)] for row in y_true]
    yield dict(
        name="random_300x6",
        note="Python random.Random(20240611): label j true with rates[j], each cell flipped with p=0.15; "
        "label 5 (`identity`) never predicted",
        labels=["toxic", "severe toxic", "obscene", "threat", "insult", "identity"],
        y_true=y_true,
        y_pred=y_pred,
    )


def multilabel_expected(case):
    yt, yp, names = np.array(case["y_true"]), np.array(case["y_pred"]), case["labels"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = dict(target_names=names, zero_division=0)
        return dict(
            report=classification_report(yt, yp, output_dict=True, **kw),
            text_digits2=classification_report(yt, yp, digits=2, **kw),
            text_digits4=classification_report(yt, yp, digits=4, **kw),
            subset_accuracy=float(accuracy_score(yt, yp)),
            hamming_loss=float(hamming_loss(yt, yp)),
        )


def check_multilabel_coverage(cases):
    def cols(m):
        return [list(c) for c in zip(*m)]

    c = next(c for c in cases if c["name"] == "handcrafted")
    t, p = cols(c["y_true"]), cols(c["y_pred"])
    assert any(any(tc) and not any(pc) for tc, pc in zip(t, p)), "a label with positives never predicted"
    assert any(not any(tc) and any(pc) for tc, pc in zip(t, p)), "a label predicted but never true"
    c = next(c for c in cases if c["name"] == "unused_label")
    assert any(not any(tc) and not any(pc) for tc, pc in zip(cols(c["y_true"]), cols(c["y_pred"])))


# ----------------------------------------------------------------- thresholds


def best_f1(scores, y_true):
    """sklearn's precision_recall_curve, F1 per threshold, ties to the largest threshold."""
    y = np.asarray(y_true, dtype=int)
    if y.sum() == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        precision, recall, thresholds = precision_recall_curve(y, np.asarray(scores, dtype=float))
    # The last (precision 1, recall 0) point has no threshold.
    p, r = precision[:-1], recall[:-1]
    denom = p + r
    f1 = np.where(denom > 0, 2 * p * r / np.where(denom > 0, denom, 1.0), 0.0)
    # thresholds ascend: the last index of the maximum is the largest threshold.
    idx = len(f1) - 1 - int(np.argmax(f1[::-1]))
    return [float(thresholds[idx]), float(f1[idx])], int(np.sum(f1 == f1[idx]))


def threshold_cases():
    yield dict(
        name="tie_in_f1",
        note="t=0.9 (P=1, R=1/2) and t=0.6 (P=1/2, R=1) both give F1=2/3: the larger, 0.9, wins",
        scores=[0.9, 0.8, 0.7, 0.6],
        y_true=[1, 0, 0, 1],
        ties=True,
    )
    yield dict(
        name="tied_scores",
        note="samples share scores; a threshold takes all of them at once",
        scores=[0.5, 0.5, 0.5, 0.2, 0.2, 0.8, 0.8, 0.1],
        y_true=[1, 0, 1, 1, 0, 1, 0, 0],
    )
    yield dict(
        name="no_positive",
        note="no positive in y_true: no threshold (None)",
        scores=[0.3, 0.7, 0.1],
        y_true=[0, 0, 0],
    )
    yield dict(
        name="all_positive",
        note="every sample positive: the lowest score gives recall 1 and precision 1",
        scores=[0.3, 0.7, 0.1, 0.4],
        y_true=[1, 1, 1, 1],
    )
    yield dict(
        name="logits",
        note="scores outside [0, 1], negative ones included",
        scores=[-2.5, 3.1, 0.0, -0.7, 1.2, 4.4, -3.3, 0.9],
        y_true=[0, 1, 0, 1, 0, 1, 0, 1],
    )
    rng = random.Random(20240612)
    y = [int(rng.random() < 0.3) for _ in range(300)]
    yield dict(
        name="random_300_rounded",
        note="Python random.Random(20240612): 30% positive, score = clip(0.35*y + U(0, 0.7)) rounded "
        "to 2 decimals (many tied scores)",
        scores=[round(min(1.0, 0.35 * t + rng.random() * 0.7), 2) for t in y],
        y_true=y,
    )
    y = [int(rng.random() < 0.1) for _ in range(400)]
    yield dict(
        name="random_400_continuous",
        note="same generator, continued: 10% positive, score = sigmoid(1.5*y + N(0, 1))",
        scores=[float(1 / (1 + np.exp(-(1.5 * t + rng.gauss(0, 1))))) for t in y],
        y_true=y,
    )


def threshold_expected(case):
    found = best_f1(case["scores"], case["y_true"])
    if case.pop("ties", False):
        assert found[1] >= 2, f"{case['name']}: no tie in the best F1"
    return None if found is None else found[0]


def tune_cases():
    rng = random.Random(20240613)
    rates = [0.3, 0.1, 0.0, 0.5]
    y_true = [[int(rng.random() < p) for p in rates] for _ in range(250)]
    probs = [[round(min(1.0, 0.3 * t + 0.7 * rng.random()), 3) for t in row] for row in y_true]
    yield dict(
        name="random_250x4",
        note="Python random.Random(20240613): label j true with rates[j] (label 2 never: default), "
        "score = 0.3*y + U(0, 0.7) rounded to 3 decimals",
        probs=probs,
        y_true=y_true,
        default=0.5,
    )


def tune_expected(case):
    out = []
    for j in range(len(case["probs"][0])):
        found = best_f1([row[j] for row in case["probs"]], [row[j] for row in case["y_true"]])
        out.append(case["default"] if found is None else found[0][0])
    return out


# --------------------------------------------------------------------- entity


def entity_cases():
    yield dict(
        name="starts_with_i",
        note="y_true's PER starts with I- (an entity in default mode, none in strict IOB2)",
        y_true=[["O", "I-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "O"]],
        y_pred=[["O", "B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "O"]],
    )
    yield dict(
        name="pred_only_type",
        note="MISC is only predicted (support 0); LOC only true (never found)",
        y_true=[["B-PER", "I-PER", "O", "B-LOC"], ["O", "O", "B-PER"]],
        y_pred=[["B-PER", "I-PER", "O", "B-MISC"], ["B-MISC", "O", "B-PER"]],
    )
    yield dict(
        name="type_changes",
        note="a change of type ends a chunk; B- after B- starts a new one; I- of another type after B-",
        y_true=[["B-PER", "I-LOC", "I-LOC", "B-LOC", "B-LOC", "I-LOC", "O", "I-ORG"]],
        y_pred=[["B-PER", "B-LOC", "I-LOC", "B-LOC", "I-LOC", "I-LOC", "O", "B-ORG"]],
    )
    yield dict(
        name="sentence_boundary",
        note="an entity ends each sentence and I- of the same type opens the next: no entity crosses",
        y_true=[["O", "B-PER", "I-PER"], ["I-PER", "O"], ["B-LOC"], ["I-LOC", "I-LOC"]],
        y_pred=[["O", "B-PER", "I-PER"], ["I-PER", "O"], ["B-LOC"], ["B-LOC", "I-LOC"]],
    )
    yield dict(
        name="iobes",
        note="IOBES tags in default mode: S- is one word, E- closes a chunk, E- after E- starts one",
        y_true=[["S-PER", "B-ORG", "I-ORG", "E-ORG", "O", "B-LOC", "E-LOC"], ["E-ORG", "E-ORG", "S-LOC", "I-LOC"]],
        y_pred=[["S-PER", "B-ORG", "E-ORG", "E-ORG", "O", "S-LOC", "E-LOC"], ["B-ORG", "E-ORG", "S-LOC", "S-LOC"]],
        schemes=["default"],
    )
    yield dict(
        name="odd_tags",
        note="tags seqeval's default mode reads by its first character: bare B and I (type _), a `.` "
        "tag, a type with a hyphen (B-PER-X: PER-X), a prefix-less tag",
        y_true=[["B", "I", "O", ".", "B-PER-X", "I-PER-X", "O"], ["I", "B", "LOC", "O"]],
        y_pred=[["B", "B", "O", ".", "B-PER-X", "I-PER", "O"], ["I", "I", "LOC", "LOC"]],
        schemes=["default"],
    )
    yield dict(
        name="unicode_types",
        note="non-ASCII types sort by code point, as Python's sorted",
        y_true=[["B-Ort", "O", "B-Ämt", "I-Ämt", "B-Zeit"]],
        y_pred=[["B-Ort", "O", "B-Ämt", "O", "B-Zeit"]],
    )

    rng = random.Random(20240614)
    kinds = ["PER", "LOC", "ORG", "MISC"]

    def sentence():
        tags, n = [], rng.randrange(1, 25)
        while len(tags) < n:
            if rng.random() < 0.6:
                tags.append("O")
            else:
                k = rng.choice(kinds)
                tags += [f"B-{k}"] + [f"I-{k}"] * rng.choice([0, 0, 1, 1, 2, 3])
        return tags[:n]

    def corrupt(tags, p):
        """Change each tag with probability p to a random one (default mode: I- starts too)."""
        out = []
        for t in tags:
            if rng.random() < p:
                k = rng.choice(kinds)
                t = rng.choice(["O", f"B-{k}", f"I-{k}"])
            out.append(t)
        return out

    y_true = [corrupt(sentence(), 0.05) for _ in range(300)]
    y_pred = [corrupt(s, 0.12) for s in y_true]
    yield dict(
        name="random_300",
        note="Python random.Random(20240614): 300 sentences of 1-24 IOB2 words over PER/LOC/ORG/MISC, "
        "y_true with 5% of tags replaced by random O/B-/I- tags (so some entities start with I-), "
        "y_pred with 12% more",
        y_true=y_true,
        y_pred=y_pred,
    )

    def odd_corpus(vocabulary, sentences):
        return [[rng.choice(vocabulary) for _ in range(rng.randrange(0, 12))] for _ in range(sentences)]

    # Every prefix seqeval's default mode treats specially, types that
    # change, a `.` prefix with a type (which can leave a chunk's start
    # behind, across sentences), prefix-less and hyphenated tags.
    odd = ["O", "O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]
    odd += ["B", "I", "E", "S", ".", ".PER", "X-PER", "PER", "B-PER-X", "I-PER-X", "BB-LOC", "I--LOC"]
    yield dict(
        name="random_odd_tags",
        note="same generator, continued: 200 sentences of 0-11 tags drawn uniformly from an odd vocabulary "
        "(IOBES, bare prefixes, `.`, `.PER`, `X-PER`, prefix-less, hyphenated types), y_pred drawn the same way "
        "(same lengths); default mode only. In y_true some chunks start in an earlier sentence (a `.PER` "
        "then `I-PER` continues a chunk without starting one): seqeval reads the corpus as one sequence",
        cross_sentence=True,
        y_true=(t := odd_corpus(odd, 200)),
        y_pred=[[rng.choice(odd) for _ in sent] for sent in t],
        schemes=["default"],
    )
    iob = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B", "I", "O-PER", "BPER", "IPER", "B--LOC-", "I-LOC-"]
    t = odd_corpus(iob, 200)
    yield dict(
        name="random_odd_iob",
        note="same generator, continued: 200 sentences of 0-11 tags with B/I/O prefixes only (so valid in strict "
        "IOB2) but odd forms: bare B and I, O-PER, BPER, B--LOC- (strict strips the hyphens); y_pred = y_true "
        "with 30% of tags redrawn",
        y_true=t,
        y_pred=[[rng.choice(iob) if rng.random() < 0.3 else x for x in sent] for sent in t],
    )


def entity_expected(case, scheme):
    yt, yp = case["y_true"], case["y_pred"]
    if scheme == "default":
        kw = dict(zero_division=0)

        def entities(sent):
            return [[k, s, e + 1] for k, s, e in get_entities(sent)]
    else:
        kw = dict(zero_division=0, mode="strict", scheme=IOB2)

        def entities(sent):
            return [[e.tag, e.start, e.end] for e in Entities([sent], IOB2).entities[0]]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dict(
            report=plain(seqeval_report(yt, yp, output_dict=True, **kw)),
            text_digits2=seqeval_report(yt, yp, digits=2, **kw),
            text_digits4=seqeval_report(yt, yp, digits=4, **kw),
            entities_true=[entities(s) for s in yt],
            entities_pred=[entities(s) for s in yp],
        )


def corpus_differs_from_sentences(sentences):
    """Whether seqeval's corpus-level chunks differ from the sentences' own, placed end to end."""
    offset, placed = 0, set()
    for s in sentences:
        placed |= {(k, a + offset, b + offset) for k, a, b in get_entities(s)}
        offset += len(s) + 1
    return set(get_entities(sentences)) != placed


def all_entity_cases():
    for case in entity_cases():
        schemes = case.pop("schemes", ["default", "strict_iob2"])
        if case.pop("cross_sentence", False):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert corpus_differs_from_sentences(case["y_true"]), f"{case['name']}: no chunk crosses a sentence"
        yield dict(case, expected={scheme: entity_expected(case, scheme) for scheme in schemes})


# ----------------------------------------------------------------- regression


def regression_cases():
    yield dict(name="small", note="five points", x=[1.0, 2.5, 3.0, 4.5, 7.0], y=[2.1, 2.9, 3.2, 5.0, 6.1])
    yield dict(name="two_points", note="the fewest points allowed: r = -1", x=[0.5, 1.5], y=[3.0, -1.0])
    yield dict(
        name="spearman_ties",
        note="ties in x and y: average ranks",
        x=[1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 5.0, 0.5],
        y=[0.2, 0.2, 0.9, 0.4, 0.4, 1.0, 1.0, 0.1],
    )
    yield dict(
        name="large_offset",
        note="values near 1e6: centring matters",
        x=[1e6 + v for v in [0.1, 0.4, 0.2, 0.9, 0.5, 0.3]],
        y=[2e6 - v for v in [0.3, 0.2, 0.5, 0.8, 0.4, 0.1]],
    )
    rng = random.Random(20240615)
    x = [rng.gauss(0, 1) for _ in range(300)]
    yield dict(
        name="random_300",
        note="Python random.Random(20240615): x ~ N(0, 1), y = 0.7x + N(0, 0.5), both rounded to 1 decimal (ties)",
        x=[round(v, 1) for v in x],
        y=[round(0.7 * v + rng.gauss(0, 0.5), 1) for v in x],
    )
    x = [rng.uniform(0, 5) for _ in range(400)]
    yield dict(
        name="random_400_stsb",
        note="same generator, continued: STS-B-like scores in [0, 5], y = clip(x + N(0, 1))",
        x=x,
        y=[min(5.0, max(0.0, v + rng.gauss(0, 1))) for v in x],
    )


def regression_expected(case):
    x, y = np.array(case["x"]), np.array(case["y"])
    return dict(
        pearson=float(pearsonr(x, y).statistic),
        spearman=float(spearmanr(x, y).statistic),
        mse=float(mean_squared_error(x, y)),
    )


def dumps(v, indent=0):
    """JSON with one key per line, but each list of scalars, and each list short enough, on one line."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(v, list) and len(json.dumps(v, ensure_ascii=False)) <= 100:
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, dict) and v:
        items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {dumps(x, indent + 1)}" for k, x in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(v, list) and any(isinstance(x, (list, dict)) for x in v):
        return "[\n" + ",\n".join(inner + dumps(x, indent + 1) for x in v) + "\n" + pad + "]"
    return json.dumps(v, ensure_ascii=False)


def main():
    multilabel = [dict(c, expected=multilabel_expected(c)) for c in multilabel_cases()]
    check_multilabel_coverage(multilabel)
    thresholds = []
    for c in threshold_cases():
        expected = threshold_expected(c)
        thresholds.append(dict(c, expected=expected))
    out = {
        "command": COMMAND,
        "generator": "tests/data/metrics/make_task_expected.py",
        "versions": {
            "python": sys.version.split()[0],
            "scikit-learn": sklearn.__version__,
            "seqeval": importlib.metadata.version("seqeval"),
            "scipy": scipy.__version__,
            "numpy": np.__version__,
        },
        "multilabel": multilabel,
        "thresholds": thresholds,
        "tune": [dict(c, expected=tune_expected(c)) for c in tune_cases()],
        "entity": list(all_entity_cases()),
        "regression": [dict(c, expected=regression_expected(c)) for c in regression_cases()],
    }
    text = dumps(out)
    assert json.loads(text) == json.loads(json.dumps(out))
    OUT.write_text(text + "\n", encoding="utf-8")
    counts = ", ".join(f"{k} {len(v)}" for k, v in out.items() if isinstance(v, list))
    print(f"wrote {OUT.name}: {counts}")


if __name__ == "__main__":
    main()
