//! Issue 15, training: a resumed run must be the same run (and never spin),
//! one output folder holds one run (an OS lock, fresh runs need an empty
//! folder, `--overwrite` removes only berth's files), failed saves keep the
//! folder consistent, and option values are checked before any work.
//! All on the tiny a-seqcls fixture with the data of tests/train.rs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{fixture_dir, scratch_dir};
use crate::train::{SENTIMENT, berth, checkpoints, fail, logged_steps, read_json, snapshot, succeed, train_cmd, write_data};

/// Runs `cmd` to the end, or kills it and fails the test after `limit`: a
/// run that spins must not hang the suite.
fn output_within(cmd: &mut Command, limit: Duration, what: &str) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("{what} still ran after {limit:?} (a hang); stderr:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The stderr of a run that must fail with exit code 1 within two minutes.
fn fails_within(cmd: &mut Command, what: &str) -> String {
    let out = output_within(cmd, Duration::from_secs(120), what);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{what}: expected exit code 1; stderr:\n{stderr}");
    assert!(stderr.contains("error: ") && !stderr.contains("panicked"), "{what}: no clean error:\n{stderr}");
    stderr
}

fn model() -> Option<PathBuf> {
    fixture_dir("a-seqcls")
}

/// The PID written in an output folder's lock file, once a run holds it.
fn wait_for_lock_holder(output: &Path, child: &mut Child) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(text) = std::fs::read_to_string(output.join(".berth-lock"))
            && text.trim() == child.id().to_string()
        {
            return child.id();
        }
        assert!(child.try_wait().unwrap().is_none(), "the first run ended before it held the lock");
        assert!(Instant::now() < deadline, "the first run never took the lock");
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------- resume: the same run

/// 60 examples in batches of 8: 8 batches an epoch; a checkpoint every 4 steps.
const RUN: [&str; 8] = ["--max-steps", "12", "--save-every", "4", "--batch-size", "8", "--seed", "7"];

#[test]
fn r15_resume_with_another_batch_size_is_refused_not_a_hang() {
    let Some(model) = model() else { return };
    let work = scratch_dir("r15-resume-batch");
    let data = write_data(&work, &SENTIMENT);
    let output = work.join("out");
    succeed(&mut train_cmd(&model, &data.train, &output, &RUN), "the first run");
    let checkpoint = output.join("checkpoint-8");
    let before = snapshot(&output);
    // The case: with batch 200 the epoch has one batch, and the saved
    // position (batch 0 of epoch 1 here, or past the end) passed the total-steps check.
    let mut cmd =
        train_cmd(&model, &data.train, &output, &["--max-steps", "12", "--save-every", "4", "--batch-size", "200", "--seed", "7"]);
    let err = fails_within(cmd.arg("--resume-from").arg(&checkpoint), "resume with --batch-size 200");
    assert!(err.contains("not the same run"), "{err}");
    assert!(err.contains("--batch-size: 8 in the checkpoint's run, 200 now"), "{err}");
    assert!(snapshot(&output) == before, "the refused resume changed the output folder");

    // Another seed and another max length are named together.
    let mut cmd = berth();
    cmd.arg("train").arg("--model").arg(&model).arg("--train").arg(&data.train).arg("--output").arg(&output);
    cmd.args(["--device", "cpu", "--max-steps", "12", "--batch-size", "8", "--seed", "8", "--max-length", "24"]);
    let err = fails_within(cmd.arg("--resume-from").arg(&checkpoint), "resume with another seed");
    assert!(err.contains("--seed: 7 in the checkpoint's run, 8 now"), "{err}");
    assert!(err.contains("--max-length: 32 in the checkpoint's run, 24 now"), "{err}");
}

#[test]
fn r15_resume_with_a_changed_train_file_is_refused() {
    let Some(model) = model() else { return };
    let work = scratch_dir("r15-resume-data");
    let data = write_data(&work, &SENTIMENT);
    let output = work.join("out");
    succeed(&mut train_cmd(&model, &data.train, &output, &RUN), "the first run");
    // Same labels and size class, one line fewer: the batches would differ.
    let text = std::fs::read_to_string(&data.train).unwrap();
    let shorter: Vec<&str> = text.lines().take(50).collect();
    std::fs::write(&data.train, shorter.join("\n") + "\n").unwrap();
    let mut cmd = train_cmd(&model, &data.train, &output, &RUN);
    let err = fails_within(cmd.arg("--resume-from").arg(output.join("checkpoint-8")), "resume on a changed file");
    assert!(err.contains("--train (the file's contents)") && err.contains("bytes, hash"), "{err}");
}

#[test]
fn r15_a_checkpoint_position_past_the_epoch_stops_instead_of_spinning() {
    let Some(model) = model() else { return };
    let work = scratch_dir("r15-resume-position");
    let data = write_data(&work, &SENTIMENT);
    let output = work.join("out");
    succeed(&mut train_cmd(&model, &data.train, &output, &RUN), "the first run");
    // A state from before the run identity was recorded, standing past the
    // end of its epoch: only the loop's own guard can catch it.
    let checkpoint = output.join("checkpoint-8");
    let state_path = checkpoint.join("training_state.json");
    let mut state = read_json(&state_path);
    state.as_object_mut().unwrap().remove("identity");
    state["batch_in_epoch"] = 99.into();
    std::fs::write(&state_path, serde_json::to_string_pretty(&state).unwrap()).unwrap();
    let mut cmd = train_cmd(&model, &data.train, &output, &RUN);
    let err = fails_within(cmd.arg("--resume-from").arg(&checkpoint), "resume from a position past the epoch");
    assert!(err.contains("not the same run") && err.contains("8 batches here") && err.contains("batch 99"), "{err}");
}

#[test]
fn r15_missing_resume_folder_is_named_as_missing() {
    let Some(model) = model() else { return };
    let work = scratch_dir("r15-resume-missing");
    let data = write_data(&work, &SENTIMENT);
    let missing = work.join("out/checkpoint-400");
    let err = fail(train_cmd(&model, &data.train, &work.join("out"), &RUN).arg("--resume-from").arg(&missing), "resume from nothing");
    assert!(err.contains("checkpoint-400: no such folder"), "{err}");
    assert!(!work.join("out").exists(), "a refused run created its output folder");
}

// ---------------------------------------------------------------- one folder, one run

#[test]
fn r15_two_runs_into_one_folder_only_one_runs() {
    let Some(model) = model() else { return };
    let work = scratch_dir("r15-two-runs");
    let data = write_data(&work, &SENTIMENT);
    let output = work.join("out");
    let long = ["--max-steps", "40", "--save-every", "10", "--batch-size", "4", "--logging-steps", "1", "--seed"];
    let mut first = train_cmd(&model, &data.train, &output, &long).arg("1").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = wait_for_lock_holder(&output, &mut first);

    let out = output_within(train_cmd(&model, &data.train, &output, &long).arg("2"), Duration::from_secs(60), "the second run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the second run should stop at once:\n{err}");
    assert!(err.contains("is in use by another berth run") && err.contains(&format!("PID {pid}")), "{err}");
    assert!(err.contains(&output.display().to_string()), "the message should name the folder:\n{err}");
    assert!(first.try_wait().unwrap().is_none(), "the second run only stopped after the first had finished");

    let finished = first.wait_with_output().unwrap();
    assert!(finished.status.success(), "the first run failed:\n{}", String::from_utf8_lossy(&finished.stderr));
    // Everything in the folder is the first run's: seed 1, all 40 steps logged once.
    assert_eq!(read_json(&output.join("training_state.json"))["config"]["seed"], 1);
    for (step, dir) in checkpoints(&output) {
        assert_eq!(read_json(&dir.join("training_state.json"))["config"]["seed"], 1, "checkpoint-{step}");
    }
    assert_eq!(checkpoints(&output).iter().map(|(s, _)| *s).collect::<Vec<_>>(), [30, 40]);
    assert_eq!(logged_steps(&output), (1..=40).collect::<Vec<u64>>());
}

#[cfg(unix)]
#[test]
fn r15_a_lock_held_by_a_killed_run_is_released() {
    let Some(model) = model() else { return };
    let work = scratch_dir("r15-lock-sigkill");
    let data = write_data(&work, &SENTIMENT);
    let output = work.join("out");
    let long = ["--max-steps", "400", "--batch-size", "4", "--seed", "1"];
    let mut first = train_cmd(&model, &data.train, &output, &long).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for_lock_holder(&output, &mut first);
    first.kill().unwrap();
    first.wait().unwrap();
    // The lock file is still there (with the dead run's PID), but no process holds its lock.
    assert!(output.join(".berth-lock").is_file());
    let out = succeed(&mut train_cmd(&model, &data.train, &output, &["--max-steps", "2", "--overwrite"]), "the run after the kill");
    assert!(output.join("model.safetensors").is_file(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(read_json(&output.join("training_state.json"))["step"], 2);
}

#[test]
fn r15_a_fresh_run_into_a_used_folder_needs_overwrite() {
    let Some(model) = model() else { return };
    let work = scratch_dir("r15-fresh-run");
    let data = write_data(&work, &SENTIMENT);
    let output = work.join("out");
    succeed(
        train_cmd(&model, &data.train, &output, &["--max-steps", "4", "--save-every", "2", "--seed", "1"]).arg("--eval").arg(&data.dev),
        "the first run",
    );
    let before = snapshot(&output);

    let err = fail(&mut train_cmd(&model, &data.train, &output, &["--max-steps", "2", "--seed", "2"]), "a second fresh run");
    assert!(err.contains("already holds files") && err.contains("--overwrite") && err.contains("--resume-from"), "{err}");
    assert!(snapshot(&output) == before, "the refused run changed the folder");

    // Something berth did not write: --overwrite refuses, and touches nothing.
    std::fs::write(output.join("notes.txt"), "mine").unwrap();
    let err = fail(
        &mut train_cmd(&model, &data.train, &output, &["--max-steps", "2", "--seed", "2", "--overwrite"]),
        "--overwrite over a foreign file",
    );
    assert!(err.contains("did not write") && err.contains("notes.txt"), "{err}");
    std::fs::remove_file(output.join("notes.txt")).unwrap();
    assert!(snapshot(&output) == before, "the refused --overwrite changed the folder");

    // --overwrite: nothing of the first run is left (no checkpoints, best/, report, old metrics).
    succeed(&mut train_cmd(&model, &data.train, &output, &["--max-steps", "2", "--seed", "2", "--overwrite"]), "--overwrite");
    let mut names: Vec<String> =
        std::fs::read_dir(&output).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    for gone in ["checkpoint-2", "checkpoint-4", "best", "report.md", "plots", "metrics.json"] {
        assert!(!names.contains(&gone.to_string()), "{gone} of the first run survived --overwrite: {names:?}");
    }
    assert_eq!(read_json(&output.join("training_state.json"))["config"]["seed"], 2);
    assert_eq!(logged_steps(&output), [2]);
}

#[test]
fn r15_output_that_is_or_holds_the_model_is_refused() {
    let Some(model) = model() else { return };
    let work = scratch_dir("r15-output-model");
    let data = write_data(&work, &SENTIMENT);
    let output = work.join("out");
    succeed(train_cmd(&model, &data.train, &output, &["--max-steps", "2", "--seed", "1"]).arg("--eval").arg(&data.dev), "the first run");
    let before = snapshot(&output);
    for (from, what) in [(output.join("best"), "a model inside --output"), (output.clone(), "--model equal to --output")] {
        let err = fail(&mut train_cmd(&from, &data.train, &output, &["--max-steps", "2", "--overwrite"]), what);
        assert!(err.contains("is, or holds, the --model folder"), "{what}: {err}");
        assert!(snapshot(&output) == before, "{what}: the refused run changed the folder");
    }
}

#[test]
fn r15_output_that_is_a_file_is_named() {
    let Some(model) = model() else { return };
    let work = scratch_dir("r15-output-file");
    let data = write_data(&work, &SENTIMENT);
    let output = work.join("out.txt");
    std::fs::write(&output, "not a folder").unwrap();
    let err = fail(&mut train_cmd(&model, &data.train, &output, &["--max-steps", "1"]), "--output on a file");
    assert!(err.contains("out.txt is a file, not a folder"), "{err}");
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "not a folder");
}

// ---------------------------------------------------------------- failed saves (fault injection)

#[cfg(feature = "fault-injection")]
#[test]
fn r15_disk_full_during_a_checkpoint_keeps_the_last_one_and_a_matching_log() {
    let Some(model) = model() else { return };
    let work = scratch_dir("r15-enospc-checkpoint");
    let data = write_data(&work, &SENTIMENT);
    let output = work.join("out");
    let args = ["--max-steps", "6", "--save-every", "2", "--logging-steps", "1", "--batch-size", "4", "--seed", "7"];
    let mut cmd = train_cmd(&model, &data.train, &output, &args);
    let err = fail(cmd.env("BERTH_FAULT", "enospc:checkpoint-4.tmp/model.safetensors"), "a run whose disk fills at step 4");
    assert!(err.contains("save failed") && err.contains("checkpoint-2") && err.contains("metrics.jsonl now ends at step 2"), "{err}");
    assert_eq!(checkpoints(&output).iter().map(|(s, _)| *s).collect::<Vec<_>>(), [2]);
    assert!(!output.join("checkpoint-4.tmp").exists(), "the half-written checkpoint was left");
    assert_eq!(logged_steps(&output), [1, 2], "metrics.jsonl should describe checkpoint-2, the model that is kept");
    // The kept checkpoint resumes to the end.
    succeed(train_cmd(&model, &data.train, &output, &args).arg("--resume-from").arg(output.join("checkpoint-2")), "resume");
    assert_eq!(logged_steps(&output), (1..=6).collect::<Vec<u64>>());
}

#[cfg(feature = "fault-injection")]
#[test]
fn r15_disk_full_during_the_final_save_leaves_no_half_model() {
    let Some(model) = model() else { return };
    let work = scratch_dir("r15-enospc-final");
    let data = write_data(&work, &SENTIMENT);
    let output = work.join("out");
    let args = ["--max-steps", "4", "--save-every", "2", "--logging-steps", "1", "--batch-size", "4", "--seed", "7"];
    let mut cmd = train_cmd(&model, &data.train, &output, &args);
    let err = fail(cmd.env("BERTH_FAULT", "enospc:out/model.safetensors"), "a run whose disk fills at the final save");
    assert!(err.contains("save failed") && err.contains("checkpoint-4"), "{err}");
    for name in ["config.json", "model.safetensors", "training_state.json", "berth-inference.json", "tokenizer.json"] {
        assert!(!output.join(name).exists(), "{name} of a final model that failed to save was left");
    }
    assert_eq!(logged_steps(&output), [1, 2, 3, 4], "metrics.jsonl should end at checkpoint-4, the model that is kept");
}

#[cfg(all(unix, feature = "fault-injection"))]
#[test]
fn r15_a_crash_during_a_checkpoint_write_then_another_batch_size_is_a_clear_error() {
    let Some(model) = model() else { return };
    let work = scratch_dir("r15-crash-checkpoint");
    let data = write_data(&work, &SENTIMENT);
    let output = work.join("out");
    let mut cmd = train_cmd(&model, &data.train, &output, &RUN);
    let out = output_within(cmd.env("BERTH_FAULT", "crash:checkpoint-8.tmp/optimizer.safetensors"), Duration::from_secs(120), "the run");
    assert!(!out.status.success(), "the injected crash did not happen:\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fault injection: crashing while writing"));
    // The crash hit the staging folder; checkpoint-4 is complete.
    assert_eq!(checkpoints(&output).iter().map(|(s, _)| *s).collect::<Vec<_>>(), [4]);
    assert!(output.join("checkpoint-8.tmp").is_dir(), "the crash should have left the staging folder");

    let other = ["--max-steps", "12", "--save-every", "4", "--batch-size", "200", "--seed", "7"];
    let mut cmd = train_cmd(&model, &data.train, &output, &other);
    let err = fails_within(cmd.arg("--resume-from").arg(output.join("checkpoint-4")), "resume with --batch-size 200");
    assert!(err.contains("not the same run") && err.contains("--batch-size: 8 in the checkpoint's run, 200 now"), "{err}");
    // With the run's own settings it resumes past the crash and finishes.
    succeed(train_cmd(&model, &data.train, &output, &RUN).arg("--resume-from").arg(output.join("checkpoint-4")), "resume");
    assert_eq!(checkpoints(&output).iter().map(|(s, _)| *s).collect::<Vec<_>>(), [8, 12]);
    assert!(!output.join("checkpoint-8.tmp").exists());
}

// ---------------------------------------------------------------- values

#[test]
fn r15_bad_values_are_refused_by_name() {
    let Some(model) = model() else { return };
    let work = scratch_dir("r15-values");
    let data = write_data(&work, &SENTIMENT);
    let output = work.join("out");
    for (flag, value, expect) in [
        ("--weight-decay", "nan", "--weight-decay must be a finite number ≥ 0 (got NaN)"),
        ("--max-grad-norm", "nan", "--max-grad-norm must be a finite number ≥ 0"),
        ("--epochs", "-1", "--epochs must be positive (got -1)"),
        ("--lr", "-0.1", "--lr must be positive and finite (got -0.1)"),
        ("--focal-gamma", "nan", "--focal-gamma must be a finite number ≥ 0"),
    ] {
        let err = fail(&mut train_cmd(&model, &data.train, &output, &[flag, value]), &format!("{flag} {value}"));
        assert!(err.contains(expect), "{flag} {value}: {err}");
    }
    assert!(!output.exists(), "a refused run created its output folder");
}

#[test]
fn r15_max_length_above_the_position_table_is_clamped_and_shown() {
    let Some(model) = model() else { return };
    let positions = read_json(&model.join("config.json"))["max_position_embeddings"].as_u64().unwrap();
    let work = scratch_dir("r15-max-length");
    let data = write_data(&work, &SENTIMENT);
    let mut cmd = berth();
    cmd.arg("train").arg("--model").arg(&model).arg("--train").arg(&data.train).arg("--output").arg(work.join("out"));
    let out = succeed(cmd.args(["--max-length", "100000", "--max-steps", "1", "--device", "cpu"]), "--max-length 100000");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("--max-length 100000 is above the model's max_position_embeddings; clamped to {positions}")), "{err}");
    assert!(err.contains(&format!("\"max_length\": {positions}")), "the printed configuration should show the effective length:\n{err}");
}

