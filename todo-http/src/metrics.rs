//! Prometheus metrics: requests by route and status, latency, logins,
//! rate limiting; gauges are read from their owners when scraped.
//!
//! Recording is a few atomic additions on the route's counters: no lock on
//! the request path once a route has been seen (a lock per request made the
//! two worker threads queue on each other under load).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Statuses counted one by one; others are counted as their class (`2xx`…).
const STATUSES: [u16; 20] = [
    200, 201, 204, 304, 400, 401, 403, 404, 405, 408, 409, 412, 413, 415, 429, 431, 500, 502, 503,
    504,
];

#[derive(Debug, Default)]
struct RouteStats {
    /// Per method (index in `METHODS`), per status (index in `STATUSES`,
    /// then one per class 1xx–5xx).
    requests: [[AtomicU64; STATUSES.len() + 5]; METHODS.len()],
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    micros: AtomicU64,
}

const METHODS: [&str; 8] = [
    "GET", "POST", "PATCH", "DELETE", "PUT", "HEAD", "OPTIONS", "OTHER",
];

/// One server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    routes: RwLock<BTreeMap<&'static str, Arc<RouteStats>>>,
    pub logins_succeeded: AtomicU64,
    pub logins_failed: AtomicU64,
    pub rate_limited: AtomicU64,
}

impl Metrics {
    fn route(&self, route: &'static str) -> Arc<RouteStats> {
        if let Some(stats) = self
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(route)
        {
            return Arc::clone(stats);
        }
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(routes.entry(route).or_default())
    }

    pub fn record(&self, route: &'static str, method: &'static str, status: u16, took: Duration) {
        let stats = self.route(route);
        let m = METHODS
            .iter()
            .position(|x| *x == method)
            .unwrap_or(METHODS.len() - 1);
        let s = STATUSES
            .iter()
            .position(|x| *x == status)
            .unwrap_or_else(|| STATUSES.len() + usize::from((status / 100).clamp(1, 5) - 1));
        stats.requests[m][s].fetch_add(1, Ordering::Relaxed);
        let seconds = took.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(stats.buckets.iter()) {
            if seconds <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        stats.count.fetch_add(1, Ordering::Relaxed);
        stats.micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if status == 429 {
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The text exposition format.
    pub fn render(&self, out: &mut String) {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        out.push_str("# HELP todo_http_requests_total Requests by route, method and status.\n");
        out.push_str("# TYPE todo_http_requests_total counter\n");
        for (route, stats) in routes.iter() {
            for (m, method) in METHODS.iter().enumerate() {
                for (s, count) in stats.requests[m].iter().enumerate() {
                    let n = count.load(Ordering::Relaxed);
                    if n == 0 {
                        continue;
                    }
                    let status = match STATUSES.get(s) {
                        Some(code) => code.to_string(),
                        None => format!("{}xx", s - STATUSES.len() + 1),
                    };
                    let _ = writeln!(
                        out,
                        "todo_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
                    );
                }
            }
        }
        out.push_str("# HELP todo_http_request_duration_seconds Request latency by route.\n");
        out.push_str("# TYPE todo_http_request_duration_seconds histogram\n");
        for (route, stats) in routes.iter() {
            for (bound, count) in BUCKETS.iter().zip(stats.buckets.iter()) {
                let _ = writeln!(
                    out,
                    "todo_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {}",
                    count.load(Ordering::Relaxed)
                );
            }
            let count = stats.count.load(Ordering::Relaxed);
            let sum = stats.micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "todo_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "todo_http_request_duration_seconds_sum{{route=\"{route}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "todo_http_request_duration_seconds_count{{route=\"{route}\"}} {count}"
            );
        }
        counter(
            out,
            "todo_logins_succeeded_total",
            "Successful logins.",
            &self.logins_succeeded,
        );
        counter(
            out,
            "todo_logins_failed_total",
            "Failed logins.",
            &self.logins_failed,
        );
        counter(
            out,
            "todo_rate_limited_total",
            "Requests answered 429.",
            &self.rate_limited,
        );
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: &AtomicU64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
        value.load(Ordering::Relaxed)
    );
}

/// A gauge line, for the gauges the API owners report.
pub fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}
