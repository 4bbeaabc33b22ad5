//! Prometheus metrics through `prometheus-client`: requests by route, method
//! and status, latency by route, logins, rate limiting; the gauges of the
//! hashing queue and the database pool are read from their owners
//! ([`Probe`]s, registered as a collector) when scraped.
//!
//! Recording takes no allocation once a series exists: the label sets are
//! `&'static str`s and a status code, looked up under a read lock of the
//! family; a counter is one atomic addition, a histogram one short lock of
//! that route's series (held for a few instructions; requests to one route
//! take it in turn).

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::probe::Probe;

/// The `Content-Type` of a scrape: the Prometheus text format 0.0.4.
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Statuses counted one by one; others are counted as their class (`2xx`…),
/// so that the number of series stays bounded.
const STATUSES: [u16; 20] = [
    200, 201, 204, 304, 400, 401, 403, 404, 405, 408, 409, 412, 413, 415, 429, 431, 500, 502, 503,
    504,
];

/// Method labels; any other method counts as `OTHER`.
const METHODS: [&str; 8] = [
    "GET", "POST", "PATCH", "DELETE", "PUT", "HEAD", "OPTIONS", "OTHER",
];

/// A `status` label value: a code of [`STATUSES`], or a class (1 to 5,
/// written `1xx` to `5xx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Status(u16);

impl Status {
    fn of(code: u16) -> Self {
        if STATUSES.contains(&code) {
            Self(code)
        } else {
            Self((code / 100).clamp(1, 5))
        }
    }
}

impl EncodeLabelValue for Status {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        if self.0 < 100 {
            write!(encoder, "{}xx", self.0)
        } else {
            write!(encoder, "{}", self.0)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: Status,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// One server's metrics, and the registry a scrape encodes.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    logins_succeeded: Counter,
    logins_failed: Counter,
    rate_limited: Counter,
}

impl Default for Metrics {
    /// Metrics without gauges.
    fn default() -> Self {
        Self::new(&[])
    }
}

impl Metrics {
    /// The metrics of a server whose scrapes also carry the gauges of
    /// `probes` (read when scraped).
    #[must_use]
    pub fn new(probes: &[Arc<dyn Probe>]) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let logins_succeeded = Counter::default();
        let logins_failed = Counter::default();
        let rate_limited = Counter::default();
        // Names without `_total` and help without a full stop: the encoder
        // adds both.
        let mut registry = Registry::default();
        registry.register(
            "todo_http_requests",
            "Requests by route, method and status",
            requests.clone(),
        );
        registry.register(
            "todo_http_request_duration_seconds",
            "Request latency by route",
            latency.clone(),
        );
        registry.register(
            "todo_logins_succeeded",
            "Successful logins",
            logins_succeeded.clone(),
        );
        registry.register("todo_logins_failed", "Failed logins", logins_failed.clone());
        registry.register(
            "todo_rate_limited",
            "Requests answered 429",
            rate_limited.clone(),
        );
        registry.register_collector(Box::new(ResponseBudgetCounts));
        if !probes.is_empty() {
            registry.register_collector(Box::new(Gauges(probes.to_vec())));
        }
        Self {
            registry,
            requests,
            latency,
            logins_succeeded,
            logins_failed,
            rate_limited,
        }
    }

    /// Counts one answered request (no allocation once the series exists).
    pub fn record(&self, route: &'static str, method: &'static str, status: u16, took: Duration) {
        let method = METHODS
            .iter()
            .copied()
            .find(|m| *m == method)
            .unwrap_or("OTHER");
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status: Status::of(status),
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { route })
            .observe(took.as_secs_f64());
        if status == 429 {
            self.rate_limited.inc();
        }
    }

    /// Counts a successful login.
    pub fn login_succeeded(&self) {
        self.logins_succeeded.inc();
    }

    /// Counts a login refused for its credentials.
    pub fn login_failed(&self) {
        self.logins_failed.inc();
    }

    /// Appends a scrape, in the text format of [`CONTENT_TYPE`].
    pub fn render(&self, out: &mut String) {
        // Writing to a String cannot fail, and the collectors' gauges are
        // numbers: an error here would be a bug in the encoder.
        if let Err(error) =
            prometheus_client::encoding::prometheus_text::encode(out, &self.registry)
        {
            tracing::error!(target: "todo::http", %error, "encoding the metrics failed");
        }
    }
}

/// What the process's response budgets did (`crate::sending`), read at
/// each scrape.
#[derive(Debug)]
struct ResponseBudgetCounts;

