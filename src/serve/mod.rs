//! `berth serve`: a trained classifier behind an HTTP JSON API (axum on
//! tokio), with dynamic batching.
//!
//! - `POST /predict`, and `POST /` (the model's task, as in TEI, where the
//!   Hugging Face client posts): text-embeddings-inference's classification
//!   API ([`api`]).
//! - `GET /health`, `GET /info`, `GET /metrics` (Prometheus text, [`metrics`]).
//!
//! Handlers parse, check and tokenise a request, then queue it; one batcher
//! thread ([`batcher`]) owns the forward passes, so the tokio workers never
//! block on the model. On SIGTERM (or Ctrl-C) the server drains: it keeps
//! answering, `/health` and new predictions with 503, until the requests in
//! flight are answered, then stops accepting connections and returns.
//!
//! Every request must arrive within `--request-timeout-ms`: a connection that
//! has not sent a whole request head by then (also an idle keep-alive one)
//! is closed, and a body that has not arrived by then gets 408.

pub mod api;
pub mod batcher;
pub mod metrics;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot, watch};

use crate::error::{Error, Result};
use crate::infer::explain::windows_explained;
use crate::infer::{Classifier, ClassifierOptions, ModelKind};
use crate::model::explain::{ExplainMethod, ExplainOptions};
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
    /// Longest a request may take, queueing included; also the most a
    /// client may take to send a request head or body.
    pub request_timeout: Duration,
    /// What `"explain"` may cost.
    pub explain: ExplainLimits,
}

/// The bounds on `"explain"`: an explanation costs about `steps` forward
/// and backward passes per input, so it runs beside the batcher, in its own
/// small thread pool, a few at a time, never in the batcher's queue.
#[derive(Clone, Debug)]
pub struct ExplainLimits {
    /// Requests explaining at once (0: `"explain"` is refused); one more
    /// gets 503 with Retry-After.
    pub concurrency: usize,
    /// Most integration steps a request may ask for (413 beyond).
    pub max_steps: usize,
    /// Steps when a request does not say.
    pub default_steps: usize,
    /// Most explanations one request may ask for: texts, chunked windows explained, or entities (413 beyond).
    pub max_inputs: usize,
    /// Threads of the explanations' pool (the batcher keeps the rest).
    pub threads: usize,
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
    /// Prediction requests inside a handler, whatever their fate: draining
    /// ends when none is left.
    in_flight: InFlight,
    /// Requests explaining now: at most `--explain-concurrency`.
    explaining: Arc<tokio::sync::Semaphore>,
    /// Where explanations compute, apart from the global pool the batcher's
    /// forward passes use.
    explain_pool: Arc<rayon::ThreadPool>,
}

/// Counts prediction requests being handled, and wakes whoever waits for none.
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

/// One request in flight, until dropped.
struct Entered<'a>(&'a InFlight);

impl InFlight {
    fn enter(&self) -> Entered<'_> {
        self.count.fetch_add(1, Ordering::SeqCst);
        Entered(self)
    }

    fn now(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Resolves once no request is in flight.
    async fn none_left(&self) {
        loop {
            // Registered before the check, so a request leaving in between still wakes it.
            let idle = self.idle.notified();
            if self.now() == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
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
    let explain_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.explain.threads.max(1))
        .thread_name(|i| format!("berth-explain-{i}"))
        .build()
        .map_err(|e| Error::InvalidArgument(format!("cannot start the explanations' threads: {e}")))?;
    let explaining = Arc::new(tokio::sync::Semaphore::new(options.explain.concurrency));
    let app = Arc::new(App {
        classifier: classifier.clone(),
        queue: queue.clone(),
        metrics,
        options,
        draining: AtomicBool::new(false),
        admitted,
        in_flight: InFlight::default(),
        explaining,
        explain_pool: Arc::new(explain_pool),
    });
    let router = Router::new()
        // TEI routes `POST /` to the model's task; the Hugging Face client posts there.
        .route("/", post(predict))
        .route("/predict", post(predict))
        .route("/health", get(health))
        .route("/info", get(info))
        .route("/metrics", get(metrics_text))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint (POST / or /predict, GET /health, /info, /metrics)")
        })
        .with_state(app.clone());
    eprintln!(
        "berth serve: {} ({:?}, {} labels) on {}; listening on http://{address}",
        app.options.model.display(),
        classifier.kind(),
        classifier.labels().len(),
        classifier.device_name()
    );
    let drained = {
        let app = app.clone();
        async move {
            stop_signal().await;
            app.draining.store(true, Ordering::SeqCst);
            eprintln!("berth serve: draining: answering new requests with 503; finishing the {} in flight", app.in_flight.now());
            app.in_flight.none_left().await;
        }
    };
    accept_until(listener, router, app.options.request_timeout, drained).await;
    // Every connection has closed; let the batcher finish what is queued (nothing, normally) and stop.
    queue.close();
    let joined = tokio::task::spawn_blocking(move || batcher.join()).await;
    if !matches!(joined, Ok(Ok(()))) {
        return Err(Error::InvalidArgument("the batcher thread panicked".into()));
    }
    eprintln!("berth serve: drained; exiting");
    Ok(())
}

