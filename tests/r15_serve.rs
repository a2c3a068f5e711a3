//! Issue 15, item 6 and the server's part of item 12: `berth serve` speaks
//! TEI and the Hugging Face client (`POST /`, `truncate`,
//! `truncation_direction`, `raw_scores`, `parameters`), drains with
//! `/health` at 503, answers 405 in JSON, refuses a declared over-long body
//! before reading it, times out clients that trickle, honours
//! `--request-timeout-ms`, and runs on `--device sim`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use berth::{Classifier, ClassifierOptions, DeviceChoice};
use serde_json::{Value, json};

use crate::common::{fixture_dir, rel_error, scratch_dir};
use crate::serve::{Reply, Server, headed_minilm, logits_by_label, long_text, read_reply, request, texts};

/// A Python that can import huggingface_hub (the pinned `.py-venv` that
/// .ci/run installs, or BERTH_PYTHON), or None after a recorded skip.
fn python_with_hf_client() -> Option<String> {
    crate::common::python_with(&["huggingface_hub"])
}

fn post(server: &Server, path: &str, body: &Value) -> Reply {
    request(server.address, "POST", path, body.to_string().as_bytes()).unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

fn error_of(reply: &Reply) -> (String, String) {
    let v = reply.json();
    (v["error"].as_str().unwrap_or_else(|| panic!("no error in {v}")).to_string(), v["error_type"].as_str().unwrap().to_string())
}

/// (label, score) rows of one answer, in the order given.
fn rows(answer: &Value) -> Vec<(String, f64)> {
    answer
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {answer}"))
        .iter()
        .map(|r| (r["label"].as_str().unwrap().to_string(), r["score"].as_f64().unwrap()))
        .collect()
}

/// Labels with scores, highest first, as the server and the client order them.
fn sorted(labels: &[String], scores: &[f64]) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = labels.iter().cloned().zip(scores.iter().copied()).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v
}

/// Same labels in the same order, scores within DESIGN.md's 1e-5 relative.
fn assert_same_scores(got: &[(String, f64)], want: &[(String, f64)], what: &str) {
    let names = |v: &[(String, f64)]| v.iter().map(|(l, _)| l.clone()).collect::<Vec<_>>();
    assert_eq!(names(got), names(want), "{what}: labels or their order");
    let values = |v: &[(String, f64)]| v.iter().map(|(_, s)| *s).collect::<Vec<_>>();
    let e = rel_error(&values(got), &values(want));
    assert!(e <= 1e-5, "{what}: relative error {e:e}: {got:?} against {want:?}");
}

fn softmax(x: &[f64]) -> Vec<f64> {
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = x.iter().map(|v| (v - max).exp()).sum();
    x.iter().map(|v| (v - max).exp() / sum).collect()
}

