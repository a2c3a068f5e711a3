#!/usr/bin/env python3
"""The peer run for berth's SST-2 result: HF Trainer with the same settings.

all-MiniLM-L6-v2 + a new classification head, 1 epoch, batch 32, lr 5e-5,
warmup ratio 0.1, weight decay 0.01, max length 128, dynamic padding, on the
CPU, evaluated once on the dev set at the end. Prints the dev accuracy, the
training wall time (trainer.train()), and the real (unpadded) tokens/s.

Usage: python3 tools/hf-trainer-sst2.py [--data ../shared/data/sst2] [--model models/all-MiniLM-L6-v2] [--out runs/hf-sst2]
Needs torch, transformers (and accelerate, which Trainer requires).
"""

import argparse
import csv
import json
import time


def read_tsv(path):
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, body = rows[0], rows[1:]
    ti, li = header.index("sentence"), header.index("label")
    return [r[ti] for r in body], [int(r[li]) for r in body]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="../shared/data/sst2")
    p.add_argument("--model", default="models/all-MiniLM-L6-v2")
    p.add_argument("--out", default="runs/hf-sst2")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(args.model)
    train_x, train_y = read_tsv(f"{args.data}/train.tsv")
    dev_x, dev_y = read_tsv(f"{args.data}/dev.tsv")

    class Dataset(torch.utils.data.Dataset):
        def __init__(self, texts, labels):
            enc = tok(texts, truncation=True, max_length=128)
            self.items = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                           "token_type_ids": enc["token_type_ids"][i], "labels": labels[i]} for i in range(len(texts))]

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            return self.items[i]

    train_ds, dev_ds = Dataset(train_x, train_y), Dataset(dev_x, dev_y)
    real_tokens = sum(len(item["input_ids"]) for item in train_ds.items)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2)
    # Warmup ratio 0.1 as a step count (transformers 5 dropped `warmup_ratio`): 10% of the
    # ceil(n / 32) optimizer steps of one epoch, rounded up as berth does.
    total_steps = -(-len(train_ds) // 32)
    warmup_steps = -(-total_steps // 10)
    training_args = TrainingArguments(
        output_dir=args.out, num_train_epochs=1, per_device_train_batch_size=32, per_device_eval_batch_size=64,
        learning_rate=5e-5, warmup_steps=warmup_steps, weight_decay=0.01, save_strategy="no", eval_strategy="no",
        logging_steps=100, report_to=[], use_cpu=True, seed=42, dataloader_num_workers=0)

    def accuracy(pred):
        return {"accuracy": float((pred.predictions.argmax(-1) == pred.label_ids).mean())}

    trainer = Trainer(model=model, args=training_args, train_dataset=train_ds, eval_dataset=dev_ds,
                      data_collator=DataCollatorWithPadding(tok), compute_metrics=accuracy)
    start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - start
    result = trainer.evaluate()
    out = {"dev_accuracy": result["eval_accuracy"], "train_seconds": train_seconds,
           "real_tokens_per_s": real_tokens / train_seconds, "torch": torch.__version__}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
