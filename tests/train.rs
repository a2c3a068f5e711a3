//! `berth train` and `berth eval` end to end on the tiny a-seqcls fixture
//! (2 layers, hidden 32, 3 labels, the real bert-base-uncased vocabulary),
//! with small TSV files written here: a run killed with SIGKILL resumes to the
//! same bytes; bad input fails with a message that names the problem and
//! leaves the output folder alone; a `--config` file yields to flags; eval
//! writes metrics.json; new labels get a new head.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{fixture_dir, scratch_dir};

pub(crate) fn berth() -> Command {
    Command::new(env!("CARGO_BIN_EXE_berth"))
}

// ---------------------------------------------------------------- data

pub(crate) type Classes = [(&'static str, [&'static str; 6])];

pub(crate) const SENTIMENT: [(&str, [&str; 6]); 3] = [
    ("neg", ["awful", "boring", "dreadful", "bad", "terrible", "dull"]),
    ("neu", ["ordinary", "average", "plain", "typical", "standard", "usual"]),
    ("pos", ["great", "wonderful", "lovely", "good", "brilliant", "superb"]),
];

const SPAM: [(&str, [&str; 6]); 2] = [
    ("ham", ["meeting", "lunch", "report", "family", "homework", "garden"]),
    ("spam", ["prize", "lottery", "casino", "discount", "winner", "cash"]),
];

const NOUNS: [&str; 7] = ["film", "movie", "story", "plot", "cast", "ending", "script"];
const FILLER: [&str; 4] = ["really", "quite", "so", "honestly"];

/// A header, then `n` short sentences numbered from `start`; the label cycles
/// through the classes and each sentence carries one word of its class.
pub(crate) fn sentences(classes: &Classes, start: usize, n: usize) -> String {
    let mut out = String::from("text\tlabel\n");
    for i in start..start + n {
        let (label, words) = &classes[i % classes.len()];
        let mut parts = vec!["the", NOUNS[(i * 3 + 1) % NOUNS.len()], "was"];
        parts.extend((0..i % 4).map(|k| FILLER[(i + k) % FILLER.len()]));
        parts.push(words[(i * 5 + i / 7) % words.len()]);
        out.push_str(&format!("{}\t{label}\n", parts.join(" ")));
    }
    out
}

pub(crate) struct Data {
    pub(crate) train: PathBuf,
    pub(crate) dev: PathBuf,
}

/// train.tsv (60 sentences) and dev.tsv (15 others) in `dir`.
pub(crate) fn write_data(dir: &Path, classes: &Classes) -> Data {
    let data = Data { train: dir.join("train.tsv"), dev: dir.join("dev.tsv") };
    std::fs::write(&data.train, sentences(classes, 0, 60)).unwrap();
    std::fs::write(&data.dev, sentences(classes, 1000, 15)).unwrap();
    data
}

// ---------------------------------------------------------------- running berth

/// `berth train` on the CPU with short sequences; `extra` adds or sets the rest.
pub(crate) fn train_cmd(model: &Path, train: &Path, output: &Path, extra: &[&str]) -> Command {
    let mut c = berth();
    c.arg("train").arg("--model").arg(model).arg("--train").arg(train).arg("--output").arg(output);
    c.args(["--max-length", "32", "--device", "cpu"]).args(extra);
    c
}

pub(crate) fn succeed(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{what} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    out
}

/// Runs a command that must fail; returns its stderr, which must hold an `error:` line.
pub(crate) fn fail(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what} should have failed; stderr:\n{stderr}");
    assert_eq!(out.status.code(), Some(1), "{what}: expected exit code 1 (an error, not a crash); stderr:\n{stderr}");
    assert!(stderr.contains("error: "), "{what}: no error line; stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{what}: panicked:\n{stderr}");
    stderr
}

pub(crate) fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `step` of every line of `output`'s metrics.jsonl, in order.
pub(crate) fn logged_steps(output: &Path) -> Vec<u64> {
    std::fs::read_to_string(output.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["step"].as_u64().unwrap())
        .collect()
}