#[test]
fn r15_loss_that_is_nan_before_any_update_does_not_blame_the_learning_rate() {
    let Some(model) = model() else { return };
    let work = scratch_dir("r15-nan-first-step");
    // A regression target of 1e300 squares to infinity in f32 at the first step.
    let train = work.join("train.tsv");
    std::fs::write(&train, "text\tlabel\nthe film was great\t1e300\nthe plot was dull\t0.5\n").unwrap();
    let mut cmd = train_cmd(&model, &train, &work.join("out"), &["--task", "regression", "--max-steps", "1", "--batch-size", "2"]);
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        panic!("a 1e300 target trained without error:\n{err}");
    }
    assert!(err.contains("the loss is inf at step 1"), "{err}");
    assert!(err.contains("No update has been made yet, so the learning rate is not the cause"), "{err}");
    assert!(!err.contains("smaller --lr"), "{err}");
}

fn value_of(v: &Value, key: &str) -> String {
    v[key].to_string()
}

#[test]
fn r15_the_checkpoint_records_the_run_identity() {
    let Some(model) = model() else { return };
    let work = scratch_dir("r15-identity");
    let data = write_data(&work, &SENTIMENT);
    let output = work.join("out");
    succeed(&mut train_cmd(&model, &data.train, &output, &RUN), "the run");
    let state = read_json(&output.join("checkpoint-8/training_state.json"));
    let size = std::fs::metadata(&data.train).unwrap().len();
    assert_eq!(value_of(&state["identity"]["train_file"], "size"), size.to_string());
    assert_eq!(state["identity"]["train_file"]["hash"].as_str().unwrap().len(), 16);
    assert_eq!(Path::new(state["identity"]["model"].as_str().unwrap()), model.canonicalize().unwrap());
}