/// Serves connections until `stop` resolves, then stops accepting, lets each
/// connection finish the request it is on (idle ones close at once) and
/// returns when all have closed. A connection that does not send a whole
/// request head within `head_timeout` is closed, so a client trickling its
/// headers holds neither a connection nor the shutdown for longer.
async fn accept_until(listener: tokio::net::TcpListener, router: Router, head_timeout: Duration, stop: impl Future<Output = ()>) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    // Each connection holds a receiver: `closed()` resolves when all are gone.
    let (stopping, stopped) = watch::channel(false);
    let mut stop = std::pin::pin!(stop);
    loop {
        let stream = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: the next accept may work.
                    eprintln!("berth serve: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(router.clone());
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(head_timeout);
            let mut connection = std::pin::pin!(builder.serve_connection(TokioIo::new(stream), service));
            let mut shutting_down = false;
            loop {
                tokio::select! {
                    // A client that hung up or timed out: nothing to report.
                    _ = connection.as_mut() => break,
                    _ = stopped.wait_for(|s| *s), if !shutting_down => {
                        shutting_down = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    drop(stopped);
    stopping.closed().await;
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

/// A route that exists, asked with the wrong method: 405 with a JSON body
/// (the `Allow` header is added by the router).
async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    let path = uri.path();
    let allowed = if matches!(path, "/" | "/predict") { "POST" } else { "GET" };
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("{method} {path} is not served; use {allowed} {path}"))
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
        "explain_concurrency": o.explain.concurrency,
        "explain_max_steps": o.explain.max_steps,
        "explain_max_inputs": o.explain.max_inputs,
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn metrics_text(State(app): State<Arc<App>>) -> Response {
    let (jobs, inputs) = app.queue.depth();
    let mut response = app.metrics.render(jobs, inputs, app.in_flight.now()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

async fn predict(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let _in_flight = app.in_flight.enter();
    let response = match answer(&app, &headers, body, started).await {
        Ok(value) => axum::Json(value).into_response(),
        Err(e) => e.into_response(),
    };
    app.metrics.record_request(response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

fn queue_full() -> ApiError {
    ApiError { retry_after_s: Some(1), ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "the queue is full; retry later") }
}

fn shutting_down() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unhealthy", "the server is shutting down")
}

async fn answer(app: &App, headers: &HeaderMap, body: Body, started: Instant) -> std::result::Result<Value, ApiError> {
    // Checked after the request counts as in flight, so draining either
    // waits for this one or this one sees the flag.
    if app.draining.load(Ordering::SeqCst) {
        return Err(shutting_down());
    }
    let limit = app.options.max_body_bytes;
    let too_large = |what: String| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "validation", format!("{what} the limit of {limit} bytes"));
    // A declared length over the limit is refused before a byte of the body is read.
    if let Some(declared) = headers.get(header::CONTENT_LENGTH) {
        match declared.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()) {
            Some(n) if n > limit as u64 => return Err(too_large(format!("the body's Content-Length, {n} bytes, is over"))),
            Some(_) => {}
            None => return Err(ApiError::new(StatusCode::BAD_REQUEST, "validation", "the Content-Length header is not a number")),
        }
    }
    // Refused before the body is read, so a flood of clients costs no memory.
    let _admitted = app.admitted.try_acquire().map_err(|_| queue_full())?;
    let arriving = app.queue.arriving();
    let timeout = app.options.request_timeout;
    let deadline = tokio::time::Instant::from(started + timeout);
    let bytes = match tokio::time::timeout_at(deadline, axum::body::to_bytes(body, limit)).await {
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!("the body did not arrive within {} ms", timeout.as_millis()),
            ));
        }
        Ok(read) => read.map_err(|e| {
            if e.into_inner().downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                too_large("the body is over".into())
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "validation", "the body could not be read")
            }
        })?,
    };
    let request = api::parse_request(&bytes, &app.options.request)?;
    api::check_for_kind(&request, app.classifier.kind())?;
    let n = request.examples.len();
    // Checked and admitted before any work is queued, so a refused
    // explanation costs nothing.
    let explaining = match &request.explain {
        Some(asked) => Some(admit_explanation(app, &request, asked)?),
        None => None,
    };
    let (input, tokens) = prepare(app, &request).await?;
    // What the explanation reads, copied before the job takes the input.
    let explain_work = match (&explaining, &input) {
        (None, _) => None,
        (Some(_), JobInput::Texts(encoded)) => Some(ExplainWork::Texts(encoded.clone())),
        (Some(_), JobInput::Documents { windows, spans, aggregate }) => {
            // Under the mean every window is explained: each counts against the limit.
            let passes: usize = spans.iter().map(|&(_, n)| windows_explained(*aggregate, n)).sum();
            check_explanation_count(app, passes, "windows of the documents (the mean explains every window)")?;
            let documents = spans.iter().map(|&(first, n)| windows[first..first + n].to_vec()).collect();
            Some(ExplainWork::Documents { documents, aggregate: *aggregate })
        }
        (Some(_), JobInput::Words(sentences)) => Some(ExplainWork::Words(sentences.clone())),
    };
    let (reply, answer) = oneshot::channel();
    match app.queue.push(Job { input, tokens, reply }) {
        Ok(()) => {}
        Err(Refused::Full) => return Err(queue_full()),
        Err(Refused::Closed) => return Err(shutting_down()),
    }
    drop(arriving);
    let output = match tokio::time::timeout_at(deadline, answer).await {
        Err(_) => {
            return Err(ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", format!("no answer within {} ms", timeout.as_millis())));
        }
        Ok(Err(_)) => return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "backend", "the batcher stopped")),
        Ok(Ok(Err(message))) => return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "backend", message)),
        Ok(Ok(Ok(output))) => output,
    };
    app.metrics.inputs.fetch_add(n as u64, Ordering::Relaxed);
    if let (Some((permit, options)), Some(work)) = (explaining, explain_work) {
        let labels = app.classifier.labels();
        let answer = match (work, &output) {
            (ExplainWork::Texts(encoded), JobOutput::Texts(p)) => {
                let explanations = explain_off_the_batcher(app, permit, deadline, move |classifier| {
                    encoded.iter().map(|e| classifier.explain_encoded(e, &options)).collect::<Result<Vec<_>>>()
                })
                .await?;
                api::explained_answer(p, &explanations, labels, &request)
            }
            (ExplainWork::Documents { documents, aggregate }, JobOutput::Texts(p)) => {
                let explanations = explain_off_the_batcher(app, permit, deadline, move |classifier| {
                    documents.iter().map(|w| classifier.explain_windows(w, aggregate, &options)).collect::<Result<Vec<_>>>()
                })
                .await?;
                api::explained_answer(p, &explanations, labels, &request)
            }
            (ExplainWork::Words(sentences), JobOutput::Words(p)) => {
                // Each predicted entity is one explanation, known only now.
                let entities: usize = p.iter().map(|w| w.entities.len()).sum();
                check_explanation_count(app, entities, "predicted entities")?;
                let predictions = p.clone();
                let explanations = explain_off_the_batcher(app, permit, deadline, move |classifier| {
                    sentences
                        .iter()
                        .zip(&predictions)
                        .map(|(words, prediction)| classifier.explain_predicted_entities(words, prediction, &options))
                        .collect::<Result<Vec<_>>>()
                })
                .await?;
                api::explained_word_answer(p, &explanations, &request)
            }
            _ => return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "backend", "the batcher answered another kind of job")),
        };
        app.metrics.explanations.fetch_add(n as u64, Ordering::Relaxed);
        return Ok(answer);
    }
    Ok(match output {
        JobOutput::Texts(p) => api::text_answer(&p, app.classifier.labels(), &request),
        JobOutput::Words(p) => api::word_answer(&p, &request),
    })
}

