//! What every handler needs from a request: its body as JSON (bounded in size
//! and time), its query string, its bearer token, and who sent it.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use serde::de::DeserializeOwned;

use crate::admission::{BodyBudget, BodyShare};
use crate::problem::ApiError;

/// A request body of any origin (a socket, a test, a fuzzer).
pub type RequestBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Limits on what a client may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Larger bodies get 413 without being read whole.
    pub max_body_bytes: usize,
    /// A body that has not arrived in this time gets 408.
    pub body_timeout: Duration,
    /// A connection that has not delivered a whole request head in this time is closed.
    pub header_read_timeout: Duration,
    /// Larger request heads get 431.
    pub max_head_bytes: usize,
    /// Connections beyond this are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Connections one client address (an IPv6 /64) may hold; more are
    /// closed as soon as they are accepted. Behind a trusted proxy, the
    /// requests in flight of one forwarded client; more get 503.
    pub max_connections_per_client: usize,
    /// Requests one client address (not a trusted proxy) may have in
    /// flight at once, over all its connections; more get 503.
    pub max_requests_per_client: usize,
    /// Streams an HTTP/2 connection may have open at once.
    pub max_concurrent_streams: u32,
    /// Bytes of request bodies buffered at once across the process; a body
    /// that cannot get its share gets 503 with `Retry-After`.
    pub body_budget_bytes: usize,
    /// How long data sent may stay unacknowledged (a client gone, or one
    /// that stopped reading, whose shut window the kernel probes: Linux
    /// 5.11 and later) before the kernel drops the connection and what it
    /// held for it (`TCP_USER_TIMEOUT`, on Linux).
    pub send_stall: Duration,
    /// How long in-flight requests may take to finish at shutdown.
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            body_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            max_head_bytes: 16 * 1024,
            // (each connection costs some 60 KiB and each HTTP/2 stream
            // 7 KiB when their answers are not read: 512 × 16 streams
            // peaked at 224 MiB under session 32's attack, which held no
            // request bodies (up to 32 MiB more) and no stalled live
            // streams (some 184 KiB each); 16, so that a browser whose
            // tabs hold a user's 8 live streams on one connection still
            // has 8 for requests: SECURITY.md, session 32)
            max_connections: 512,
            max_connections_per_client: 32,
            max_requests_per_client: 32,
            max_concurrent_streams: 16,
            body_budget_bytes: 32 * 1024 * 1024,
            send_stall: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Why a list of trusted proxies was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyListError {
    /// An item that is not an IP address (before its `/`).
    #[error("not an IP address: {0}")]
    NotAnAddress(String),
    /// A prefix length that is not a number within the address's size.
    #[error("bad prefix: {0}")]
    BadPrefix(String),
}

/// Proxies whose `X-Forwarded-For` is believed: addresses or CIDR blocks.
/// Empty (the default) means the peer address is the client.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses a comma-separated list such as `10.0.0.0/8, ::1`.
    pub fn parse(list: &str) -> Result<Self, ProxyListError> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (addr, bits) = match item.split_once('/') {
                Some((addr, bits)) => (addr, Some(bits)),
                None => (item, None),
            };
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| ProxyListError::NotAnAddress(item.to_owned()))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                Some(b) => b
                    .parse::<u8>()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or_else(|| ProxyListError::BadPrefix(item.to_owned()))?,
                None => max,
            };
            nets.push((addr, bits));
        }
        Ok(Self(nets))
    }

    /// Whether `ip` is one of the trusted proxies.
    /// A peer on a dual-stack listener (`[::]`) shows an IPv4 address as
    /// `::ffff:a.b.c.d`: it is weighed as that IPv4 address too.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        self.0.iter().any(|(net, bits)| {
            [ip, canonical].into_iter().any(|ip| match (net, ip) {
                (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), *bits),
                (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), *bits),
                _ => false,
            })
        })
    }

    /// The client: the peer, or, when the peer is a trusted proxy, the
    /// right-most address in `X-Forwarded-For` that is not a trusted proxy.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        let hops: Vec<&str> = hops.flat_map(|v| v.split(',')).map(str::trim).collect();
        for hop in hops.iter().rev() {
            match forwarded_hop(hop) {
                Some(ip) => {
                    client = ip;
                    if !self.trusts(ip) {
                        break;
                    }
                }
                None => {
                    // (the proxy's own identity stands: every such client
                    // shares its limits, so the operator is told, once)
                    static TOLD: std::sync::Once = std::sync::Once::new();
                    TOLD.call_once(|| {
                        tracing::warn!(
                            target: "todo::http",
                            hop = %hop.chars().take(64).collect::<String>(),
                            "a trusted proxy forwarded a client that is not an address; such requests count as the proxy's own"
                        );
                    });
                    break;
                }
            }
        }
        client
    }
}

