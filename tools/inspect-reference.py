#!/usr/bin/env python3
"""Reference attention probabilities for `berth inspect`.

For each fixture model, runs transformers in float64 on every input of the
fixture, one input at a time and unpadded (as `berth inspect` runs it), with
`output_attentions=True, output_hidden_states=True`, and stores the attention
probabilities and hidden states of the first ROWS inputs. The fixtures keep
the hidden states of the padded batch; these are the unpadded ones, which
equal them at the real positions. tests/r21_inspect.rs compares them with
`berth inspect --dump`.

ModernBERT's stock code runs three steps in float32 even in a float64
model (the RoPE tables, the q/k rotation, the attention softmax); as for
the family fixtures, they are kept in float64 here, which is what berth
computes.

For the real all-MiniLM-L6-v2 checkpoint (float32 test) it stores the first
two texts of fixtures/minilm-l6/reference.json, in float32.

  .py-venv/bin/python tools/inspect-reference.py ../shared/fixtures models/all-MiniLM-L6-v2 tests/data/inspect
"""

import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModel, AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

ROWS = 3
FIXTURES = {
    "a-seqcls": "seq",
    "a-pair": "seq",
    "a-multilabel": "seq",
    "a-regression": "seq",
    "a-tokcls": "tok",
    "families/roberta-seqcls": "seq",
    "families/roberta-tokcls": "tok",
    "families/xlmr-seqcls": "seq",
    "families/distilbert-seqcls": "seq",
    "families/distilbert-tokcls": "tok",
    "families/electra-seqcls": "seq",
    "families/modernbert-seqcls": "seq",
    "families/modernbert-tokcls": "tok",
    "families/deberta-v3-seqcls": "seq",
    "families/deberta-v3-pair": "seq",
    "families/deberta-v3-tokcls": "tok",
}


def keep_modernbert_in_float64():
    """Runs ModernBERT's RoPE tables, q/k rotation and attention softmax in
    the model's dtype instead of float32 (the inverse frequencies from the
    float64 formula, as berth's ModernBertSettings::inv_freq)."""
    from transformers.models.modernbert import modeling_modernbert as mb

    def rotary_forward(self, x, position_ids, layer_type):
        base = self.config.rope_parameters[layer_type]["rope_theta"]
        dim = getattr(self.config, "head_dim", None) or self.config.hidden_size // self.config.num_attention_heads
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
        freqs = position_ids[..., None].to(torch.float64) * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

    def apply_rotary(q, k, cos, sin, unsqueeze_dim=1):
        cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
        return q * cos + mb.rotate_half(q) * sin, k * cos + mb.rotate_half(k) * sin

    def eager(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        weights = torch.matmul(query, key.transpose(2, 3)) * scaling
        if attention_mask is not None:
            weights = weights + attention_mask
        weights = torch.nn.functional.softmax(weights, dim=-1)
        return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights

    mb.ModernBertRotaryEmbedding.forward = rotary_forward
    mb.apply_rotary_pos_emb = apply_rotary
    mb.eager_attention_forward = eager


def inputs_of(reference):
    # (text, pair) per input; token fixtures' word lists are joined by spaces.
    inputs = reference["inputs"]
    if "texts" in inputs:
        return [(t, None) for t in inputs["texts"]]
    if "pairs" in inputs:
        return [(a, b) for a, b in inputs["pairs"]]
    return [(" ".join(words), None) for words in inputs["words"]]


def run(model, tokenizer, text, pair, dtype):
    enc = tokenizer(text, pair, return_tensors="pt") if pair is not None else tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        out = model(**enc, output_attentions=True, output_hidden_states=True)
    tensors = {"input_ids": enc["input_ids"][0].to(torch.int64)}
    for layer, attention in enumerate(out.attentions):
        tensors[f"attn.{layer}"] = attention[0].to(dtype).contiguous()
    for layer, hidden in enumerate(out.hidden_states):
        tensors[f"hidden.{layer}"] = hidden[0].to(dtype).contiguous()
    return tensors


def main(fixtures, minilm, out_dir):
    keep_modernbert_in_float64()
    os.makedirs(out_dir, exist_ok=True)
    manifest = {}
    for name, kind in FIXTURES.items():
        folder = os.path.join(fixtures, name)
        reference = json.load(open(os.path.join(folder, "reference.json")))
        tokenizer = AutoTokenizer.from_pretrained(folder)
        cls = AutoModelForSequenceClassification if kind == "seq" else AutoModelForTokenClassification
        model = cls.from_pretrained(folder, attn_implementation="eager").double().eval()
        tensors = {}
        rows = inputs_of(reference)[:ROWS]
        for i, (text, pair) in enumerate(rows):
            for key, value in run(model, tokenizer, text, pair, torch.float64).items():
                tensors[f"{i}.{key}"] = value
        file = name.replace("families/", "") + ".safetensors"
        save_file(tensors, os.path.join(out_dir, file))
        manifest[file] = {"fixture": name, "inputs": [{"text": t, "pair": p} for t, p in rows], "dtype": "F64"}
    reference = json.load(open(os.path.join(fixtures, "minilm-l6", "reference.json")))
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    model = AutoModel.from_pretrained(minilm, attn_implementation="eager").double().eval()
    rows = [(t, None) for t in reference["texts"][:2]]
    tensors = {}
    for i, (text, pair) in enumerate(rows):
        for key, value in run(model, tokenizer, text, pair, torch.float32).items():
            tensors[f"{i}.{key}"] = value
    save_file(tensors, os.path.join(out_dir, "minilm-l6.safetensors"))
    manifest["minilm-l6.safetensors"] = {"fixture": "minilm-l6", "inputs": [{"text": t, "pair": None} for t, _ in rows], "dtype": "F32"}
    manifest["_made_by"] = {
        "command": "tools/inspect-reference.py ../shared/fixtures models/all-MiniLM-L6-v2 tests/data/inspect",
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "note": "float64 from the stored float32 weights, eval mode, eager attention, one input at a time, unpadded; "
        "ModernBERT's RoPE, rotation and softmax kept in float64",
    }
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])