/// Step checkpoints (`checkpoint-<step>`) in `output`, oldest first.
pub(crate) fn checkpoints(output: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(output)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let step = e.file_name().to_str()?.strip_prefix("checkpoint-")?.parse().ok()?;
            e.path().is_dir().then_some((step, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// Every file under `dir` with its bytes, but the output lock file: a run
/// that fails still takes the lock, and writes its own PID there.
pub(crate) fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if entry.file_name() != ".berth-lock" {
                files.insert(path.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A checkpoint berth can resume from and serve: all four files, and the step it claims.
pub(crate) fn assert_complete_checkpoint(dir: &Path, step: u64) {
    for file in ["config.json", "model.safetensors", "training_state.json", "optimizer.safetensors", "tokenizer.json"] {
        assert!(dir.join(file).is_file(), "{} lacks {file}", dir.display());
    }
    assert_eq!(read_json(&dir.join("training_state.json"))["step"], step, "{}", dir.display());
}

/// `berth predict` on a model folder; one JSON line per input line.
pub(crate) fn predict(model: &Path, work: &Path) -> Vec<Value> {
    let input = work.join("predict-input.txt");
    std::fs::write(&input, "the film was great\nthe plot was dull\n").unwrap();
    let out =
        succeed(berth().args(["predict", "--model"]).arg(model).arg("--input").arg(&input), &format!("predict on {}", model.display()));
    let lines: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "predict on {}: one line per input", model.display());
    lines
}

// ---------------------------------------------------------------- a finished run to spoil

/// One short run with a checkpoint, made once and shared: the bad-input tests
/// each point a copy of it at broken data.
struct GoodRun {
    model: PathBuf,
    data: Data,
    output: PathBuf,
    stderr: String,
}

const GOOD_ARGS: [&str; 8] = ["--max-steps", "2", "--save-every", "2", "--seed", "7", "--batch-size", "4"];

fn good_run() -> Option<&'static GoodRun> {
    // Checked on every call, so that each test that cannot run records its
    // own skip (the OnceLock below would answer None silently).
    fixture_dir("a-seqcls")?;
    static RUN: OnceLock<Option<GoodRun>> = OnceLock::new();
    RUN.get_or_init(|| {
        let model = fixture_dir("a-seqcls")?;
        let work = scratch_dir("r3-good-run");
        let data = write_data(&work, &SENTIMENT);
        let output = work.join("out");
        let mut cmd = train_cmd(&model, &data.train, &output, &GOOD_ARGS);
        let out = succeed(cmd.arg("--eval").arg(&data.dev), "the shared good run");
        assert_complete_checkpoint(&output.join("checkpoint-2"), 2);
        Some(GoodRun { model, data, output, stderr: String::from_utf8_lossy(&out.stderr).into_owned() })
    })
    .as_ref()
}

/// Resumes a copy of the good run with `train`/`eval` files and extra flags;
/// the run must fail with a message holding every string in `expect`, and the
/// output folder (checkpoint included) must be left byte for byte as it was.
fn assert_fails_cleanly(name: &str, train: &Path, eval: &Path, extra: &[&str], expect: &[&str]) {
    let Some(good) = good_run() else { return };
    let work = scratch_dir(name);
    let output = work.join("out");
    copy_dir(&good.output, &output);
    let before = snapshot(&output);
    let mut cmd = train_cmd(&good.model, train, &output, &GOOD_ARGS);
    cmd.arg("--eval").arg(eval).arg("--resume-from").arg(output.join("checkpoint-2")).args(extra);
    let stderr = fail(&mut cmd, name);
    for part in expect {
        assert!(stderr.contains(part), "{name}: the message should contain `{part}`:\n{stderr}");
    }
    let after = snapshot(&output);
    assert!(
        before == after,
        "{name}: the failed run changed the output folder: {:?} before, {:?} after",
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
}

/// A copy of the good run's train.tsv with `edit` applied, in a fresh folder.
fn spoiled_train(name: &str, edit: impl FnOnce(Vec<u8>) -> Vec<u8>) -> Option<PathBuf> {
    let good = good_run()?;
    let dir = scratch_dir(&format!("{name}-data"));
    let path = dir.join("train.tsv");
    std::fs::write(&path, edit(std::fs::read(&good.data.train).unwrap())).unwrap();
    Some(path)
}

// ---------------------------------------------------------------- 1. resume

/// Starts `cmd` (a training run into `output`), waits until a checkpoint at
/// step `step` or later is on disk, and kills the run with SIGKILL; asserts
/// that it was still running then. Its stderr goes to `log`.
#[cfg(unix)]
pub(crate) fn kill_after_checkpoint(cmd: &mut Command, output: &Path, step: u64, log: &Path) {
    use std::os::unix::process::ExitStatusExt;

    let mut child = cmd.stdout(Stdio::null()).stderr(std::fs::File::create(log).unwrap()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !checkpoints(output).last().is_some_and(|(s, _)| *s >= step) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("run B ended ({status}) before checkpoint-{step} appeared:\n{}", std::fs::read_to_string(log).unwrap());
        }
        assert!(Instant::now() < deadline, "no checkpoint-{step} after 300 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "run B was not killed mid-run: it ended with {status}; make the run longer");
}

#[cfg(unix)]
#[test]
fn r3_resume_after_sigkill_is_bit_identical() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let work = scratch_dir("r3-resume");
    let data = write_data(&work, &SENTIMENT);
    // 60 examples in batches of 4: 15 steps an epoch, so the run crosses three epoch
    // boundaries; at this rate the best evaluation (step 50) comes after the kill.
    let args = [
        "--max-steps",
        "60",
        "--save-every",
        "5",
        "--eval-every",
        "10",
        "--logging-steps",
        "5",
        "--seed",
        "11",
        "--batch-size",
        "4",
        "--lr",
        "1e-3",
    ];
    let run = |output: &Path| {
        let mut c = train_cmd(&model, &data.train, output, &args);
        c.arg("--eval").arg(&data.dev);
        c
    };
    let a = work.join("a");
    let b = work.join("b");
    succeed(&mut run(&a), "run A");

    // Run B: killed with SIGKILL as soon as a checkpoint at step 20 or later
    // is on disk, in the second epoch, whose order the resumed run must draw
    // as the uninterrupted run did.
    kill_after_checkpoint(&mut run(&b), &b, 20, &work.join("b-killed.stderr"));
    assert!(
        !b.join("training_state.json").exists() && !b.join("model.safetensors").exists(),
        "run B wrote its final model before the kill"
    );

    // Resume B from the newest complete checkpoint.
    let (step, checkpoint) = checkpoints(&b).pop().unwrap();
    assert!((20..60).contains(&step), "newest checkpoint is at step {step}");
    assert_complete_checkpoint(&checkpoint, step);
    let out = succeed(run(&b).arg("--resume-from").arg(&checkpoint), "resumed run B");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("resuming from") && stderr.contains(&format!("at step {step}")), "no resume line for step {step}:\n{stderr}");

    // The same bytes as the uninterrupted run: the final (best) model, and the last
    // checkpoint's weights and optimizer moments; the same files, tokenizer included.
    for file in ["model.safetensors", "best/model.safetensors", "checkpoint-60/model.safetensors", "checkpoint-60/optimizer.safetensors"] {
        let want = std::fs::read(a.join(file)).unwrap();
        let got = std::fs::read(b.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(got == want, "{file}: killed at step {step} and resumed, the bytes differ from the uninterrupted run");
    }
    for dir in ["", "best", "checkpoint-55", "checkpoint-60"] {
        let names = |root: &Path| -> Vec<String> {
            let mut n: Vec<String> =
                std::fs::read_dir(root.join(dir)).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            n.sort();
            n
        };
        assert_eq!(names(&b), names(&a), "{dir:?}: the resumed run's folder holds other files than the uninterrupted run's");
    }
    for file in ["tokenizer.json", "vocab.txt", "best/tokenizer.json", "checkpoint-60/tokenizer.json"] {
        assert!(std::fs::read(b.join(file)).unwrap() == std::fs::read(a.join(file)).unwrap(), "{file} differs");
    }
    predict(&b, &work);
    let (state_a, state_b) = (read_json(&a.join("training_state.json")), read_json(&b.join("training_state.json")));
    for key in ["step", "epoch", "micro_batches", "adam_step", "real_tokens", "best_step", "best_metric"] {
        assert_eq!(state_a[key], state_b[key], "training_state.json `{key}` differs after resume from step {step}");
    }

    // metrics.jsonl: each logging and evaluation step once, with the uninterrupted run's values.
    let entries = |dir: &Path, key: &str, fields: &[&str]| -> Vec<Vec<Value>> {
        let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{}: bad line {l:?}: {e}", dir.display())))
            .filter(|v| v.get(key).is_some())
            .map(|v| fields.iter().map(|f| v[*f].clone()).collect())
            .collect()
    };
    for (key, fields) in
        [("loss", &["step", "loss", "learning_rate", "grad_norm"][..]), ("eval_loss", &["step", "eval_loss", "eval_accuracy"][..])]
    {
        let logged_b = entries(&b, key, fields);
        let steps: Vec<u64> = logged_b.iter().map(|e| e[0].as_u64().unwrap()).collect();
        let mut unique = steps.clone();
        unique.dedup();
        assert_eq!(steps, unique, "metrics.jsonl `{key}` entries repeat or go back after resume from step {step}");
        assert_eq!(logged_b, entries(&a, key, fields), "metrics.jsonl `{key}` entries differ from the uninterrupted run");
    }
    let steps: Vec<u64> = entries(&a, "loss", &["step"]).iter().map(|e| e[0].as_u64().unwrap()).collect();
    assert_eq!(steps, (1..=12).map(|k| 5 * k).collect::<Vec<u64>>(), "run A's logging steps");
    assert_eq!(state_a["best_step"], 50, "the best evaluation should come after the kill; retune the run");
}

// ---------------------------------------------------------------- 2. bad input

#[test]
fn r3_wrong_label_column_is_named() {
    let Some(good) = good_run() else { return };
    assert_fails_cleanly(
        "r3-bad-label-column",
        &good.data.train,
        &good.data.dev,
        &["--label-column", "sentiment"],
        &["train.tsv:1", "field `label`", "no column `sentiment`", "`text`, `label`"],
    );
}

#[test]
fn r3_row_without_a_label_is_named() {
    let Some(good) = good_run() else { return };
    // Line 5 loses its TAB and label.
    let Some(train) = spoiled_train("r3-short-row", |bytes| {
        let text = String::from_utf8(bytes).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines[4] = lines[4].split('\t').next().unwrap().to_owned();
        (lines.join("\n") + "\n").into_bytes()
    }) else {
        return;
    };
    assert_fails_cleanly("r3-short-row", &train, &good.data.dev, &[], &["train.tsv:5", "field `label`", "1 field"]);
    // An empty label on line 3.
    let Some(train) = spoiled_train("r3-empty-label", |bytes| {
        let text = String::from_utf8(bytes).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines[2] = format!("{}\t  ", lines[2].split('\t').next().unwrap());
        (lines.join("\n") + "\n").into_bytes()
    }) else {
        return;
    };
    assert_fails_cleanly("r3-empty-label", &train, &good.data.dev, &[], &["train.tsv:3", "field `label`", "empty"]);
}

#[test]
fn r3_unknown_eval_label_names_the_eval_file_and_line() {
    let Some(good) = good_run() else { return };
    let dir = scratch_dir("r3-unknown-eval-label-data");
    let dev = dir.join("dev.tsv");
    let mut text = sentences(&SENTIMENT, 1000, 15);
    text.push_str("\n");
    text.push_str("the film was fine\tmaybe\n"); // line 18: a blank line 17 sits before it
    std::fs::write(&dev, text).unwrap();
    assert_fails_cleanly(
        "r3-unknown-eval-label",
        &good.data.train,
        &dev,
        &[],
        &["dev.tsv:18", "unknown label `maybe`", "`neg`, `neu`, `pos`"],
    );
}

#[test]
fn r3_empty_train_file_is_refused() {
    let Some(good) = good_run() else { return };
    let Some(train) = spoiled_train("r3-empty-train", |_| Vec::new()) else { return };
    assert_fails_cleanly("r3-empty-train", &train, &good.data.dev, &[], &["train.tsv", "no examples"]);
    let Some(train) = spoiled_train("r3-header-only-train", |_| b"text\tlabel\n\n".to_vec()) else { return };
    assert_fails_cleanly("r3-header-only-train", &train, &good.data.dev, &[], &["train.tsv", "no data rows"]);
}

#[test]
fn r3_train_line_that_is_not_utf8_is_named() {
    let Some(good) = good_run() else { return };
    // Line 7's text gets a byte that is not UTF-8.
    let Some(train) = spoiled_train("r3-bad-utf8", |bytes| {
        let mut lines: Vec<Vec<u8>> = bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        lines[6].splice(3..3, [b' ', 0xff, b' ']);
        lines.join(&b'\n')
    }) else {
        return;
    };
    assert_fails_cleanly("r3-bad-utf8", &train, &good.data.dev, &[], &["train.tsv:7", "field `text`", "not valid UTF-8"]);
}

#[test]
fn r3_non_finite_loss_names_the_step_and_keeps_checkpoints() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let work = scratch_dir("r3-non-finite");
    let data = write_data(&work, &SENTIMENT);
    // Warmup makes step 1's learning rate 0, so checkpoint-1 holds sane weights;
    // from step 2 the rate is 1e30 whatever the number of steps (constant schedule).
    let run = |output: &Path, steps: u64| {
        let steps = steps.to_string();
        train_cmd(
            &model,
            &data.train,
            output,
            &[
                "--lr",
                "1e30",
                "--warmup-steps",
                "2",
                "--schedule",
                "constant",
                "--save-every",
                "1",
                "--max-steps",
                &steps,
                "--seed",
                "7",
                "--batch-size",
                "4",
            ],
        )
    };
    let output = work.join("out");
    let err = fail(&mut run(&output, 30), "training with --lr 1e30");
    assert!(err.contains("numerical failure"), "{err}");
    let at = err.split("at step ").nth(1).unwrap_or_else(|| panic!("the message names no step:\n{err}"));
    let failed: u64 = at[..at.find(|c: char| !c.is_ascii_digit()).unwrap_or(at.len())].parse().unwrap_or_else(|_| panic!("{err}"));
    assert!((3..=30).contains(&failed), "the failing step {failed} should be after the first step with a 1e30 learning rate:\n{err}");

    // Nothing final was written; every checkpoint left is complete; the last is the step before the failure.
    assert!(
        !output.join("model.safetensors").exists() && !output.join("training_state.json").exists(),
        "a final model was written after the failure"
    );
    let found = checkpoints(&output);
    assert_eq!(found.last().map(|(s, _)| *s), Some(failed - 1), "{err}");
    assert!(err.contains(&format!("checkpoint-{}", failed - 1)), "the message should point at the last checkpoint:\n{err}");
    for (step, dir) in &found {
        assert_complete_checkpoint(dir, *step);
        let lines = predict(dir, &work);
        if *step == 1 {
            // Trained at learning rate 0: the fixture's weights, so real logits.
            assert!(lines.iter().all(|l| l["logits"].as_array().unwrap().iter().all(Value::is_f64)), "{lines:?}");
        }
    }
    let leftovers: Vec<String> = std::fs::read_dir(&output)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") || n.ends_with(".old"))
        .collect();
    assert!(leftovers.is_empty(), "half-written folders left: {leftovers:?}");

    // The last checkpoint is byte for byte what a run that stopped right there saved.
    let reference = work.join("reference");
    succeed(&mut run(&reference, failed - 1), "the reference run");
    let name = format!("checkpoint-{}", failed - 1);
    for file in ["model.safetensors", "optimizer.safetensors"] {
        let want = std::fs::read(reference.join(&name).join(file)).unwrap();
        let got = std::fs::read(output.join(&name).join(file)).unwrap();
        assert!(got == want, "{name}/{file} differs from the same step of a run that did not fail");
    }
}

// ---------------------------------------------------------------- 3. --config

#[test]
fn r3_flags_override_config_file() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let work = scratch_dir("r3-config");
    let data = write_data(&work, &SENTIMENT);
    let config = work.join("run.toml");
    std::fs::write(&config, "batch-size = 5\nmax-steps = 4\nseed = 11\nlogging-steps = 1\n").unwrap();
    let output = work.join("out");
    let mut cmd = train_cmd(&model, &data.train, &output, &["--max-steps", "2"]);
    succeed(cmd.arg("--config").arg(&config), "training with --config");
    let state = read_json(&output.join("training_state.json"));
    let used = &state["config"];
    assert_eq!(used["max_steps"], 2, "the --max-steps flag should win over the file");
    assert_eq!(state["step"], 2);
    assert_eq!(used["batch_size"], 5, "batch-size from the file");
    assert_eq!(used["seed"], 11, "seed from the file");
    assert_eq!(used["max_length"], 32, "max-length from the flag");
    assert_eq!(used["lr"], 2e-5, "lr: the default, set by neither");
    // 60 examples in 12 batches of 5: two steps saw 10 examples (logging every step, from the file).
    let logged = logged_steps(&output);
    assert_eq!(logged, [1, 2]);
    // A second run into the same folder (--overwrite) starts a new log rather than appending to the old one.
    let mut again = train_cmd(&model, &data.train, &output, &["--max-steps", "2", "--overwrite"]);
    succeed(again.arg("--config").arg(&config), "training again into the same folder");
    let relogged = logged_steps(&output);
    assert_eq!(relogged, [1, 2], "the second run's log");

    // A misspelt key is an error that names the file and the key.
    std::fs::write(&config, "batch_size = 5\n").unwrap();
    let err = fail(train_cmd(&model, &data.train, &work.join("out2"), &[]).arg("--config").arg(&config), "a misspelt config key");
    assert!(err.contains("run.toml") && err.contains("batch_size"), "{err}");
}

// ---------------------------------------------------------------- 4. eval

#[test]
fn r3_eval_command_writes_metrics_json() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let work = scratch_dir("r3-eval");
    let data = write_data(&work, &SENTIMENT);
    let output = work.join("out");
    let mut cmd = train_cmd(&model, &data.train, &output, &["--max-steps", "3", "--batch-size", "4", "--seed", "7"]);
    succeed(cmd.arg("--eval").arg(&data.dev), "training");

    let metrics = work.join("m.json");
    let out = succeed(
        berth().args(["eval", "--max-length", "32", "--model"]).arg(&output).arg("--data").arg(&data.dev).arg("--output").arg(&metrics),
        "berth eval",
    );
    let report = String::from_utf8(out.stdout).unwrap();
    for word in ["precision", "recall", "f1-score", "support", "neg", "neu", "pos", "accuracy", "macro avg", "weighted avg"] {
        assert!(report.contains(word), "the printed report lacks `{word}`:\n{report}");
    }
    let m = read_json(&metrics);
    for key in ["neg", "neu", "pos", "accuracy", "macro avg", "weighted avg", "confusion_matrix", "labels"] {
        assert!(m.get(key).is_some(), "m.json lacks `{key}`: {m}");
    }
    assert_eq!(m["labels"], serde_json::json!(["neg", "neu", "pos"]));
    for label in ["neg", "neu", "pos"] {
        assert_eq!(m[label]["support"], 5, "{label}: dev.tsv has 5 of each");
    }
    let matrix: Vec<Vec<u64>> = serde_json::from_value(m["confusion_matrix"].clone()).unwrap();
    assert_eq!(matrix.iter().flatten().sum::<u64>(), 15);
    let diagonal: u64 = (0..3).map(|i| matrix[i][i]).sum();
    assert_eq!(m["accuracy"].as_f64().unwrap(), diagonal as f64 / 15.0);
    // The same model on the same data as training's final evaluation.
    let from_training = read_json(&output.join("metrics.json"));
    assert_eq!(m["confusion_matrix"], from_training["confusion_matrix"], "eval and training's final evaluation disagree");
    let (l1, l2) = (m["eval_loss"].as_f64().unwrap(), from_training["eval_loss"].as_f64().unwrap());
    assert!((l1 - l2).abs() <= 1e-5 * l2.abs(), "eval loss {l1} vs training's {l2}");
}

// ---------------------------------------------------------------- 5. new labels

#[test]
fn r3_new_labels_reinitialise_head() {
    let Some(good) = good_run() else { return };
    // The fixture's head has 3 labels: 3 new names keep its shape, and it is kept.
    assert!(!good.stderr.contains("re-initialised"), "a 3-label head was re-initialised for 3 labels:\n{}", good.stderr);

    let work = scratch_dir("r3-new-labels");
    let data = write_data(&work, &SPAM);
    let output = work.join("out");
    let mut cmd = train_cmd(&good.model, &data.train, &output, &["--max-steps", "3", "--batch-size", "4", "--seed", "7"]);
    let out = succeed(cmd.arg("--eval").arg(&data.dev), "training on spam/ham");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("classifier.weight") && stderr.contains("re-initialised"),
        "no word of re-initialising the classifier:\n{stderr}"
    );

    let config = read_json(&output.join("config.json"));
    assert_eq!(config["id2label"], serde_json::json!({"0": "ham", "1": "spam"}));
    assert_eq!(config["label2id"], serde_json::json!({"ham": 0, "spam": 1}));
    for line in predict(&output, &work) {
        assert!(["ham", "spam"].contains(&line["label"].as_str().unwrap()), "{line}");
        assert_eq!(line["probabilities"].as_array().unwrap().len(), 2, "{line}");
    }
}