/// One `X-Forwarded-For` hop's address: bare, or with a port as some
/// balancers write it (`203.0.113.9:51234`, `[2001:db8::1]:443`); a port
/// kept would make the hop unreadable, and every client behind such a
/// balancer one (session 33's attack, F3). An IPv6 address with a port
/// must be bracketed: `2001:db8::1:443` is read as the address it spells.
fn forwarded_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Some(bracketed) = hop.strip_prefix('[') {
        let (v6, port) = bracketed.split_once(']')?;
        if !(port.is_empty() || port.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return v6.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (v4, port) = hop.split_once(':')?;
    if !is_port(port) {
        return None;
    }
    v4.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// Whether `text` is a port number.
fn is_port(text: &str) -> bool {
    (1..=5).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_digit())
        && text.parse::<u16>().is_ok()
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = usize::from(bits / 8);
    if a[..full] != b[..full] {
        return false;
    }
    let rest = bits % 8;
    rest == 0 || (a[full] ^ b[full]) >> (8 - rest) == 0
}

/// A query string's pairs, percent-decoded; an unknown name or a name given
/// twice is refused.
pub fn query_pairs(
    query: Option<&str>,
    allowed: &[&str],
) -> Result<Vec<(String, String)>, ApiError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if !allowed.contains(&name.as_ref()) {
            return Err(ApiError::field(&name, "unknown query parameter"));
        }
        if pairs.iter().any(|(n, _)| *n == name) {
            return Err(ApiError::field(&name, "given more than once"));
        }
        pairs.push((name.into_owned(), value.into_owned()));
    }
    Ok(pairs)
}

/// How long a client refused for want of body budget should wait.
const BUDGET_RETRY: Duration = Duration::from_secs(1);

/// Reads at most `limit` bytes of `body`: 413 as soon as it goes past. The
/// buffer grows as bytes arrive (never past the declared length or the
/// limit), each growth paid from `budget` into `reserved` first: 503 when
/// the budget cannot pay.
pub(crate) async fn read_limited<B>(
    mut body: B,
    limit: usize,
    declared: Option<usize>,
    (budget, client): (&BodyBudget, Option<IpAddr>),
    reserved: &mut Option<BodyShare>,
) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut bytes: Vec<u8> = Vec::new();
    // What this buffer has been paid for.
    let mut paid = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ApiError::bad_request("the body could not be read"))?;
        if let Ok(data) = frame.into_data() {
            let needed = bytes.len() + data.len();
            if needed > limit {
                drain(body, DRAIN_BYTES.saturating_sub(needed)).await;
                return Err(ApiError::payload_too_large(limit));
            }
            if needed > paid {
                // Double (from 4 KiB), but never past what the client
                // declared or the limit: a slow trickle costs no copies
                // to speak of, and the buffer never holds unpaid room.
                let ceiling = declared.unwrap_or(limit).clamp(needed, limit);
                let grown = paid.saturating_mul(2).max(4096).clamp(needed, ceiling);
                if !budget.reserve(client, grown - paid, reserved) {
                    return Err(ApiError::unavailable(BUDGET_RETRY, None));
                }
                bytes.reserve_exact(grown - bytes.len());
                paid = grown;
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(bytes))
}

/// The most of a refused body read (and dropped) before its 413 is sent.
/// A connection closed with unread bytes in its receive buffer sends the
/// client a reset, which can arrive before the 413 does: a client that
/// sent a body somewhat over the limit would see a broken connection, not
/// the answer (schemathesis did, from `POST /v1/projects`). Bodies larger
/// than this still get the reset.
pub(crate) const DRAIN_BYTES: usize = 1024 * 1024;

