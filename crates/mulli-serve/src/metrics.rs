//! Counters and histograms, rendered in Prometheus' text format for `GET /metrics`.
//! Plain atomics: the hot path adds to a few counters and never takes a lock.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];
const BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum in micro-units, so it fits an integer atomic.
    sum_micro: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.sum_micro.fetch_add((v.max(0.0) * 1e6) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cum += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        let n = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micro.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {n}");
    }
}

/// Why a request or connection failed, one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not msgpack, or not an observation the policy can take.
    BadRequest,
    /// Frame above the size limit.
    TooLarge,
    /// The policy returned an error.
    Policy,
    /// Missing or wrong API key.
    Unauthorized,
    /// Refused because `max_clients` connections were open.
    Busy,
    /// The websocket broke (abrupt disconnect, protocol error, send timeout).
    Connection,
}

const KINDS: [(ErrorKind, &str); 6] = [
    (ErrorKind::BadRequest, "bad_request"),
    (ErrorKind::TooLarge, "too_large"),
    (ErrorKind::Policy, "policy"),
    (ErrorKind::Unauthorized, "unauthorized"),
    (ErrorKind::Busy, "busy"),
    (ErrorKind::Connection, "connection"),
];

pub struct Metrics {
    pub connections_total: AtomicU64,
    pub connections_open: AtomicU64,
    pub requests_total: AtomicU64,
    errors: [AtomicU64; 6],
    /// Frame received → reply handed to the socket.
    pub request_seconds: Histogram,
    /// Time in the policy per batch.
    pub inference_seconds: Histogram,
    /// Time a request waited in the queue before its batch ran.
    pub queue_seconds: Histogram,
    pub batch_size: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            connections_total: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            requests_total: AtomicU64::new(0),
            errors: Default::default(),
            request_seconds: Histogram::new(&LATENCY_BUCKETS),
            inference_seconds: Histogram::new(&LATENCY_BUCKETS),
            queue_seconds: Histogram::new(&LATENCY_BUCKETS),
            batch_size: Histogram::new(&BATCH_BUCKETS),
        }
    }
}

impl Metrics {
    pub fn error(&self, kind: ErrorKind) {
        let i = KINDS.iter().position(|(k, _)| *k == kind).unwrap_or(0);
        self.errors[i].fetch_add(1, Relaxed);
    }

    pub fn errors(&self, kind: ErrorKind) -> u64 {
        let i = KINDS.iter().position(|(k, _)| *k == kind).unwrap_or(0);
        self.errors[i].load(Relaxed)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64, kind: &str| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        counter(
            &mut out,
            "mulli_serve_connections_total",
            "Websocket connections accepted.",
            self.connections_total.load(Relaxed),
            "counter",
        );
        counter(
            &mut out,
            "mulli_serve_connections_open",
            "Websocket connections open now.",
            self.connections_open.load(Relaxed),
            "gauge",
        );
        counter(
            &mut out,
            "mulli_serve_requests_total",
            "Inference requests answered with actions.",
            self.requests_total.load(Relaxed),
            "counter",
        );
        let _ = writeln!(
            out,
            "# HELP mulli_serve_errors_total Failed requests and refused connections, by kind.\n# TYPE mulli_serve_errors_total counter"
        );
        for (i, (_, name)) in KINDS.iter().enumerate() {
            let _ = writeln!(
                out,
                "mulli_serve_errors_total{{kind=\"{name}\"}} {}",
                self.errors[i].load(Relaxed)
            );
        }
        self.request_seconds.render(
            &mut out,
            "mulli_serve_request_seconds",
            "Server time per request: frame received to reply sent.",
        );
        self.queue_seconds.render(
            &mut out,
            "mulli_serve_queue_seconds",
            "Time a request waited for its inference batch.",
        );
        self.inference_seconds.render(
            &mut out,
            "mulli_serve_inference_seconds",
            "Policy time per batch.",
        );
        self.batch_size.render(
            &mut out,
            "mulli_serve_batch_size",
            "Requests per inference batch.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_cumulative_buckets() {
        let m = Metrics::default();
        m.batch_size.observe(1.0);
        m.batch_size.observe(3.0);
        m.batch_size.observe(500.0);
        m.error(ErrorKind::TooLarge);
        let t = m.render();
        assert!(
            t.contains("mulli_serve_batch_size_bucket{le=\"1\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("mulli_serve_batch_size_bucket{le=\"4\"} 2\n"),
            "{t}"
        );
        assert!(
            t.contains("mulli_serve_batch_size_bucket{le=\"+Inf\"} 3\n"),
            "{t}"
        );
        assert!(t.contains("mulli_serve_batch_size_sum 504\n"), "{t}");
        assert!(
            t.contains("mulli_serve_errors_total{kind=\"too_large\"} 1\n"),
            "{t}"
        );
    }
}
