//! The server's counters and histograms, rendered in Prometheus' text
//! exposition format for `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A histogram with fixed upper bounds, as Prometheus defines them: each
/// bucket counts the observations at or below its bound.
pub struct Histogram {
    bounds: &'static [f64],
    state: Mutex<HistogramState>,
}

#[derive(Default)]
struct HistogramState {
    /// Per bucket, not cumulative; one more than `bounds` for +Inf.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// An empty histogram with the given ascending upper bounds.
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, state: Mutex::new(HistogramState { counts: vec![0; bounds.len() + 1], sum: 0.0, count: 0 }) }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        let bucket = self.bounds.iter().position(|&b| value <= b).unwrap_or(self.bounds.len());
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.counts[bucket] += 1;
        s.sum += value;
        s.count += 1;
    }

    /// How many observations so far.
    pub fn count(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).count
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&s.counts) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", s.count);
        let _ = writeln!(out, "{name}_sum {}", s.sum);
        let _ = writeln!(out, "{name}_count {}", s.count);
    }
}

/// Seconds, from 1 ms to 30 s.
const LATENCY_BOUNDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Examples per forward pass.
const BATCH_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Everything `/metrics` reports.
pub struct Metrics {
    /// `POST /predict` requests answered, whatever the status.
    pub requests: AtomicU64,
    /// Examples (texts, pairs or sentences) predicted.
    pub inputs: AtomicU64,
    /// Inputs explained (`"explain"`).
    pub explanations: AtomicU64,
    errors: Mutex<BTreeMap<u16, u64>>,
    /// Seconds from a request's arrival to its answer.
    pub latency: Histogram,
    /// Examples per forward pass.
    pub batch_size: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: AtomicU64::new(0),
            inputs: AtomicU64::new(0),
            explanations: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            latency: Histogram::new(LATENCY_BOUNDS),
            batch_size: Histogram::new(BATCH_BOUNDS),
        }
    }
}

impl Metrics {
    /// Records one answered `/predict` request: its status and how long it took.
    pub fn record_request(&self, status: u16, seconds: f64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.latency.observe(seconds);
        if status >= 400 {
            *self.errors.lock().unwrap_or_else(|e| e.into_inner()).entry(status).or_default() += 1;
        }
    }

    /// The text `/metrics` answers; `queue_depth`, `queued_inputs` and
    /// `in_flight` are read by the caller at that moment.
    pub fn render(&self, queue_depth: usize, queued_inputs: usize, in_flight: usize) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        };
        counter(&mut out, "berth_requests_total", "POST /predict requests answered, any status.", self.requests.load(Ordering::Relaxed));
        counter(&mut out, "berth_inputs_total", "Examples predicted.", self.inputs.load(Ordering::Relaxed));
        counter(&mut out, "berth_explanations_total", "Inputs explained (\"explain\").", self.explanations.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP berth_request_errors_total POST /predict requests answered with an error, by status.");
        let _ = writeln!(out, "# TYPE berth_request_errors_total counter");
        let errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        for (status, count) in errors.iter() {
            let _ = writeln!(out, "berth_request_errors_total{{status=\"{status}\"}} {count}");
        }
        drop(errors);
        self.latency.render(&mut out, "berth_request_duration_seconds", "Time from a request's arrival to its answer.");
        self.batch_size.render(&mut out, "berth_batch_size", "Examples per forward pass.");
        let _ = writeln!(out, "# HELP berth_queue_depth Requests waiting for the batcher.\n# TYPE berth_queue_depth gauge");
        let _ = writeln!(out, "berth_queue_depth {queue_depth}");
        let _ = writeln!(out, "# HELP berth_queue_inputs Examples waiting for the batcher.\n# TYPE berth_queue_inputs gauge");
        let _ = writeln!(out, "berth_queue_inputs {queued_inputs}");
        let _ = writeln!(
            out,
            "# HELP berth_requests_in_flight POST /predict requests being handled (read, queued or running).\n# TYPE berth_requests_in_flight gauge"
        );
        let _ = writeln!(out, "berth_requests_in_flight {in_flight}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_with_an_inf_bucket() {
        let h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 3.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"1\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"2\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_sum 6\n"), "{out}");
        assert!(out.contains("x_count 4\n"), "{out}");
    }

    #[test]
    fn errors_are_counted_by_status() {
        let m = Metrics::default();
        m.record_request(200, 0.01);
        m.record_request(503, 0.001);
        m.record_request(503, 0.001);
        let text = m.render(3, 7, 5);
        assert!(text.contains("berth_requests_total 3\n"), "{text}");
        assert!(text.contains("berth_request_errors_total{status=\"503\"} 2\n"), "{text}");
        assert!(text.contains("berth_queue_depth 3\n"), "{text}");
        assert!(text.contains("berth_queue_inputs 7\n"), "{text}");
        assert!(text.contains("berth_requests_in_flight 5\n"), "{text}");
    }
}