/// How long a refused body is read for at most.
const DRAIN_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads and drops up to `max` more bytes of `body`, for [`DRAIN_FOR`] at
/// most, so that the connection can be closed without a reset.
pub(crate) async fn drain<B>(mut body: B, max: usize)
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let read = async {
        let mut left = max;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                if data.len() > left {
                    return;
                }
                left -= data.len();
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_FOR, read).await;
}

/// Decodes a JSON body, turning serde's complaints into problem details.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every body of the API is an object; serde would also take a struct
    // from an array of its fields in order (`["pw"]` for
    // `{"current_password": "pw"}`), a second grammar nobody documents or
    // tests (attack of session 25, second pass, F4).
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let message = e.to_string();
        if let Some(rest) = message.strip_prefix("unknown field `")
            && let Some((field, _)) = rest.split_once('`')
        {
            return ApiError::field(field, "unknown field");
        }
        if let Some(rest) = message.strip_prefix("missing field `")
            && let Some((field, _)) = rest.split_once('`')
        {
            return ApiError::field(field, "is required");
        }
        match e.classify() {
            serde_json::error::Category::Data => {
                ApiError::bad_request(format!("invalid body: {}", without_rust_names(&message)))
            }
            _ => ApiError::bad_request(format!("malformed JSON: {message}")),
        }
    })
}

/// serde's message in the client's terms: "expected struct RegisterBody"
/// names our code, not the wire; the client reads "expected an object".
fn without_rust_names(message: &str) -> String {
    let mut plain = String::with_capacity(message.len());
    let mut words = message.split(' ').peekable();
    while let Some(word) = words.next() {
        if !plain.is_empty() {
            plain.push(' ');
        }
        // "expected i64": a Rust integer type; the wire has numbers.
        let (number, rest) = word.split_at(
            word.find(|c: char| !c.is_alphanumeric())
                .unwrap_or(word.len()),
        );
        let wire = match number {
            "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64"
            | "u128" | "usize" => Some("an integer"),
            "f32" | "f64" => Some("a number"),
            _ => None,
        };
        if let Some(wire) = wire {
            plain.push_str(wire);
            plain.push_str(rest);
            continue;
        }
        match words.peek() {
            Some(name) if word == "struct" && name.starts_with(char::is_uppercase) => {
                plain.push_str("an object");
                // The type's name goes; whatever punctuation ends it stays.
                let name = words.next().unwrap_or_default();
                plain.extend(
                    name.chars()
                        .skip_while(|c| c.is_alphanumeric() || *c == '_'),
                );
            }
            _ => plain.push_str(word),
        }
    }
    plain
}

/// Parses a boolean query value.
pub fn query_bool(name: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ApiError::field(name, "must be true or false")),
    }
}

