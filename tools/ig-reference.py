#!/usr/bin/env python3
"""Reference attributions for `berth predict --explain`, from captum.

For each fixture model and its first inputs, runs captum's
IntegratedGradients (and InputXGradient) on the transformers model in
float64, over `inputs_embeds` (the word-embedding vectors), explaining the
largest logit (regression: the output). For the token fixture, F is the sum
of the logits of the first two words' argmax tags at their first pieces
(what berth's entity explanations sum; the pieces and tags are recorded as
`outputs`). The baseline is berth's `pad`: every
word piece replaced by [PAD]'s embedding, the special tokens kept. The
integration rule is passed explicitly. tests/r21_explain.rs compares berth's
attributions with these.

  pip install captum==0.9.0 matplotlib   # into .py-venv, locally
  .py-venv/bin/python tools/ig-reference.py ../shared/fixtures tests/data/explain/captum.json
"""

import json
import sys

import torch
from captum.attr import InputXGradient, IntegratedGradients
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

torch.set_default_dtype(torch.float64)
FIXTURES = ["a-seqcls", "a-pair", "a-multilabel", "a-regression", "families/roberta-seqcls"]
TOKEN_FIXTURES = ["a-tokcls"]
ROWS = 2
RULES = [("gausslegendre", "gauss-legendre", 16), ("riemann_middle", "riemann-middle", 8)]


def inputs_of(reference):
    inputs = reference["inputs"]
    if "pairs" in inputs:
        return [(a, b) for a, b in inputs["pairs"]]
    return [(t, None) for t in inputs["texts"]]


def attribute_all(forward, embeds, base, extra, case):
    for captum_rule, berth_rule, steps in RULES:
        attr, delta = IntegratedGradients(forward).attribute(
            embeds, baselines=base, additional_forward_args=extra, n_steps=steps, method=captum_rule,
            return_convergence_delta=True)
        case["attributions"][f"ig/{berth_rule}/{steps}"] = attr.sum(-1)[0].tolist()
        case[f"delta/{berth_rule}/{steps}"] = float(delta[0])
    attr = InputXGradient(forward).attribute(embeds, additional_forward_args=extra)
    case["attributions"]["grad-x-input"] = attr.sum(-1)[0].tolist()


def token_cases(fixtures, name):
    folder = f"{fixtures}/{name}"
    reference = json.load(open(f"{folder}/reference.json"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForTokenClassification.from_pretrained(folder, attn_implementation="eager").double().eval()
    table = model.get_input_embeddings().weight.detach()
    cases = []
    for words in reference["inputs"]["words"][:ROWS]:
        enc = tokenizer(words, is_split_into_words=True, return_tensors="pt")
        ids = enc["input_ids"]
        word_ids = enc.word_ids(0)
        special = torch.tensor([w is None for w in word_ids])
        base_ids = torch.where(special, ids[0], torch.tensor(tokenizer.pad_token_id))[None]
        embeds, base = table[ids], table[base_ids]
        extra = (enc["attention_mask"], enc["token_type_ids"])
        with torch.no_grad():
            logits = model(inputs_embeds=embeds, attention_mask=extra[0], token_type_ids=extra[1]).logits[0]
        pieces = [word_ids.index(w) for w in range(min(2, len(words)))]
        classes = [int(torch.argmax(logits[p])) for p in pieces]

        def forward(e, mask, types):
            out = model(inputs_embeds=e, attention_mask=mask, token_type_ids=types).logits
            return sum(out[:, p, c] for p, c in zip(pieces, classes))

        case = {"model": name, "words": words, "input_ids": ids[0].tolist(), "outputs": [[p, c] for p, c in zip(pieces, classes)],
                "target": classes[0], "attributions": {}}
        attribute_all(forward, embeds, base, extra, case)
        cases.append(case)
    return cases


def main(fixtures, out):
    cases = []
    for name in FIXTURES:
        folder = f"{fixtures}/{name}"
        reference = json.load(open(f"{folder}/reference.json"))
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="eager").double().eval()
        table = model.get_input_embeddings().weight.detach()
        for text, pair in inputs_of(reference)[:ROWS]:
            enc = tokenizer(text, pair, return_tensors="pt") if pair is not None else tokenizer(text, return_tensors="pt")
            ids = enc["input_ids"]
            special = torch.tensor(tokenizer.get_special_tokens_mask(ids[0].tolist(), already_has_special_tokens=True), dtype=torch.bool)
            base_ids = torch.where(special, ids[0], torch.tensor(tokenizer.pad_token_id))[None]
            embeds, base = table[ids], table[base_ids]
            extra = (enc["attention_mask"], enc.get("token_type_ids"))
            with torch.no_grad():
                logits = model(inputs_embeds=embeds, attention_mask=extra[0], token_type_ids=extra[1]).logits[0]
            target = int(torch.argmax(logits))

            def forward(e, mask, types):
                return model(inputs_embeds=e, attention_mask=mask, token_type_ids=types).logits[:, target]

            case = {"model": name, "text": text, "pair": pair, "input_ids": ids[0].tolist(), "target": target, "attributions": {}}
            attribute_all(forward, embeds, base, extra, case)
            cases.append(case)
    for name in TOKEN_FIXTURES:
        cases.extend(token_cases(fixtures, name))
    made_by = {"command": "tools/ig-reference.py ../shared/fixtures tests/data/explain/captum.json",
               "torch": torch.__version__, "transformers": __import__("transformers").__version__,
               "captum": __import__("captum").__version__, "baseline": "pad, special tokens kept"}
    with open(out, "w") as f:
        json.dump({"made_by": made_by, "cases": cases}, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