/// What an explanation reads: the texts' encodings, each document's
/// windows with the aggregate that combines them, or a token model's sentences.
enum ExplainWork {
    Texts(Vec<crate::data::Encoded>),
    Documents { documents: Vec<Vec<crate::data::Encoded>>, aggregate: crate::model::settings::Aggregate },
    Words(Vec<Vec<String>>),
}

/// 413 when a request asks for more explanations than `--explain-max-inputs`:
/// `what` names what is counted (an input, a window, an entity each cost one).
fn check_explanation_count(app: &App, count: usize, what: &str) -> std::result::Result<(), ApiError> {
    let limit = app.options.explain.max_inputs;
    if count > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "validation",
            format!("`explain` would explain {count} {what}; the limit is {limit} explanations per request (--explain-max-inputs)"),
        ));
    }
    Ok(())
}

/// Checks `"explain"` against the server's limits and takes one of the
/// explanation slots, or refuses: 400 when explanations are off or the
/// target is unknown, 413 over a limit, 503 when every slot is taken.
fn admit_explanation(
    app: &App,
    request: &PredictRequest,
    asked: &api::ExplainRequest,
) -> std::result::Result<(tokio::sync::OwnedSemaphorePermit, ExplainOptions), ApiError> {
    let limits = &app.options.explain;
    let invalid = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "validation", m);
    let too_large = |m: String| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "validation", m);
    if limits.concurrency == 0 {
        return Err(invalid("explanations are off on this server (--explain-concurrency 0)".into()));
    }
    let steps = match asked.method {
        ExplainMethod::Ig => asked.steps.unwrap_or(limits.default_steps),
        ExplainMethod::GradXInput => 1,
    };
    if steps > limits.max_steps {
        return Err(too_large(format!("`explain.steps` is {steps}; the limit is {} (--explain-max-steps)", limits.max_steps)));
    }
    if request.examples.len() > limits.max_inputs {
        return Err(too_large(format!(
            "`inputs` holds {} examples to explain; the limit is {} per request with `explain` (--explain-max-inputs)",
            request.examples.len(),
            limits.max_inputs
        )));
    }
    // The rule's own least number of steps (2 for the trapezoid); gradient × input has no rule.
    if asked.method == ExplainMethod::Ig {
        asked.rule.nodes(steps).map_err(|e| invalid(format!("`explain`: {}", e.to_string().replace("--steps", "steps"))))?;
    }
    let target = match &asked.target {
        None => None,
        Some(name) => Some(app.classifier.label_index(name).map_err(|e| invalid(format!("`explain.target`: {e}")))?),
    };
    let permit = app.explaining.clone().try_acquire_owned().map_err(|_| ApiError {
        retry_after_s: Some(1),
        ..ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!("{} explanation(s) are running, the most at once (--explain-concurrency); retry later", limits.concurrency),
        )
    })?;
    let options =
        ExplainOptions { method: asked.method, steps, baseline: asked.baseline, rule: asked.rule, target, ..ExplainOptions::default() };
    Ok((permit, options))
}

