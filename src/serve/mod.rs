//! `berth serve`: a trained classifier behind an HTTP JSON API (axum on
//! tokio), with dynamic batching.
//!
//! - `POST /predict`: text-embeddings-inference's classification API ([`api`]).
//! - `GET /health`, `GET /info`, `GET /metrics` (Prometheus text, [`metrics`]).
//!
//! Handlers parse, check and tokenise a request, then queue it; one batcher
//! thread ([`batcher`]) owns the forward passes, so the tokio workers never
//! block on the model. SIGTERM (or Ctrl-C) stops accepting connections,
//! lets the requests in flight finish, then returns.

pub mod api;
pub mod batcher;
pub mod metrics;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::infer::{Classifier, ClassifierOptions, ModelKind};
use api::{Example, PredictRequest, RequestError, RequestLimits};
use batcher::{BatchLimits, Job, JobInput, JobOutput, PaddingCost, Queue, Refused};
use metrics::Metrics;

/// Everything `berth serve` is configured with.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The model folder.
    pub model: PathBuf,
    /// The address to listen on.
    pub host: String,
    /// The port (0: any free port; the chosen one is printed).
    pub port: u16,
    /// Device, precision and maximum length.
    pub classifier: ClassifierOptions,
    /// How the batcher groups requests.
    pub batch: BatchLimits,
    /// Examples per request and characters per text.
    pub request: RequestLimits,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Longest a request may take, queueing included.
    pub request_timeout: Duration,
}

struct App {
    classifier: Arc<Classifier>,
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
    options: ServeOptions,
    draining: AtomicBool,
    /// `/predict` requests being handled: at most what the queue and one
    /// running group can hold, so memory stays bounded (each holds at most
    /// `max_body_bytes`) however many clients connect.
    admitted: tokio::sync::Semaphore,
}

/// A refused or failed request: its status and a message in TEI's error shape.
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    retry_after_s: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, kind, message: message.into(), retry_after_s: None }
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> ApiError {
        match e {
            RequestError::Invalid(m) => ApiError::new(StatusCode::BAD_REQUEST, "validation", m),
            RequestError::TooLarge(m) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "validation", m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(json!({"error": self.message, "error_type": self.kind}))).into_response();
        if let Some(s) = self.retry_after_s {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

/// Loads the model, binds, and serves until SIGTERM or Ctrl-C.
pub fn run(options: ServeOptions) -> Result<()> {
    let classifier = Arc::new(Classifier::load_with(&options.model, &options.classifier)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("berth-http")
        .build()
        .map_err(|e| Error::InvalidArgument(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(serve(options, classifier))
}

async fn serve(options: ServeOptions, classifier: Arc<Classifier>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind((options.host.as_str(), options.port))
        .await
        .map_err(|e| Error::InvalidArgument(format!("cannot listen on {}:{}: {e}", options.host, options.port)))?;
    let address: SocketAddr = listener.local_addr().map_err(|e| Error::InvalidArgument(format!("listener address: {e}")))?;
    // Grouping weighs padding by what it costs this model's device.
    let padding = if classifier.skips_padding() { PaddingCost::Skipped } else { PaddingCost::Full };
    let queue = Arc::new(Queue::new(options.batch.clone(), padding));
    let metrics = Arc::new(Metrics::default());
    let batcher = {
        let (queue, classifier, metrics) = (queue.clone(), classifier.clone(), metrics.clone());
        std::thread::Builder::new()
            .name("berth-batcher".into())
            .spawn(move || batcher::run(queue, classifier, metrics))
            .map_err(|e| Error::InvalidArgument(format!("cannot start the batcher thread: {e}")))?
    };
    let admitted = tokio::sync::Semaphore::new(options.batch.max_queue + options.batch.max_batch_size);
    let app = Arc::new(App {
        classifier: classifier.clone(),
        queue: queue.clone(),
        metrics,
        options,
        draining: AtomicBool::new(false),
        admitted,
    });
    let router = Router::new()
        .route("/predict", post(predict))
        .route("/health", get(health))
        .route("/info", get(info))
        .route("/metrics", get(metrics_text))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint (POST /predict, GET /health, /info, /metrics)")
        })
        .with_state(app.clone());
    eprintln!(
        "berth serve: {} ({:?}, {} labels) on {}; listening on http://{address}",
        app.options.model.display(),
        classifier.kind(),
        classifier.labels().len(),
        classifier.device_name()
    );
    let shutdown = {
        let app = app.clone();
        async move {
            stop_signal().await;
            app.draining.store(true, Ordering::SeqCst);
            eprintln!("berth serve: stopping: no new connections; finishing the requests in flight");
        }
    };
    let served = axum::serve(listener, router).with_graceful_shutdown(shutdown).await;
    // Every handler has returned; let the batcher finish what is queued (nothing, normally) and stop.
    queue.close();
    let joined = tokio::task::spawn_blocking(move || batcher.join()).await;
    served.map_err(|e| Error::InvalidArgument(format!("server: {e}")))?;
    if !matches!(joined, Ok(Ok(()))) {
        return Err(Error::InvalidArgument("the batcher thread panicked".into()));
    }
    eprintln!("berth serve: drained; exiting");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                eprintln!("berth serve: cannot watch SIGTERM ({e}); stop with Ctrl-C");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn health(State(app): State<Arc<App>>) -> Response {
    if app.draining.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"status": "draining"}))).into_response()
    } else {
        axum::Json(json!({"status": "ok"})).into_response()
    }
}

