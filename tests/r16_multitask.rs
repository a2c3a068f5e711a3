//! Issue 16: multi-task training runs through the one training loop, and so
//! takes --device, --grad-accum and --save-every like a single-task run.
//! --resume-from is refused for multi-task runs until it is bit-identical.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{fixture_dir, scratch_dir};
use crate::tasks::conll_sentences;
use crate::train::{assert_complete_checkpoint, berth, fail, read_json, succeed};

/// A heads file with a sentiment head (32 rows) and an NER head (24
/// sentences), both evaluated on their training data.
fn write_heads(dir: &Path) -> PathBuf {
    let rows: String = (0..32)
        .map(|i| format!("{} film {i}\t{}\n", if i % 2 == 0 { "great lovely" } else { "awful dull" }, ["pos", "neg"][i % 2]))
        .collect();
    std::fs::write(dir.join("sentiment.tsv"), format!("text\tlabel\n{rows}")).unwrap();
    std::fs::write(dir.join("ner.txt"), conll_sentences(24, 0)).unwrap();
    let heads = dir.join("heads.toml");
    std::fs::write(
        &heads,
        "mixing = \"proportional\"\n\n[[head]]\nname = \"sentiment\"\ntrain = \"sentiment.tsv\"\neval = \"sentiment.tsv\"\n\n\
         [[head]]\nname = \"ner\"\ntask = \"token-classification\"\ntrain = \"ner.txt\"\neval = \"ner.txt\"\nloss-weight = 0.5\n",
    )
    .unwrap();
    heads
}

fn multitask_cmd(model: &Path, heads: &Path, output: &Path, extra: &[&str]) -> std::process::Command {
    let mut cmd = berth();
    cmd.arg("train").arg("--model").arg(model).arg("--heads").arg(heads).arg("--output").arg(output);
    cmd.args(["--batch-size", "8", "--max-length", "24", "--seed", "5", "--lr", "5e-3", "--logging-steps", "1"]);
    cmd.args(extra);
    cmd
}

fn log_of(output: &Path) -> Vec<Value> {
    std::fs::read_to_string(output.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The first logged loss of each head, and the number of steps logged.
fn first_losses(output: &Path) -> (Vec<f64>, usize) {
    let log = log_of(output);
    let first = ["sentiment", "ner"]
        .iter()
        .map(|h| log.iter().find_map(|e| e[format!("loss_{h}")].as_f64()).unwrap_or_else(|| panic!("no loss_{h} logged")))
        .collect();
    (first, log.iter().filter(|e| e["learning_rate"].is_number()).count())
}

#[test]
fn r16_multitask_trains_on_the_simulated_device_with_grad_accum() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let work = scratch_dir("r16-multitask-sim");
    let heads = write_heads(&work);
    // 4 + 3 batches an epoch, 2 per step: 4 steps an epoch.
    let args = ["--grad-accum", "2", "--max-steps", "6"];
    let (cpu, sim) = (work.join("cpu"), work.join("sim"));
    succeed(multitask_cmd(&model, &heads, &cpu, &args).args(["--device", "cpu"]), "multi-task on the CPU");
    let out = succeed(multitask_cmd(&model, &heads, &sim, &args).args(["--device", "sim"]), "multi-task on --device sim");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("device: ") && !stderr.contains("device: cpu"), "{stderr}");
    assert!(stderr.contains("6 optimizer steps (4 per epoch, 16 examples per step)"), "{stderr}");
    // Each head's first loss is computed before any update: the device's
    // fp32 forward agrees with the CPU's to rounding.
    let ((cpu_first, cpu_steps), (sim_first, sim_steps)) = (first_losses(&cpu), first_losses(&sim));
    assert_eq!((cpu_steps, sim_steps), (6, 6), "one log line per step");
    for (c, s) in cpu_first.iter().zip(&sim_first) {
        assert!((c - s).abs() <= 1e-4 * c.abs().max(1.0), "first losses: cpu {cpu_first:?}, sim {sim_first:?}");
    }
    for dir in [&cpu, &sim] {
        let metrics = read_json(&dir.join("metrics.json"));
        assert!(metrics["sentiment"]["accuracy"].is_number() && metrics["ner"]["micro avg"]["f1-score"].is_number(), "{metrics}");
        assert_eq!(read_json(&dir.join("training_state.json"))["step"], 6);
        assert!(dir.join("heads.json").is_file() && dir.join("model.safetensors").is_file());
    }
}

#[test]
fn r16_multitask_writes_checkpoints_and_refuses_resume_for_now() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let work = scratch_dir("r16-multitask-checkpoints");
    let heads = write_heads(&work);
    let out = work.join("out");
    let args = ["--max-steps", "4", "--save-every", "2", "--grad-accum", "2", "--device", "cpu"];
    succeed(&mut multitask_cmd(&model, &heads, &out, &args), "the run");
    let checkpoint = out.join("checkpoint-2");
    assert_complete_checkpoint(&checkpoint, 2);
    assert!(checkpoint.join("heads.json").is_file(), "a multi-task checkpoint keeps its heads");
    assert_eq!(read_json(&checkpoint.join("training_state.json"))["micro_batches"], 4, "two micro-batches a step");
    let err = fail(multitask_cmd(&model, &heads, &work.join("resumed"), &args).arg("--resume-from").arg(&checkpoint), "resume");
    assert!(err.contains("--heads runs do not take --resume-from yet"), "{err}");
}