impl Collector for ResponseBudgetCounts {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let counts = &crate::sending::COUNTS;
        let read = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
        counter(
            &mut encoder,
            "todo_http_answers_given_way",
            "Answers whose clients had stopped reading, dropped for a request the response budget could not pay.",
            read(&counts.given_way),
        )?;
        counter(
            &mut encoder,
            "todo_http_reads_refused_by_budget",
            "Reads answered 503 because the response budget could not pay their answers.",
            read(&counts.reads_refused),
        )?;
        counter(
            &mut encoder,
            "todo_http_writes_refused_by_budget",
            "Writes refused (503, nothing written) because no room could be had for their answers.",
            read(&counts.writes_refused),
        )?;
        counter(
            &mut encoder,
            "todo_http_answers_stalled",
            "Answers ended because their clients stopped reading them (HTTP/2: the stream reset; HTTP/1.1: the connection dropped).",
            read(&counts.answers_stalled),
        )
    }
}

/// The probes' gauges, read at each scrape.
struct Gauges(Vec<Arc<dyn Probe>>);

impl fmt::Debug for Gauges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Gauges").field(&self.0.len()).finish()
    }
}

impl Collector for Gauges {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        self.0
            .iter()
            .try_for_each(|probe| probe.gauges(&mut encoder))
    }
}

