//! Issue 16: multi-task training runs through the one training loop, and so
//! takes --device, --grad-accum, --save-every and --resume-from like a
//! single-task run, and resumes after SIGKILL bit for bit.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{fixture_dir, scratch_dir};
use crate::tasks::conll_sentences;
use crate::train::{assert_complete_checkpoint, berth, checkpoints, fail, kill_after_checkpoint, read_json, succeed};

/// A heads file with a sentiment head (32 rows) and an NER head (24
/// sentences), both evaluated on their training data.
pub(crate) fn write_heads(dir: &Path) -> PathBuf {
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

pub(crate) fn multitask_cmd(model: &Path, heads: &Path, output: &Path, extra: &[&str]) -> std::process::Command {
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
    // Each head of the saved model is explained as a model of its own task.
    let (lines, words) = (work.join("lines.txt"), work.join("words.txt"));
    std::fs::write(&lines, "great lovely film\nawful dull film\n").unwrap();
    std::fs::write(&words, "John Smith lives in Paris\n").unwrap();
    let predict = |input: &Path, extra: &[&str]| {
        let mut cmd = berth();
        cmd.arg("predict").arg("--model").arg(&cpu).arg("--input").arg(input).args(["--device", "cpu", "--explain", "ig"]).args(extra);
        cmd
    };
    let out = succeed(&mut predict(&lines, &["--head", "sentiment", "--steps", "64"]), "explain the sentiment head");
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let e = &serde_json::from_str::<Value>(line).unwrap()["explanation"];
        assert!(e["target"] == "pos" || e["target"] == "neg", "{e}");
        assert!(e["completeness_gap"].as_f64().unwrap() < 0.01, "{e}");
    }
    let out = succeed(&mut predict(&words, &["--words"]), "explain the ner head's entities");
    let line: Value = serde_json::from_str(String::from_utf8(out.stdout).unwrap().lines().next().unwrap()).unwrap();
    let ner = &line["ner"];
    assert_eq!(ner["explanations"].as_array().map(Vec::len), ner["entities"].as_array().map(Vec::len), "{line}");
    let err = fail(&mut predict(&lines, &["--target", "pos"]), "--target without --head");
    assert!(err.contains("--target") && err.contains("--head"), "{err}");
}