/// Runs `explain` in the explanations' pool, holding `permit` until the
/// work ends (even past the deadline: the slot stays taken while the
/// threads are busy, so the bound on concurrent explanations holds).
async fn explain_off_the_batcher<T: Send + 'static>(
    app: &App,
    permit: tokio::sync::OwnedSemaphorePermit,
    deadline: tokio::time::Instant,
    explain: impl FnOnce(&Classifier) -> Result<T> + Send + 'static,
) -> std::result::Result<T, ApiError> {
    let (classifier, pool) = (app.classifier.clone(), app.explain_pool.clone());
    let work = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        pool.install(|| explain(&classifier))
    });
    match tokio::time::timeout_at(deadline, work).await {
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!("the explanation did not finish within {} ms", app.options.request_timeout.as_millis()),
        )),
        Ok(Err(e)) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "backend", format!("the explanation failed: {e}"))),
        Ok(Ok(Err(e))) => Err(ApiError::new(StatusCode::BAD_REQUEST, "validation", e.to_string())),
        Ok(Ok(Ok(explanations))) => Ok(explanations),
    }
}

/// Characters above which tokenising moves off the async workers.
const INLINE_TOKENIZE_CHARS: usize = 4096;

/// Tokenises a request's examples (or splits a token model's texts into
/// words), with each example's token count for the batcher.
async fn prepare(app: &App, request: &PredictRequest) -> std::result::Result<(JobInput, Vec<usize>), ApiError> {
    let chars: usize = request
        .examples
        .iter()
        .map(|e| match e {
            Example::Text(t) => t.len(),
            Example::Pair(a, b) => a.len() + b.len(),
        })
        .sum();
    let (classifier, request) = (app.classifier.clone(), request.clone());
    let work = move || tokenize(&classifier, &request);
    let prepared = if chars <= INLINE_TOKENIZE_CHARS {
        work()
    } else {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "tokenizer", format!("tokenising failed: {e}")))?
    };
    prepared
}