/// Parses an integer query value.
pub fn query_int(name: &str, value: &str) -> Result<i64, ApiError> {
    value
        .parse()
        .map_err(|_| ApiError::field(name, "must be an integer"))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use hyper::body::{Body, Frame};

    use super::*;

    /// A body is an object: serde's other grammar for structs, an array
    /// of the fields in order, is refused.
    #[test]
    fn a_body_is_an_object_not_an_array_of_its_fields() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct ConfirmBody {
            current_password: String,
        }
        let array = decode_json::<ConfirmBody>(br#" ["correct horse"]"#).unwrap_err();
        assert_eq!(array.status, http::StatusCode::BAD_REQUEST);
        assert!(array.detail.contains("JSON object"), "{}", array.detail);
        assert!(decode_json::<ConfirmBody>(br#" {"current_password": "x"}"#).is_ok());
    }

    /// A 400 speaks of the wire (objects, strings), never of our types.
    #[test]
    fn a_bodys_400_names_no_rust_type() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct RegisterBody {
            username: String,
        }
        let list = decode_json::<RegisterBody>(b"[1]").unwrap_err();
        assert!(!list.detail.contains("RegisterBody"), "{}", list.detail);
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Numbered {
            priority: i64,
        }
        let number = decode_json::<Numbered>(br#"{"priority": "high"}"#).unwrap_err();
        assert!(
            number.detail.contains("expected an integer"),
            "{}",
            number.detail
        );
        // A field's own type is already in wire terms.
        let field = decode_json::<RegisterBody>(br#"{"username": 5}"#).unwrap_err();
        assert!(
            field.detail.contains("expected a string"),
            "{}",
            field.detail
        );
    }

    /// A body whose chunks are all there at once.
    struct Chunks(VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = Box<dyn std::error::Error + Send + Sync>;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
        }
    }

    fn chunks(count: usize, size: usize) -> RequestBody {
        Chunks((0..count).map(|_| Bytes::from(vec![b' '; size])).collect()).boxed_unsync()
    }

    #[tokio::test]
    async fn bodies_are_paid_from_the_budget_and_refused_past_it() {
        let budget = BodyBudget::new(96 * 1024, 64 * 1024);
        let me = IpAddr::from([192, 0, 2, 1]);
        // Within the budget: read whole, paid as it grew, never past the declared length.
        let mut held = None;
        let read = read_limited(
            chunks(10, 1000),
            64 * 1024,
            Some(10_000),
            (&budget, Some(me)),
            &mut held,
        );
        assert_eq!(read.await.unwrap().len(), 10_000);
        let paid = held.as_ref().map_or(0, BodyShare::bytes);
        assert_eq!(paid, 10_000);
        // Undeclared: doubling from 4 KiB, never more than twice what arrived.
        let mut other = None;
        let read = read_limited(
            chunks(9, 1000),
            64 * 1024,
            None,
            (&budget, Some(me)),
            &mut other,
        );
        assert_eq!(read.await.unwrap().len(), 9000);
        let paid = other.as_ref().map_or(0, BodyShare::bytes);
        assert!((9000..=18_000).contains(&paid), "paid {paid}");
        // Past the budget: 503 with Retry-After, and what it took is given back.
        let before = budget.available();
        let mut refused = None;
        let read = read_limited(
            chunks(60, 1000),
            64 * 1024,
            None,
            (&budget, Some(me)),
            &mut refused,
        );
        let response = read.await.unwrap_err().into_response();
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
        // That was this client's quarter-or-one-body share: another still reads.
        let mut theirs = None;
        let them = IpAddr::from([192, 0, 2, 2]);
        let read = read_limited(
            chunks(10, 1000),
            64 * 1024,
            Some(10_000),
            (&budget, Some(them)),
            &mut theirs,
        );
        assert_eq!(read.await.unwrap().len(), 10_000);
        drop(theirs);
        drop(refused);
        assert_eq!(budget.available(), before);
        // A request's share comes back when the request is gone.
        drop(held);
        drop(other);
        assert_eq!(budget.available(), 96 * 1024);
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 192.168.1.1").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9, 10.1.2.3".parse().unwrap());
        let untrusted: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(proxies.client(untrusted, &headers), untrusted);
        let proxy: IpAddr = "10.9.9.9".parse().unwrap();
        assert_eq!(
            proxies.client(proxy, &headers),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(TrustedProxies::default().client(proxy, &headers), proxy);
        // A proxy reaching a dual-stack listener shows as `::ffff:10.9.9.9`.
        let mapped: IpAddr = "::ffff:10.9.9.9".parse().unwrap();
        assert!(proxies.trusts(mapped));
        assert_eq!(
            proxies.client(mapped, &headers),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert!(!proxies.trusts("::ffff:198.51.100.7".parse().unwrap()));
        // With a port, as some balancers write it: the address.
        for (hop, client) in [
            ("203.0.113.9:51234", "203.0.113.9"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
        ] {
            headers.insert("x-forwarded-for", hop.parse().unwrap());
            assert_eq!(
                proxies.client(proxy, &headers),
                client.parse::<IpAddr>().unwrap(),
                "{hop}"
            );
        }
        // Not an address: the proxy's own identity.
        for hop in [
            "garbage",
            "203.0.113.9:",
            "203.0.113.9:port",
            "203.0.113.9:99999",
            "203.0.113.9:+80",
            "[2001:db8::1]x",
            "[203.0.113.9]",
            "2001:db8::1:443x",
        ] {
            headers.insert("x-forwarded-for", hop.parse().unwrap());
            assert_eq!(proxies.client(proxy, &headers), proxy, "{hop}");
        }
        assert_eq!(
            TrustedProxies::parse("10.0.0.0/33").unwrap_err(),
            ProxyListError::BadPrefix("10.0.0.0/33".to_owned())
        );
        assert_eq!(
            TrustedProxies::parse("not-an-ip").unwrap_err().to_string(),
            "not an IP address: not-an-ip"
        );
    }
}