/// A multi-task run killed with SIGKILL after a checkpoint and resumed from
/// it ends with the same bytes as the uninterrupted run: the final model, the
/// last checkpoint's weights and moments, and the per-head metrics.
#[cfg(unix)]
#[test]
fn r16_multitask_resumes_bit_identically_after_sigkill() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let work = scratch_dir("r16-multitask-resume");
    let heads = write_heads(&work);
    // 7 micro-batches an epoch, 2 per step: 4 steps an epoch, so the run
    // crosses epoch boundaries (and an odd last group) on both sides of the kill.
    let args = ["--max-steps", "40", "--save-every", "4", "--eval-every", "8", "--grad-accum", "2", "--device", "cpu"];
    let (a, b) = (work.join("a"), work.join("b"));
    succeed(&mut multitask_cmd(&model, &heads, &a, &args), "run A");
    let checkpoint = a.join("checkpoint-40");
    assert_complete_checkpoint(&checkpoint, 40);
    assert!(checkpoint.join("heads.json").is_file(), "a multi-task checkpoint keeps its heads");
    assert_eq!(read_json(&a.join("checkpoint-36/training_state.json"))["micro_batches"], 63, "36 steps: 9 epochs, 7 micro-batches each");

    kill_after_checkpoint(&mut multitask_cmd(&model, &heads, &b, &args), &b, 8, &work.join("b-killed.stderr"));
    let (step, newest) = checkpoints(&b).pop().unwrap();
    assert!((8..40).contains(&step), "newest checkpoint is at step {step}");
    assert_complete_checkpoint(&newest, step);
    let out = succeed(multitask_cmd(&model, &heads, &b, &args).arg("--resume-from").arg(&newest), "resumed run B");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("at step {step}")), "no resume line for step {step}:\n{stderr}");

    for file in ["model.safetensors", "checkpoint-40/model.safetensors", "checkpoint-40/optimizer.safetensors", "metrics.json"] {
        let want = std::fs::read(a.join(file)).unwrap();
        let got = std::fs::read(b.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(got == want, "{file}: killed at step {step} and resumed, the bytes differ from the uninterrupted run");
    }
    let state = |dir: &Path| {
        let mut s = read_json(&dir.join("training_state.json"));
        s.as_object_mut().unwrap().remove("config");
        s
    };
    assert_eq!(state(&b), state(&a), "the final training state (counters, tokens seen) differs");
    // The log holds each step once: the steps after the checkpoint were cut and rewritten.
    let steps: Vec<u64> = log_of(&b).iter().filter(|e| e["learning_rate"].is_number()).map(|e| e["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (1..=40).collect::<Vec<u64>>());

    // A checkpoint of another heads file is refused, naming what differs.
    let other = work.join("other-heads.toml");
    std::fs::write(&other, std::fs::read_to_string(&heads).unwrap().replace("loss-weight = 0.5", "loss-weight = 0.25")).unwrap();
    let err =
        fail(multitask_cmd(&model, &other, &work.join("c"), &args).arg("--resume-from").arg(&checkpoint), "resume with another heads file");
    assert!(err.contains("--heads"), "{err}");
}

/// Each head's logged losses, in step order.
fn losses_of(output: &Path, head: &str) -> Vec<f64> {
    log_of(output).iter().filter_map(|e| e[format!("loss_{head}")].as_f64()).collect()
}

/// Multi-task training on a RoBERTa, a DistilBERT, a ModernBERT and a DeBERTa encoder:
/// the folder keeps the family (config, tensor names), each sequence head
/// owns the dense layer its family's head starts with (and ModernBERT's
/// token head its dense + norm too), both losses fall, and every head
/// predicts from the saved folder.
#[test]
fn r18_multitask_trains_on_other_encoder_families() {
    let families = [
        ("roberta-seqcls", "roberta", "roberta."),
        ("distilbert-seqcls", "distilbert", "distilbert."),
        ("modernbert-seqcls", "modernbert", "model."),
        ("deberta-v3-seqcls", "deberta-v2", "deberta."),
    ];
    for (fixture, model_type, prefix) in families {
        let Some(model) = fixture_dir(&format!("families/{fixture}")) else { return };
        let work = scratch_dir(&format!("r18-multitask-{fixture}"));
        let heads = write_heads(&work);
        let output = work.join("out");
        succeed(&mut multitask_cmd(&model, &heads, &output, &["--max-steps", "150", "--device", "cpu"]), fixture);

        let config = read_json(&output.join("config.json"));
        assert_eq!(config["model_type"], model_type, "{fixture}");
        let names: Vec<String> = berth::model::checkpoint::read_safetensors(&output.join("model.safetensors"), berth::tensor::DType::F32)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let shared: Vec<&String> = names.iter().filter(|n| !n.starts_with("heads.")).collect();
        assert!(!shared.is_empty() && shared.iter().all(|n| n.starts_with(prefix)), "{fixture}: encoder names {shared:?}");
        // The sequence head's first dense layer is its own; the token head
        // has none, except ModernBERT's, whose head runs at every position.
        assert!(names.contains(&"heads.sentiment.bert.pooler.dense.weight".to_string()), "{fixture}: {names:?}");
        let token_head_dense = names.iter().any(|n| n.starts_with("heads.ner.bert.pooler"));
        assert_eq!(token_head_dense, model_type == "modernbert", "{fixture}: {names:?}");

        // transformers' AutoModel reads the encoder (RobertaModel's own pooler
        // is not part of a sequence-classification model, so it is missing).
        if let Some(python) = crate::common::python_with(&["torch", "transformers"]) {
            let check = "import sys\nfrom transformers import AutoModel\n\
                m, info = AutoModel.from_pretrained(sys.argv[1], output_loading_info=True)\n\
                assert all(k.startswith('pooler.') for k in info['missing_keys']), info\n\
                assert all(k.startswith('heads.') for k in info['unexpected_keys']), info\n";
            let out = std::process::Command::new(python).args(["-c", check]).arg(&output).output().unwrap();
            assert!(out.status.success(), "{fixture}: AutoModel:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        for head in ["sentiment", "ner"] {
            let losses = losses_of(&output, head);
            // The mean of the last five against the first (before any update).
            let last: f64 = losses[losses.len() - 5..].iter().sum::<f64>() / 5.0;
            assert!(losses.len() >= 40 && last < 0.5 * losses[0], "{fixture} {head}: losses {losses:?}");
        }
        let input = work.join("input.txt");
        std::fs::write(&input, "great lovely film\nawful dull film\n").unwrap();
        for head in ["sentiment", "ner"] {
            let out = succeed(berth().args(["predict", "--head", head, "--model"]).arg(&output).arg("--input").arg(&input), head);
            let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            assert_eq!(lines.len(), 2, "{fixture} {head}");
        }
    }
}