#[test]
fn r15_inference_client_text_classification_matches_berth_predict() {
    let Some(python) = python_with_hf_client() else { return };
    let Some(dir) = fixture_dir("a-seqcls") else { return };
    let work = scratch_dir("r15-hf-client");
    let lines = texts(6);
    let input = work.join("texts.txt");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let predicted = work.join("berth.jsonl");
    let status = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["predict", "--device", "cpu", "--model"])
        .arg(&dir)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&predicted)
        .status()
        .unwrap();
    assert!(status.success(), "berth predict failed");
    let expected: Vec<Value> = std::fs::read_to_string(&predicted).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(expected.len(), lines.len());
    let labels = Classifier::load(&dir, DeviceChoice::Cpu).unwrap().labels().to_vec();

    let server = Server::start(&dir, &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/hf_client.py");
    let out = Command::new(&python)
        .arg(script)
        .arg("--url")
        .arg(format!("http://{}", server.address))
        .arg("--input")
        .arg(&input)
        // The client must reach the loopback server directly, never through a proxy.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .output()
        .unwrap();
    assert!(out.status.success(), "the client failed:\n{}\n{}", String::from_utf8_lossy(&out.stderr), server.log.lock().unwrap());
    let answers: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(answers.len(), lines.len());
    for (i, (answer, want)) in answers.iter().zip(&expected).enumerate() {
        let logits: Vec<f64> = want["logits"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let probabilities: Vec<f64> = want["probabilities"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let all = sorted(&labels, &probabilities);
        assert_same_scores(&rows(&answer["default"]), &all, &format!("text {i}, default"));
        assert_eq!(all[0].0, want["label"].as_str().unwrap(), "text {i}: predict's label is the top score");
        assert_same_scores(&rows(&answer["top_k_1"]), &all[..1], &format!("text {i}, top_k 1"));
        assert_same_scores(
            &rows(&answer["softmax_top_k_2"]),
            &sorted(&labels, &softmax(&logits))[..2],
            &format!("text {i}, softmax top 2"),
        );
        let sigmoid: Vec<f64> = logits.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect();
        assert_same_scores(&rows(&answer["sigmoid"]), &sorted(&labels, &sigmoid), &format!("text {i}, sigmoid"));
        assert_same_scores(&rows(&answer["none"]), &sorted(&labels, &logits), &format!("text {i}, none"));
    }
    // The client posts to `/`, one text per call: five calls per text, all answered.
    assert_eq!(server.metric("berth_requests_total"), (5 * lines.len()) as f64);
    assert_eq!(server.get("/metrics").body.contains("berth_request_errors_total{"), false, "no request failed");
}

#[test]
fn r15_post_root_answers_like_predict_in_both_shapes() {
    let Some(dir) = fixture_dir("a-seqcls") else { return };
    let classifier = Classifier::load(&dir, DeviceChoice::Cpu).unwrap();
    let labels = classifier.labels().to_vec();
    let server = Server::start(&dir, &[]);
    let text = "a gripping film that is never dull";
    let logits = classifier.predict(&[text]).unwrap().remove(0).logits;
    // TEI's shape at `/`: one text, one list.
    let tei = post(&server, "/", &json!({"inputs": text, "raw_scores": true}));
    assert_eq!(tei.status, 200, "{}", tei.body);
    assert_same_scores(&rows(&tei.json()), &sorted(&labels, &logits), "POST / raw_scores");
    assert_eq!(tei.json(), post(&server, "/predict", &json!({"inputs": text, "raw_scores": true})).json());
    // The client's shape (`parameters`): a list per input, even for one text.
    let client = post(&server, "/", &json!({"inputs": text, "parameters": {"function_to_apply": "none"}}));
    assert_eq!(client.status, 200, "{}", client.body);
    let nested = client.json();
    assert_eq!(nested.as_array().unwrap().len(), 1, "{nested}");
    assert_same_scores(&rows(&nested[0]), &sorted(&labels, &logits), "POST / with parameters");
}

#[test]
fn r15_tei_lists_and_pairs_with_every_field() {
    let Some(dir) = fixture_dir("a-pair") else { return };
    let classifier = Classifier::load(&dir, DeviceChoice::Cpu).unwrap();
    let labels = classifier.labels().to_vec();
    let server = Server::start(&dir, &[]);
    let pairs = [("A man plays guitar.", "Someone makes music."), ("The cat sleeps.", "A dog barks."), ("It rains.", "The street is wet.")];
    let expected = classifier.predict_pairs(&pairs).unwrap();
    let body = json!({
        "inputs": pairs.iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>(),
        "truncate": true,
        "truncation_direction": "Right",
        "raw_scores": false,
    });
    for path in ["/", "/predict"] {
        let reply = post(&server, path, &body);
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        let answer = reply.json();
        assert_eq!(answer.as_array().unwrap().len(), 3);
        for (i, p) in expected.iter().enumerate() {
            let want: Vec<(String, f64)> = p.scores.iter().map(|s| (s.label.clone(), s.score)).collect();
            assert_same_scores(&rows(&answer[i]), &want, &format!("{path} pair {i}"));
        }
    }
    // A list of texts with the logits and the lower-case spelling.
    let texts = ["one short text", "another one that is a little longer"];
    let reply = post(&server, "/predict", &json!({"inputs": texts, "raw_scores": true, "truncation_direction": "right", "truncate": null}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    for (i, p) in classifier.predict(&texts).unwrap().iter().enumerate() {
        let got = logits_by_label(&reply.json()[i], &labels);
        assert!(rel_error(&got, &p.logits) <= 1e-5, "text {i}: {got:?} against {:?}", p.logits);
    }
    // top_k with a pair list: each answer cut to its best label.
    let reply = post(&server, "/predict", &json!({"inputs": [[pairs[0].0, pairs[0].1]], "parameters": {"top_k": 1}}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_same_scores(&rows(&reply.json()[0]), &[(expected[0].scores[0].label.clone(), expected[0].scores[0].score)], "top_k 1");
}

/// Words that are one word piece each in the fixtures' uncased vocabulary.
const WORDS: [&str; 10] = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "home"];

#[test]
fn r15_truncation_direction_left_keeps_the_last_tokens() {
    let Some(dir) = fixture_dir("a-seqcls") else { return };
    let max_length = 16;
    let options = ClassifierOptions { device: DeviceChoice::Cpu, max_length: Some(max_length), ..ClassifierOptions::default() };
    let classifier = Classifier::load_with(&dir, &options).unwrap();
    for w in WORDS {
        assert_eq!(classifier.encode(w, None).unwrap().ids.len(), 3, "`{w}` is one word piece");
    }
    let words: Vec<&str> = (0..30).map(|i| WORDS[(i * 7 + i / 10) % WORDS.len()]).collect();
    let text = words.join(" ");
    // 16 tokens hold [CLS], 14 words and [SEP].
    let kept = max_length - 2;
    let first = classifier.predict(&[&words[..kept].join(" ")]).unwrap().remove(0).logits;
    let last = classifier.predict(&[&words[words.len() - kept..].join(" ")]).unwrap().remove(0).logits;
    assert!(rel_error(&first, &last) > 1e-3, "the two ends must give different logits for the test to tell them apart");
    let labels = classifier.labels().to_vec();
    let server = Server::start(&dir, &["--max-length", &max_length.to_string()]);
    for (direction, want) in
        [(None, &first), (Some("Right"), &first), (Some("right"), &first), (Some("Left"), &last), (Some("left"), &last)]
    {
        let mut body = json!({"inputs": text, "raw_scores": true, "truncate": true});
        if let Some(d) = direction {
            body["truncation_direction"] = json!(d);
        }
        let reply = post(&server, "/predict", &body);
        assert_eq!(reply.status, 200, "{direction:?}: {}", reply.body);
        let got = logits_by_label(&reply.json(), &labels);
        assert!(rel_error(&got, want) <= 1e-5, "{direction:?}: {got:?} against {want:?}");
    }
}

#[test]
fn r15_truncate_false_refuses_an_over_long_input_naming_it() {
    let Some(dir) = fixture_dir("a-seqcls") else { return };
    let server = Server::start(&dir, &["--max-length", "16"]);
    let long: String = (0..30).map(|i| WORDS[i % WORDS.len()]).collect::<Vec<_>>().join(" ");
    let reply = post(&server, "/predict", &json!({"inputs": long, "truncate": false}));
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(
        error_of(&reply),
        (r#"inputs has 32 tokens; the limit is 16 (--max-length); send "truncate": true to cut it"#.into(), "validation".into())
    );
    let reply = post(&server, "/predict", &json!({"inputs": ["the cat sat", long], "truncate": false, "truncation_direction": "Left"}));
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert!(error_of(&reply).0.starts_with("inputs[1] has 32 tokens; the limit is 16"), "{}", reply.body);
    // What fits is answered as with truncation.
    let short = json!({"inputs": "the cat sat on a mat", "raw_scores": true});
    let mut untruncated = short.clone();
    untruncated["truncate"] = json!(false);
    let (a, b) = (post(&server, "/predict", &short), post(&server, "/predict", &untruncated));
    assert_eq!((a.status, b.status), (200, 200), "{} {}", a.body, b.body);
    assert_eq!(a.json(), b.json());
}

#[test]
fn r15_invalid_tei_and_client_fields_get_400_naming_them() {
    let Some(dir) = fixture_dir("a-seqcls") else { return };
    let server = Server::start(&dir, &[]);
    let cases = [
        (
            json!({"inputs": "a", "truncation_direction": "up"}),
            r#"`truncation_direction` must be "Left" or "Right" (or lower case), found "up""#,
        ),
        (json!({"inputs": "a", "truncate": "no"}), "`truncate` must be true or false, found a string"),
        (json!({"inputs": "a", "parameters": {"top_k": 0}}), "`parameters.top_k` must be a whole number of at least 1, found 0"),
        (
            json!({"inputs": "a", "parameters": {"function_to_apply": "relu"}}),
            r#"`parameters.function_to_apply` must be "softmax", "sigmoid" or "none", found "relu""#,
        ),
        (
            json!({"inputs": "a", "parameters": {"top_n": 2}}),
            "unknown field `parameters.top_n` (`parameters` may hold `top_k` and `function_to_apply`)",
        ),
        (json!({"inputs": "a", "parameters": "top_k=2"}), "`parameters` must be an object, found a string"),
        (
            json!({"inputs": "a", "raw_scores": true, "parameters": {"function_to_apply": "sigmoid"}}),
            r#"`raw_scores` asks for the logits but `parameters.function_to_apply` is "sigmoid"; send one of them"#,
        ),
        (
            json!({"inputs": "a", "normalize": true}),
            "unknown field `normalize` (a request may hold `inputs`, `raw_scores`, `truncate`, `truncation_direction`, `long_text`, `explain` and `parameters`)",
        ),
    ];
    for (body, message) in &cases {
        for path in ["/", "/predict"] {
            let reply = post(&server, path, body);
            assert_eq!(reply.status, 400, "{path} {body}: {}", reply.body);
            assert_eq!(error_of(&reply), (message.to_string(), "validation".to_string()), "{path} {body}");
        }
    }
    assert_eq!(server.metric("berth_request_errors_total{status=\"400\"}"), (2 * cases.len()) as f64);
    assert_eq!(post(&server, "/", &json!({"inputs": "still fine"})).status, 200);
}

#[test]
fn r15_a_token_model_refuses_score_options_it_cannot_apply() {
    let Some(dir) = fixture_dir("a-tokcls") else { return };
    let server = Server::start(&dir, &[]);
    let sentence = "EU rejects German call to boycott British lamb .";
    let reply = post(&server, "/predict", &json!({"inputs": sentence, "raw_scores": true}));
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(
        error_of(&reply).0,
        "`raw_scores` applies to label scores, but this token-classification model answers each text with words and tags"
    );
    let reply = post(&server, "/", &json!({"inputs": sentence, "parameters": {"top_k": 2}}));
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(error_of(&reply).0.starts_with("`parameters.top_k` applies to label scores"), "{}", reply.body);
    // Words are read in windows, nothing is truncated: the TEI fields change nothing.
    let plain = post(&server, "/predict", &json!({"inputs": sentence}));
    let tei = post(&server, "/predict", &json!({"inputs": sentence, "truncate": false, "truncation_direction": "Left"}));
    assert_eq!((plain.status, tei.status), (200, 200), "{} {}", plain.body, tei.body);
    assert_eq!(plain.json(), tei.json());
}

#[test]
fn r15_405_answers_carry_a_json_body_and_allow() {
    let Some(dir) = fixture_dir("a-seqcls") else { return };
    let server = Server::start(&dir, &[]);
    for (method, path, allowed) in
        [("GET", "/predict", "POST"), ("GET", "/", "POST"), ("POST", "/health", "GET"), ("DELETE", "/info", "GET")]
    {
        let reply = request(server.address, method, path, b"").unwrap();
        assert_eq!(reply.status, 405, "{method} {path}: {}", reply.body);
        assert_eq!(
            error_of(&reply),
            (format!("{method} {path} is not served; use {allowed} {path}"), "method_not_allowed".to_string()),
            "{method} {path}"
        );
        assert!(reply.header("content-type").unwrap().starts_with("application/json"), "{method} {path}");
        assert!(reply.header("allow").unwrap().contains(allowed), "{method} {path}: Allow {:?}", reply.header("allow"));
    }
}

/// Sends `head`, then nothing more; returns the reply, or the error when
/// none came within `wait`.
fn reply_to_head_only(address: std::net::SocketAddr, head: &str, wait: Duration) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(wait))?;
    stream.write_all(head.as_bytes())?;
    read_reply(&mut stream)
}

#[test]
fn r15_a_declared_content_length_over_the_limit_is_refused_before_the_body() {
    let Some(dir) = fixture_dir("a-seqcls") else { return };
    let server = Server::start(&dir, &["--max-body-bytes", "2000"]);
    let head = "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n";
    let started = Instant::now();
    // No body is sent: an answer can only come from the declared length.
    let reply = reply_to_head_only(server.address, head, Duration::from_secs(10)).expect("an answer before any body byte");
    assert!(started.elapsed() < Duration::from_secs(5), "answered after {:?}", started.elapsed());
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(
        error_of(&reply),
        ("the body's Content-Length, 10000000 bytes, is over the limit of 2000 bytes".into(), "validation".into())
    );
    assert_eq!(server.metric("berth_request_errors_total{status=\"413\"}"), 1.0);
    assert_eq!(server.post(&json!({"inputs": "still fine"})).status, 200);
}

#[test]
fn r15_a_client_trickling_its_body_gets_408() {
    let Some(dir) = fixture_dir("a-seqcls") else { return };
    let server = Server::start(&dir, &["--request-timeout-ms", "1000"]);
    let mut stream = TcpStream::connect(server.address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = json!({"inputs": "a body that never fully arrives"}).to_string();
    let head = format!("POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
    let started = Instant::now();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body.as_bytes()[..10]).unwrap();
    let reply = read_reply(&mut stream).expect("an answer within the timeout");
    let waited = started.elapsed();
    assert_eq!(reply.status, 408, "{}", reply.body);
    assert_eq!(error_of(&reply), ("the body did not arrive within 1000 ms".into(), "timeout".into()));
    assert!(waited >= Duration::from_millis(950) && waited < Duration::from_secs(5), "answered after {waited:?}");
    assert_eq!(server.metric("berth_request_errors_total{status=\"408\"}"), 1.0);
}

#[test]
fn r15_a_client_trickling_its_headers_is_disconnected() {
    let Some(dir) = fixture_dir("a-seqcls") else { return };
    let server = Server::start(&dir, &["--request-timeout-ms", "1000"]);
    let mut stream = TcpStream::connect(server.address).unwrap();
    let mut reader = stream.try_clone().unwrap();
    reader.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    // One header byte every 100 ms, for far longer than the timeout.
    let writer = std::thread::spawn(move || {
        for b in b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if stream.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = stream.shutdown(Shutdown::Write);
    });
    let mut answer = Vec::new();
    // The server closes the connection: end of stream (or a reset), with no answer.
    let closed = reader.read_to_end(&mut answer);
    let waited = started.elapsed();
    assert!(
        closed.is_ok() || closed.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the connection was not closed within 10 s: {closed:?}"
    );
    assert!(waited >= Duration::from_millis(950) && waited < Duration::from_secs(4), "closed after {waited:?}");
    assert!(answer.is_empty(), "unexpected answer: {}", String::from_utf8_lossy(&answer));
    writer.join().unwrap();
    // Others are still served.
    assert_eq!(post(&server, "/predict", &json!({"inputs": "still fine"})).status, 200);
}

/// A text of about 500 word pieces: one forward pass of MiniLM on it takes
/// a noticeable time on a CPU.
fn very_long_text(i: usize) -> String {
    (0..4).map(|k| long_text(i * 10 + k)).collect::<Vec<_>>().join(" ")
}

#[test]
fn r15_request_timeout_ms_answers_504_and_drops_the_work() {
    let Some(dir) = headed_minilm() else { return };
    let server = Server::start(
        &dir,
        &["--request-timeout-ms", "1000", "--max-batch-size", "1", "--max-length", "512", "--max-input-chars", "100000"],
    );
    // 32 passes of ~500 tokens: seconds of work, far over the timeout.
    let body = json!({"inputs": (0..32).map(very_long_text).collect::<Vec<_>>()});
    let started = Instant::now();
    let reply = post(&server, "/predict", &body);
    let waited = started.elapsed();
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert_eq!(error_of(&reply), ("no answer within 1000 ms".into(), "timeout".into()));
    assert!(waited >= Duration::from_millis(950) && waited < Duration::from_secs(5), "answered after {waited:?}");
    // The abandoned passes are skipped, so the next request is answered in time.
    let next = post(&server, "/predict", &json!({"inputs": "a short text"}));
    assert_eq!(next.status, 200, "{}", next.body);
    let passes = server.metric("berth_batch_size_count");
    assert!(passes < 32.0, "{passes} forward passes: the timed-out request's work was not dropped");
    assert_eq!(server.metric("berth_request_errors_total{status=\"504\"}"), 1.0);
}

#[test]
fn r15_serve_on_the_simulated_device_matches_the_cpu() {
    let Some(dir) = fixture_dir("a-seqcls") else { return };
    let classifier = Classifier::load(&dir, DeviceChoice::Cpu).unwrap();
    let labels = classifier.labels().to_vec();
    let server = Server::start_on("sim", &dir, &[]);
    let info = server.get("/info").json();
    assert!(info["device"].as_str().unwrap().contains("sim"), "device {}", info["device"]);
    let inputs = texts(5);
    let reply = post(&server, "/predict", &json!({"inputs": inputs, "raw_scores": true}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    for (i, p) in classifier.predict(&refs).unwrap().iter().enumerate() {
        let got = logits_by_label(&reply.json()[i], &labels);
        assert!(rel_error(&got, &p.logits) <= 1e-5, "text {i}: sim {got:?} against cpu {:?}", p.logits);
    }
}

#[test]
fn r15_sigterm_drains_with_health_and_new_requests_at_503() {
    let Some(dir) = headed_minilm() else { return };
    let mut server = Server::start(&dir, &["--max-batch-size", "1"]);
    let address = server.address;
    // Six requests of eight long texts, one forward pass per text: seconds of work.
    let handles: Vec<_> = (0..6)
        .map(|r| {
            let body = json!({"inputs": (0..8).map(|i| long_text(r * 10 + i)).collect::<Vec<_>>()}).to_string();
            std::thread::spawn(move || request(address, "POST", "/predict", body.as_bytes()))
        })
        .collect();
    // Wait until the server has all six requests in hand (read, queued or running).
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.metric("berth_requests_in_flight") < 6.0 {
        assert!(Instant::now() < deadline, "the six requests never arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().unwrap();
    assert!(status.success());
    let until = Instant::now() + Duration::from_secs(10);
    while !server.log.lock().unwrap().contains("draining") {
        assert!(Instant::now() < until, "no draining message:\n{}", server.log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(10));
    }
    // Still listening while it drains: health says so, and new work is turned away.
    let health = server.get("/health");
    assert_eq!((health.status, health.json()), (503, json!({"status": "draining"})));
    let late = request(address, "POST", "/predict", json!({"inputs": "late"}).to_string().as_bytes()).expect("the server still answers");
    assert_eq!(late.status, 503, "{}", late.body);
    assert_eq!(error_of(&late), ("the server is shutting down".into(), "unhealthy".into()));
    for (r, h) in handles.into_iter().enumerate() {
        let reply = h.join().unwrap().unwrap_or_else(|e| panic!("request {r} was cut off: {e}"));
        assert_eq!(reply.status, 200, "request {r}: {}", reply.body);
        assert_eq!(reply.json().as_array().unwrap().len(), 8);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the server did not exit after draining");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit status {exit}\n{}", server.log.lock().unwrap());
    assert!(server.log.lock().unwrap().contains("drained"));
    assert!(TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_err(), "still listening after exit");
}
