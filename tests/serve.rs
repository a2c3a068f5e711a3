//! `berth serve` end to end: the binary on a free loopback port, driven by a
//! small HTTP/1.1 client over TcpStream. Every concurrent request gets its
//! own answer, batching groups requests, bad bodies get 400/413, a full
//! queue gets 503. The helpers here serve tests/r15_serve.rs too (TEI and
//! the Hugging Face client, draining, timeouts).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use berth::{Classifier, DeviceChoice};
use serde_json::{Value, json};

use crate::common::{fixture_dir, minilm_dir, rel_error, scratch_dir};

/// all-MiniLM-L6-v2 with a two-label classification head of fixed,
/// deterministic weights added, built once per test run: a model of real
/// size (so a forward pass takes real time) that prediction accepts, which a
/// bare encoder is not. None, with a message, when MiniLM is absent.
pub(crate) fn headed_minilm() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let source = minilm_dir()?;
        let dir = scratch_dir("headed-minilm");
        for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"] {
            if source.join(name).is_file() {
                std::fs::copy(source.join(name), dir.join(name)).unwrap();
            }
        }
        let mut config: Value = serde_json::from_str(&std::fs::read_to_string(source.join("config.json")).unwrap()).unwrap();
        config["architectures"] = json!(["BertForSequenceClassification"]);
        config["id2label"] = json!({"0": "negative", "1": "positive"});
        config["label2id"] = json!({"negative": 0, "positive": 1});
        std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&config).unwrap()).unwrap();
        let hidden = config["hidden_size"].as_u64().unwrap() as usize;
        let weight: Vec<f32> = (0..2 * hidden).map(|k| 0.05 * ((k % hidden) as f32 * 0.37 + (k / hidden) as f32 * 1.3).sin()).collect();
        let bias: Vec<f32> = vec![0.1, -0.1];
        let bytes = std::fs::read(source.join("model.safetensors")).unwrap();
        let stored = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let le = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let (weight, bias) = (le(&weight), le(&bias));
        let mut tensors: Vec<(String, safetensors::tensor::TensorView)> =
            stored.tensors().into_iter().filter(|(name, _)| !name.starts_with("classifier.")).collect();
        tensors.push((
            "classifier.weight".into(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, hidden], &weight).unwrap(),
        ));
        tensors.push(("classifier.bias".into(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2], &bias).unwrap()));
        safetensors::serialize_to_file(tensors, None, &dir.join("model.safetensors")).unwrap();
        Some(dir)
    })
    .clone()
}

/// A running `berth serve`, killed when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) address: SocketAddr,
    pub(crate) log: Arc<Mutex<String>>,
}

impl Server {
    /// `berth serve` on the CPU.
    pub(crate) fn start(model: &Path, extra: &[&str]) -> Server {
        Server::start_on("cpu", model, extra)
    }

    /// `berth serve --device DEVICE` on a free port, once it listens.
    pub(crate) fn start_on(device: &str, model: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["serve", "--device", device, "--port", "0", "--model"])
            .arg(model)
            .args(extra)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start berth serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(String::new()));
        let mut address = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            log.lock().unwrap().push_str(&format!("{line}\n"));
            if let Some(a) = line.split("listening on http://").nth(1) {
                address = Some(a.trim().parse().unwrap());
                break;
            }
        }
        let Some(address) = address else {
            let _ = child.kill();
            panic!("berth serve did not start:\n{}", log.lock().unwrap());
        };
        // Keep reading stderr so the server never blocks on a full pipe.
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(|l| l.ok()) {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Server { child, address, log }
    }

    pub(crate) fn post(&self, body: &Value) -> Reply {
        request(self.address, "POST", "/predict", body.to_string().as_bytes()).expect("POST /predict")
    }

    pub(crate) fn get(&self, path: &str) -> Reply {
        request(self.address, "GET", path, b"").unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// The value of an unlabelled metric, or of one with the given label set.
    pub(crate) fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").body;
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .trim()
            .parse()
            .unwrap()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 exchange on its own connection (Connection: close).
pub(crate) fn request(address: SocketAddr, method: &str, path: &str, body: &[u8]) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    // The server may answer (413) before reading a large body, and close.
    let _ = stream.write_all(body);
    read_reply(&mut stream)
}