fn tokenize(classifier: &Classifier, request: &PredictRequest) -> std::result::Result<(JobInput, Vec<usize>), ApiError> {
    let tokenizer_error = |e: Error| ApiError::new(StatusCode::BAD_REQUEST, "tokenizer", e.to_string());
    let examples = &request.examples;
    if classifier.kind() == ModelKind::TokenClassification {
        // Words are read in overlapping windows, so nothing is truncated and
        // `truncate` / `truncation_direction` change nothing.
        let mut sentences = Vec::with_capacity(examples.len());
        let mut tokens = Vec::with_capacity(examples.len());
        for (i, e) in examples.iter().enumerate() {
            let Example::Text(text) = e else {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "validation",
                    format!("{} is a pair, but this token-classification model tags single texts", request.example_name(i)),
                ));
            };
            tokens.push(classifier.encode(text, None).map_err(tokenizer_error)?.ids.len());
            sentences.push(text.split_whitespace().map(str::to_owned).collect());
        }
        return Ok((JobInput::Words(sentences), tokens));
    }
    fn text_of(e: &Example) -> (&str, Option<&str>) {
        match e {
            Example::Text(t) => (t.as_str(), None),
            Example::Pair(a, b) => (a.as_str(), Some(b.as_str())),
        }
    }
    // The request's `long_text`, else the model's saved setting.
    if request.chunk.unwrap_or(classifier.long_text().is_some()) {
        let chunks = classifier.chunk_settings();
        let (mut windows, mut spans) = (Vec::new(), Vec::with_capacity(examples.len()));
        for (i, e) in examples.iter().enumerate() {
            let (text, pair) = text_of(e);
            let cut = classifier
                .encode_windows(text, pair, chunks)
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "validation", format!("{}: {e}", request.example_name(i))))?;
            spans.push((windows.len(), cut.windows.len()));
            windows.extend(cut.windows);
        }
        let tokens = windows.iter().map(|e| e.ids.len()).collect();
        return Ok((JobInput::Documents { windows, spans, aggregate: chunks.aggregate }, tokens));
    }
    let mut encoded = Vec::with_capacity(examples.len());
    for (i, e) in examples.iter().enumerate() {
        let (text, pair) = text_of(e);
        let truncation = request.truncation.unwrap_or(classifier.truncation_direction());
        let e = classifier.encode_with(text, pair, truncation).map_err(tokenizer_error)?;
        // Only an untruncated encoding can be over the length (`"truncate": false`).
        if e.ids.len() > classifier.max_length() {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "validation",
                format!(
                    "{} has {} tokens; the limit is {} (--max-length); send \"truncate\": true to cut it",
                    request.example_name(i),
                    e.ids.len(),
                    classifier.max_length()
                ),
            ));
        }
        encoded.push(e);
    }
    let tokens = encoded.iter().map(|e| e.ids.len()).collect();
    Ok((JobInput::Texts(encoded), tokens))
}