async fn info(State(app): State<Arc<App>>) -> axum::Json<Value> {
    let o = &app.options;
    let c = &app.classifier;
    let model_id = o.model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| o.model.display().to_string());
    axum::Json(json!({
        "model_id": model_id,
        "model_kind": c.kind(),
        "labels": c.labels(),
        "device": c.device_name(),
        "max_length": c.max_length(),
        "max_batch_size": o.batch.max_batch_size,
        "max_batch_tokens": o.batch.max_batch_tokens,
        "max_wait_ms": o.batch.max_wait.as_millis() as u64,
        "max_queue": o.batch.max_queue,
        "max_client_batch_size": o.request.max_inputs,
        "max_input_chars": o.request.max_input_chars,
        "max_body_bytes": o.max_body_bytes,
        "request_timeout_ms": o.request_timeout.as_millis() as u64,
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn metrics_text(State(app): State<Arc<App>>) -> Response {
    let (jobs, inputs) = app.queue.depth();
    let mut response = app.metrics.render(jobs, inputs).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

async fn predict(State(app): State<Arc<App>>, body: Body) -> Response {
    let started = Instant::now();
    let response = match answer(&app, body, started).await {
        Ok(value) => axum::Json(value).into_response(),
        Err(e) => e.into_response(),
    };
    app.metrics.record_request(response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

fn queue_full() -> ApiError {
    ApiError { retry_after_s: Some(1), ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "the queue is full; retry later") }
}

async fn answer(app: &App, body: Body, started: Instant) -> std::result::Result<Value, ApiError> {
    // Refused before the body is read, so a flood of clients costs no memory.
    let _admitted = app.admitted.try_acquire().map_err(|_| queue_full())?;
    let arriving = app.queue.arriving();
    let limit = app.options.max_body_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let over = e.into_inner().downcast_ref::<http_body_util::LengthLimitError>().is_some();
        if over {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "validation", format!("the body is over the limit of {limit} bytes"))
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "validation", "the body could not be read")
        }
    })?;
    let request = api::parse_request(&bytes, &app.options.request)?;
    let n = request.examples.len();
    let (input, tokens) = prepare(app, &request).await?;
    let (reply, answer) = oneshot::channel();
    match app.queue.push(Job { input, tokens, reply }) {
        Ok(()) => {}
        Err(Refused::Full) => return Err(queue_full()),
        Err(Refused::Closed) => {
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "the server is shutting down"));
        }
    }
    drop(arriving);
    let timeout = app.options.request_timeout;
    let output = match tokio::time::timeout_at((started + timeout).into(), answer).await {
        Err(_) => {
            return Err(ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", format!("no answer within {} ms", timeout.as_millis())));
        }
        Ok(Err(_)) => return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "backend", "the batcher stopped")),
        Ok(Ok(Err(message))) => return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "backend", message)),
        Ok(Ok(Ok(output))) => output,
    };
    app.metrics.inputs.fetch_add(n as u64, Ordering::Relaxed);
    Ok(match output {
        JobOutput::Texts(p) => api::text_answer(&p, app.classifier.labels(), &request),
        JobOutput::Words(p) => api::word_answer(&p, &request),
    })
}

/// Characters above which tokenising moves off the async workers.
const INLINE_TOKENIZE_CHARS: usize = 4096;

/// Tokenises a request's examples (or splits a token model's texts into
/// words), with each example's token count for the batcher.
async fn prepare(app: &App, request: &PredictRequest) -> std::result::Result<(JobInput, Vec<usize>), ApiError> {
    let classifier = app.classifier.clone();
    let examples = request.examples.clone();
    let chars: usize = examples
        .iter()
        .map(|e| match e {
            Example::Text(t) => t.len(),
            Example::Pair(a, b) => a.len() + b.len(),
        })
        .sum();
    let work = move || tokenize(&classifier, examples);
    let prepared = if chars <= INLINE_TOKENIZE_CHARS {
        work()
    } else {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "tokenizer", format!("tokenising failed: {e}")))?
    };
    prepared
}

fn tokenize(classifier: &Classifier, examples: Vec<Example>) -> std::result::Result<(JobInput, Vec<usize>), ApiError> {
    let tokenizer_error = |e: Error| ApiError::new(StatusCode::BAD_REQUEST, "tokenizer", e.to_string());
    if classifier.kind() == ModelKind::TokenClassification {
        let mut sentences = Vec::with_capacity(examples.len());
        let mut tokens = Vec::with_capacity(examples.len());
        for (i, e) in examples.into_iter().enumerate() {
            let Example::Text(text) = e else {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "validation",
                    format!("inputs[{i}] is a pair, but this token-classification model tags single texts"),
                ));
            };
            tokens.push(classifier.encode(&text, None).map_err(tokenizer_error)?.ids.len());
            sentences.push(text.split_whitespace().map(str::to_owned).collect());
        }
        return Ok((JobInput::Words(sentences), tokens));
    }
    let encoded = examples
        .iter()
        .map(|e| match e {
            Example::Text(t) => classifier.encode(t, None),
            Example::Pair(a, b) => classifier.encode(a, Some(b)),
        })
        .collect::<Result<Vec<_>>>()
        .map_err(tokenizer_error)?;
    let tokens = encoded.iter().map(|e| e.ids.len()).collect();
    Ok((JobInput::Texts(encoded), tokens))
}