/// Encodes one gauge, for a [`Probe::gauges`]: `name` in full, `help` as
/// written (a sentence).
pub fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: impl Into<i64>,
) -> fmt::Result {
    let gauge = ConstGauge::new(value.into());
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

/// Encodes one counter kept by its owner, for a [`Probe::gauges`]: `name`
/// without `_total` (the encoder adds it), `help` as written.
pub fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> fmt::Result {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed;

    impl Probe for Fixed {
        fn ready(&self) -> Result<(), crate::probe::NotReady> {
            Ok(())
        }

        fn gauges(&self, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
            gauge(encoder, "todo_test_depth", "A fixed depth.", 7u32)
        }
    }

    /// One sample line: name, labels (sorted), value.
    type Sample = (String, Vec<(String, String)>, f64);

    /// Parses the Prometheus text format strictly enough to reject what a
    /// scraper would: every sample belongs to a family declared by `# TYPE`
    /// (with its `_total`, `_bucket`, `_sum`, `_count` suffixes), label values
    /// are quoted, values are numbers. Returns the samples and the types.
    fn parse(text: &str) -> (Vec<Sample>, Vec<(String, String)>) {
        let mut types: Vec<(String, String)> = Vec::new();
        let mut helps: Vec<String> = Vec::new();
        let mut samples = Vec::new();
        assert!(text.ends_with('\n'), "a scrape ends with a newline");
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                assert!(help.ends_with('.'), "{line}");
                assert!(!help.ends_with(".."), "{line}");
                helps.push(name.to_owned());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert_eq!(
                    helps.last().map(String::as_str),
                    Some(name),
                    "HELP before TYPE"
                );
                assert!(
                    types.iter().all(|(n, _)| n != name),
                    "{name} declared twice"
                );
                types.push((name.to_owned(), kind.to_owned()));
                continue;
            }
            assert!(!line.starts_with('#'), "unknown comment {line}");
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value = match value {
                "+Inf" => f64::INFINITY,
                v => v
                    .parse::<f64>()
                    .unwrap_or_else(|_| panic!("value of {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels.strip_suffix('}').unwrap();
                    let mut pairs: Vec<(String, String)> = labels
                        .split(',')
                        .map(|pair| {
                            let (k, v) = pair.split_once('=').unwrap();
                            assert!(
                                k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                                "{line}"
                            );
                            let v = v.strip_prefix('"').unwrap().strip_suffix('"').unwrap();
                            (k.to_owned(), v.to_owned())
                        })
                        .collect();
                    pairs.sort();
                    (name, pairs)
                }
                None => (series, Vec::new()),
            };
            let (family, kind) = types.last().unwrap();
            let ok = match kind.as_str() {
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(family)),
                _ => name == family,
            };
            assert!(ok, "{name} outside its family {family}");
            samples.push((name.to_owned(), labels, value));
        }
        (samples, types)
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        v.sort();
        v
    }

    fn value(samples: &[Sample], name: &str, pairs: &[(&str, &str)]) -> Option<f64> {
        let wanted = labels(pairs);
        samples
            .iter()
            .find(|(n, l, _)| n == name && *l == wanted)
            .map(|(_, _, v)| *v)
    }

    #[test]
    fn a_scrape_parses_as_prometheus_text_with_the_expected_series() {
        let probe: Arc<dyn Probe> = Arc::new(Fixed);
        let metrics = Metrics::new(&[probe]);
        let route = "/v1/tasks/{id}";
        metrics.record(route, "GET", 200, Duration::from_micros(800));
        metrics.record(route, "GET", 200, Duration::from_millis(30));
        metrics.record(route, "PATCH", 412, Duration::from_millis(2));
        metrics.record(route, "PATCH", 418, Duration::from_millis(2));
        metrics.record("/v1/tasks", "POST", 429, Duration::from_secs(9));
        metrics.record("/v1/tasks", "BREW", 299, Duration::from_millis(1));
        metrics.login_succeeded();
        metrics.login_failed();
        metrics.login_failed();
        let mut text = String::new();
        metrics.render(&mut text);
        let (samples, types) = parse(&text);

        let kinds: Vec<(&str, &str)> = types
            .iter()
            .map(|(n, k)| (n.as_str(), k.as_str()))
            .collect();
        for expected in [
            ("todo_http_requests_total", "counter"),
            ("todo_http_request_duration_seconds", "histogram"),
            ("todo_logins_succeeded_total", "counter"),
            ("todo_logins_failed_total", "counter"),
            ("todo_rate_limited_total", "counter"),
            ("todo_http_answers_given_way_total", "counter"),
            ("todo_http_reads_refused_by_budget_total", "counter"),
            ("todo_http_writes_refused_by_budget_total", "counter"),
            ("todo_http_answers_stalled_total", "counter"),
            ("todo_test_depth", "gauge"),
        ] {
            assert!(kinds.contains(&expected), "{expected:?} in {kinds:?}");
        }
        assert_eq!(kinds.len(), 10, "{kinds:?}");

        let requests = "todo_http_requests_total";
        let get = [("route", route), ("method", "GET"), ("status", "200")];
        assert_eq!(value(&samples, requests, &get), Some(2.0));
        let patch = [("route", route), ("method", "PATCH"), ("status", "412")];
        assert_eq!(value(&samples, requests, &patch), Some(1.0));
        // Uncommon statuses count as their class, unknown methods as OTHER.
        let teapot = [("route", route), ("method", "PATCH"), ("status", "4xx")];
        assert_eq!(value(&samples, requests, &teapot), Some(1.0));
        let other = [
            ("route", "/v1/tasks"),
            ("method", "OTHER"),
            ("status", "2xx"),
        ];
        assert_eq!(value(&samples, requests, &other), Some(1.0));
        // The label order is the one dashboards were written against.
        assert!(
            text.contains(&format!(
                "todo_http_requests_total{{route=\"{route}\",method=\"GET\",status=\"200\"}} 2\n"
            )),
            "{text}"
        );

        let bucket = "todo_http_request_duration_seconds_bucket";
        let le = |bound: &'static str| [("route", route), ("le", bound)];
        // Cumulative: 0.8 ms, 2 ms, 2 ms and 30 ms.
        assert_eq!(value(&samples, bucket, &le("0.001")), Some(1.0));
        assert_eq!(value(&samples, bucket, &le("0.0025")), Some(3.0));
        assert_eq!(value(&samples, bucket, &le("0.025")), Some(3.0));
        assert_eq!(value(&samples, bucket, &le("0.05")), Some(4.0));
        assert_eq!(value(&samples, bucket, &le("5")), Some(4.0));
        assert_eq!(value(&samples, bucket, &le("+Inf")), Some(4.0));
        let route_only = [("route", route)];
        assert_eq!(
            value(
                &samples,
                "todo_http_request_duration_seconds_count",
                &route_only
            ),
            Some(4.0)
        );
        let sum = value(
            &samples,
            "todo_http_request_duration_seconds_sum",
            &route_only,
        );
        assert!(sum.is_some_and(|s| (s - 0.0348).abs() < 1e-9), "{sum:?}");
        // Nine seconds is beyond the last bound: only +Inf counts it.
        let slow = |bound: &'static str| [("route", "/v1/tasks"), ("le", bound)];
        assert_eq!(value(&samples, bucket, &slow("5")), Some(1.0));
        assert_eq!(value(&samples, bucket, &slow("+Inf")), Some(2.0));

        assert_eq!(
            value(&samples, "todo_logins_succeeded_total", &[]),
            Some(1.0)
        );
        assert_eq!(value(&samples, "todo_logins_failed_total", &[]), Some(2.0));
        assert_eq!(value(&samples, "todo_rate_limited_total", &[]), Some(1.0));
        assert_eq!(value(&samples, "todo_test_depth", &[]), Some(7.0));
    }

    #[test]
    fn a_fresh_scrape_declares_the_counters_and_the_gauges() {
        let metrics = Metrics::new(&[Arc::new(Fixed)]);
        let mut text = String::new();
        metrics.render(&mut text);
        let (samples, types) = parse(&text);
        let names: Vec<&str> = types.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "todo_logins_succeeded_total",
                "todo_logins_failed_total",
                "todo_rate_limited_total",
                "todo_http_answers_given_way_total",
                "todo_http_reads_refused_by_budget_total",
                "todo_http_writes_refused_by_budget_total",
                "todo_http_answers_stalled_total",
                "todo_test_depth"
            ],
            "families without series are left out"
        );
        assert_eq!(value(&samples, "todo_rate_limited_total", &[]), Some(0.0));
    }
}