/// Reads an HTTP/1.1 reply to the end of the connection.
pub(crate) fn read_reply(stream: &mut TcpStream) -> std::io::Result<Reply> {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_string(), v.trim().to_string())).collect();
    let mut payload = raw[split + 4..].to_vec();
    if headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")) {
        payload = dechunk(&payload);
    }
    Ok(Reply { status, headers, body: String::from_utf8_lossy(&payload).into_owned() })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 4 + size..];
    }
    out
}

/// Distinct texts of varied length.
pub(crate) fn texts(n: usize) -> Vec<String> {
    let words = ["a", "gripping", "film", "that", "is", "never", "dull", "but", "the", "ending", "felt", "rushed", "and", "cold"];
    (0..n)
        .map(|i| format!("{i} {}", (0..2 + (i * 5) % 13).map(|j| words[(i * 3 + j * 7) % words.len()]).collect::<Vec<_>>().join(" ")))
        .collect()
}

/// label → logit, from a `raw_scores` answer.
pub(crate) fn logits_by_label(answer: &Value, labels: &[String]) -> Vec<f64> {
    let rows = answer.as_array().expect("a list of {label, score}");
    let scores: Vec<f64> = rows.iter().map(|r| r["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "sorted by score: {answer}");
    labels.iter().map(|l| rows.iter().find(|r| r["label"] == l.as_str()).unwrap()["score"].as_f64().unwrap()).collect()
}

fn distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// N requests at once, each with its own text: every answer equals the
/// library's logits for that text, and is nearer to them than to any other
/// text's (so no answer went to the wrong caller).
fn concurrent_answers_are_each_callers_own(model: &Path, n: usize, extra: &[&str]) -> Server {
    let classifier = Classifier::load(model, DeviceChoice::Cpu).unwrap();
    let texts = texts(n);
    let expected: Vec<Vec<f64>> = texts.iter().map(|t| classifier.predict(&[t.as_str()]).unwrap().remove(0).logits).collect();
    let labels = classifier.labels().to_vec();
    let server = Server::start(model, extra);
    let address = server.address;
    let start = Arc::new(std::sync::Barrier::new(n));
    let handles: Vec<_> = texts
        .iter()
        .map(|t| {
            let (body, start) = (json!({"inputs": t, "raw_scores": true}).to_string(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                request(address, "POST", "/predict", body.as_bytes()).unwrap()
            })
        })
        .collect();
    let answers: Vec<Reply> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (i, reply) in answers.iter().enumerate() {
        assert_eq!(reply.status, 200, "request {i}: {}", reply.body);
        let got = logits_by_label(&reply.json(), &labels);
        let own = distance(&got, &expected[i]);
        // DESIGN.md's f32 tolerance, relative.
        assert!(rel_error(&got, &expected[i]) <= 1e-5, "request {i}: logits {got:?}, expected {:?}", expected[i]);
        for (j, other) in expected.iter().enumerate() {
            if j != i && distance(&expected[i], other) > 1e-3 {
                assert!(distance(&got, other) > own, "request {i}'s answer is nearer to text {j}'s");
            }
        }
    }
    assert_eq!(server.metric("berth_requests_total"), n as f64);
    assert_eq!(server.metric("berth_inputs_total"), n as f64);
    server
}

#[test]
fn serve_answers_each_concurrent_request_with_its_own_prediction() {
    let Some(dir) = fixture_dir("a-seqcls") else { return };
    concurrent_answers_are_each_callers_own(&dir, 48, &["--max-wait-ms", "20"]);
}

#[test]
fn serve_batches_concurrent_requests_minilm() {
    let Some(dir) = headed_minilm() else { return };
    let server = concurrent_answers_are_each_callers_own(&dir, 24, &["--max-wait-ms", "5"]);
    // 24 requests arrived at once while the model was busy: they shared forward passes.
    let passes = server.metric("berth_batch_size_count");
    assert!(passes < 24.0, "{passes} forward passes for 24 requests: no batching");
}

#[test]
fn serve_lists_pairs_info_and_health() {
    let Some(dir) = fixture_dir("a-pair") else { return };
    let classifier = Classifier::load(&dir, DeviceChoice::Cpu).unwrap();
    let server = Server::start(&dir, &[]);
    let pairs = [("A man plays guitar.", "Someone makes music."), ("The cat sleeps.", "A dog barks.")];
    let reply = server.post(&json!({"inputs": [[pairs[0].0, pairs[0].1], [pairs[1].0, pairs[1].1]]}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();
    let expected = classifier.predict_pairs(&pairs).unwrap();
    assert_eq!(answer.as_array().unwrap().len(), 2);
    for (row, p) in answer.as_array().unwrap().iter().zip(&expected) {
        let labels: Vec<&str> = row.as_array().unwrap().iter().map(|r| r["label"].as_str().unwrap()).collect();
        let scores: Vec<f64> = row.as_array().unwrap().iter().map(|r| r["score"].as_f64().unwrap()).collect();
        assert_eq!(labels, p.scores.iter().map(|s| s.label.as_str()).collect::<Vec<_>>());
        let want: Vec<f64> = p.scores.iter().map(|s| s.score).collect();
        assert!(rel_error(&scores, &want) <= 1e-5, "{scores:?} against {want:?}");
    }
    // A list of two strings is two texts, answered as a list of two.
    let reply = server.post(&json!({"inputs": ["one text", "another text"]}));
    assert_eq!(reply.json().as_array().unwrap().len(), 2);
    assert!(reply.json()[0].is_array());

    assert_eq!(server.get("/health").json()["status"], "ok");
    let info = server.get("/info").json();
    assert_eq!(info["labels"].as_array().unwrap().len(), classifier.labels().len());
    assert_eq!(info["model_kind"], "single-label");
    assert_eq!(info["device"], "cpu");
    assert_eq!(info["max_length"].as_u64().unwrap() as usize, classifier.max_length());
    let metrics = server.get("/metrics");
    assert!(metrics.header("content-type").unwrap().starts_with("text/plain"));
    for name in ["berth_request_duration_seconds_bucket", "berth_batch_size_bucket", "berth_queue_depth", "berth_requests_total"] {
        assert!(metrics.body.contains(name), "{name} missing from /metrics");
    }
    assert_eq!(server.metric("berth_request_duration_seconds_count"), 2.0);
}

#[test]
fn serve_tags_words_for_a_token_model() {
    let Some(dir) = fixture_dir("a-tokcls") else { return };
    let classifier = Classifier::load(&dir, DeviceChoice::Cpu).unwrap();
    let server = Server::start(&dir, &[]);
    let sentence = "EU rejects German call to boycott British lamb .";
    let reply = server.post(&json!({"inputs": sentence}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let words: Vec<String> = sentence.split(' ').map(String::from).collect();
    let expected = serde_json::to_value(&classifier.predict_words(&[words]).unwrap()[0]).unwrap();
    assert_eq!(reply.json(), expected);
    assert_eq!(reply.json()["tags"].as_array().unwrap().len(), 9);
    let reply = server.post(&json!({"inputs": [["a", "pair"]]}));
    assert_eq!(reply.status, 400);
    assert!(reply.json()["error"].as_str().unwrap().contains("tags single texts"));
}

#[test]
fn serve_refuses_malformed_and_oversized_bodies() {
    let Some(dir) = fixture_dir("a-seqcls") else { return };
    let server = Server::start(&dir, &["--max-body-bytes", "2000", "--max-client-batch-size", "4", "--max-input-chars", "50"]);
    let raw = |body: &str| request(server.address, "POST", "/predict", body.as_bytes()).unwrap();
    let cases: [(&str, u16, &str); 9] = [
        (r#"{"inputs": "good"#, 400, "malformed JSON"),
        ("", 400, "malformed JSON"),
        (r#"{"inputs": []}"#, 400, "empty list"),
        (r#"{"inputs": ""}"#, 400, "inputs is empty"),
        (r#"{"inputs": 12}"#, 400, "found a number"),
        (r#"{"inputs": ["fine", {"text": "x"}]}"#, 400, "inputs[1]"),
        (r#"{"text": "fine"}"#, 400, "unknown field `text`"),
        (r#"{"inputs": ["a", "b", "c", "d", "e"]}"#, 413, "holds 5 examples"),
        (r#"{"inputs": "this text is comfortably longer than the fifty character limit"}"#, 413, "characters"),
    ];
    for (body, status, message) in cases {
        let reply = raw(body);
        assert_eq!(reply.status, status, "{body}: {}", reply.body);
        let error = reply.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains(message), "{body}: `{error}` should mention `{message}`");
    }
    let big = json!({"inputs": vec!["word"; 1000]}).to_string();
    let reply = raw(&big);
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert!(reply.json()["error"].as_str().unwrap().contains("2000 bytes"));
    assert_eq!(request(server.address, "GET", "/predict", b"").unwrap().status, 405);
    assert_eq!(server.get("/nowhere").status, 404);
    // Still serving, and every refusal was counted.
    assert_eq!(server.post(&json!({"inputs": "still fine"})).status, 200);
    assert_eq!(server.metric("berth_request_errors_total{status=\"400\"}"), 7.0);
    assert_eq!(server.metric("berth_request_errors_total{status=\"413\"}"), 3.0);
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

/// A long text, about 120 word pieces.
pub(crate) fn long_text(i: usize) -> String {
    format!("{i} ") + &["the plot meanders while the actors seem lost in a script that never decides what it wants to be"; 6].join(" ")
}

#[test]
fn serve_queue_overflow_gets_503_and_the_server_survives() {
    let Some(dir) = headed_minilm() else { return };
    let server = Server::start(&dir, &["--max-queue", "2", "--max-batch-size", "1", "--max-wait-ms", "0"]);
    let address = server.address;
    let warm = server.post(&json!({"inputs": long_text(0)}));
    assert_eq!(warm.status, 200);
    let rss_before = rss_kib(server.pid());
    let mut statuses = Vec::new();
    for round in 0..3 {
        let start = Arc::new(std::sync::Barrier::new(32));
        let handles: Vec<_> = (0..32)
            .map(|i| {
                let body = json!({"inputs": [long_text(round * 100 + i), long_text(i + 1)]}).to_string();
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    request(address, "POST", "/predict", body.as_bytes()).unwrap()
                })
            })
            .collect();
        for h in handles {
            let reply = h.join().unwrap();
            if reply.status == 503 {
                assert_eq!(reply.header("retry-after"), Some("1"), "503 without Retry-After");
                assert!(reply.json()["error"].as_str().unwrap().contains("queue is full"));
            } else {
                assert_eq!(reply.status, 200, "{}", reply.body);
                assert_eq!(reply.json().as_array().unwrap().len(), 2);
            }
            statuses.push(reply.status);
        }
    }
    let refused = statuses.iter().filter(|&&s| s == 503).count();
    assert!(refused > 0, "96 requests against a queue of 2 and none refused");
    assert!(refused < statuses.len(), "every request refused");
    assert_eq!(server.metric("berth_request_errors_total{status=\"503\"}"), refused as f64);
    // Refused requests hold nothing: memory stays within a small margin.
    let growth_mib = rss_kib(server.pid()).saturating_sub(rss_before) / 1024;
    assert!(growth_mib < 200, "RSS grew by {growth_mib} MiB");
    assert_eq!(server.get("/health").status, 200);
    assert_eq!(server.metric("berth_queue_depth"), 0.0);
}