// ---------------------------------------------------------------- multi-task heads.toml

#[test]
fn r15_heads_toml_errors_name_the_file_and_the_head() {
    let Some(model) = model() else { return };
    let work = scratch_dir("r15-heads-toml");
    write_data(&work, &SENTIMENT);
    let heads = work.join("heads.toml");
    let head = |extra: &str| format!("[[head]]\nname = \"sentiment\"\ntrain = \"train.tsv\"\n{extra}");
    for (text, expect) in [
        (head("colour = \"red\"\n"), "unknown field `colour`".to_string()),
        ("mixing = \"alternate\"\n".to_string(), "missing field `head`".into()),
        ("head = []\n".to_string(), "the file names no [[head]]".into()),
        (format!("mixing = \"shuffled\"\n{}", head("")), "mixing `shuffled`: use alternate or proportional".into()),
        (head("").replace("sentiment", "senti ment"), "head `senti ment`: a head name uses letters, digits".into()),
        (head("") + &head(""), "head `sentiment`: the name is used twice".into()),
        (head("loss-weight = 0.0\n"), "head `sentiment`: loss-weight must be positive, found 0".into()),
        (head("task = \"ranking\"\n"), "head `sentiment`: ".into()),
        (head("alignment = \"middle\"\n"), "head `sentiment`: ".into()),
        (head("").replace("train.tsv", "absent.tsv"), "absent.tsv".into()),
    ] {
        std::fs::write(&heads, &text).unwrap();
        let mut cmd = berth();
        cmd.arg("train").arg("--model").arg(&model).arg("--heads").arg(&heads).arg("--output").arg(work.join("out"));
        let err = fail(cmd.args(["--max-steps", "1", "--max-length", "32"]), &format!("heads.toml:\n{text}"));
        assert!(err.contains("heads.toml") || expect.ends_with(".tsv"), "the message should name the file:\n{err}");
        assert!(err.contains(&expect), "heads.toml:\n{text}\nexpected `{expect}` in:\n{err}");
        assert!(!work.join("out").exists(), "a refused multi-task run left its output folder");
    }
}
