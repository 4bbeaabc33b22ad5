//! What the caps let a server's memory reach at worst, weighed at start
//! against what its container allows.
//!
//! Each pool a client can fill is bounded by a cap of its own, but the
//! caps were chosen one by one: session 33's attack filled three at once
//! (unread answers to writes over HTTP/2, stalled live streams, request
//! bodies held just short of their end) and took a fresh `todo` from 51 to
//! 303 MiB, past a 256 MiB container, each pool within its cap. The
//! estimate here adds the pools up with the costs measured then, so that a
//! server whose caps exceed its container says so when it starts.

use todo_http::HttpLimits;

use crate::config::ServerArgs;
use crate::error::Error;
use crate::setup::TaskSettings;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// What a fresh `todo` holds before any client (51 MiB on SQLite).
const BASE: u64 = 50 * MIB;
/// What a connection costs while its answers wait unread (session 32's
/// attack, F0: 512 connections of 8 streams, 132 MB in use).
const PER_CONNECTION: u64 = 60 * KIB;
/// What an HTTP/2 stream costs meanwhile, beyond its answer.
const PER_STREAM: u64 = 7 * KIB;
/// What a live stream costs when its client stops reading (session 33's
/// attack: 256 of them, 47 MiB).
const PER_LIVE_STREAM: u64 = 184 * KIB;
/// The allocator's share on top of what the pools hold, in percent of it:
/// the three pools at once measured 303 MiB where their parts summed to
/// some 250.
const OVERHEAD_PERCENT: u64 = 120;

/// The pools a server's caps bound, by name, in bytes at most.
#[must_use]
pub fn pools(limits: &HttpLimits, live_streams: usize, imports: bool) -> Vec<(&'static str, u64)> {
    let n = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let per_connection = PER_CONNECTION
        .saturating_add(PER_STREAM.saturating_mul(u64::from(limits.max_concurrent_streams)));
    let budget = n(limits.body_budget_bytes);
    let mut pools = vec![
        (
            "connections (--max-connections × --max-concurrent-streams)",
            n(limits.max_connections).saturating_mul(per_connection),
        ),
        // (the response budget is the body budget's size, and writes' rooms
        // have an overdraft of a quarter of it)
        (
            "answers (--body-budget-bytes and its overdraft)",
            budget.saturating_add(budget / 4),
        ),
        ("request bodies (--body-budget-bytes)", budget),
        (
            "live streams (--max-live-streams)",
            n(live_streams).saturating_mul(PER_LIVE_STREAM),
        ),
    ];
    if imports {
        pools.push(("import files", n(todo_http::IMPORT_BUDGET_BYTES)));
    }
    pools
}

/// The most the process may hold with `pools` full at once.
#[must_use]
pub fn peak(pools: &[(&'static str, u64)]) -> u64 {
    let held = pools
        .iter()
        .fold(0u64, |sum, (_, bytes)| sum.saturating_add(*bytes));
    BASE.saturating_add(held.saturating_mul(OVERHEAD_PERCENT) / 100)
}

/// The memory the process's cgroup allows, if it is limited: cgroup v2's
/// `memory.max`, else v1's `memory.limit_in_bytes`.
#[must_use]
pub fn container_limit() -> Option<u64> {
    [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|path| std::fs::read_to_string(path).ok())
    .and_then(|text| parse_limit(&text))
}

/// A cgroup's limit as written: `max` (v2) or a number past 2^60 (v1's
/// "unlimited", rounded down to a page) is none.
fn parse_limit(text: &str) -> Option<u64> {
    let bytes: u64 = text.trim().parse().ok()?;
    (bytes < 1 << 60).then_some(bytes)
}

/// Logs the estimate against the container's limit: a warning when the
/// caps let the process pass it, naming the pools.
pub fn check(limits: &HttpLimits, live_streams: usize, imports: bool) {
    let Some(limit) = container_limit() else {
        return;
    };
    let pools = pools(limits, live_streams, imports);
    let peak = peak(&pools);
    if peak <= limit {
        tracing::info!(
            limit_mib = limit / MIB,
            peak_mib = peak / MIB,
            "the caps keep memory within the container's limit"
        );
        return;
    }
    let named: Vec<String> = pools
        .iter()
        .map(|(name, bytes)| format!("{name}: {} MiB", bytes / MIB))
        .collect();
    tracing::warn!(
        limit_mib = limit / MIB,
        peak_mib = peak / MIB,
        pools = %named.join(", "),
        "clients that fill every pool the caps allow would take memory past the container's limit: \
         lower the caps or raise the limit (OPERATIONS.md, \"Memory\")"
    );
}

/// [`check`] for a server of the task API (task-server, `todo`): its
/// live streams and import files too.
pub fn check_serving_tasks(server: &ServerArgs, tasks: &TaskSettings) -> Result<(), Error> {
    let live = tasks.live_streams_total(server.max_connections);
    check(&server.limits()?, live, true);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_read_as_cgroups_write_it() {
        assert_eq!(parse_limit("268435456\n"), Some(256 * MIB));
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("9223372036854771712\n"), None);
        assert_eq!(parse_limit(""), None);
    }

    /// The estimate at the defaults, and for the attack it was fitted to
    /// (448 connections, 256 live streams, the default budgets): within
    /// 10% of the 303 MiB measured.
    #[test]
    fn the_estimate_adds_up_the_pools() {
        let defaults = HttpLimits::default();
        let at_defaults = peak(&pools(&defaults, 256, true)) / MIB;
        assert!((320..=345).contains(&at_defaults), "{at_defaults} MiB");
        let attack = HttpLimits {
            max_connections: 448,
            ..HttpLimits::default()
        };
        // (the attack sent no import)
        let estimated = peak(&pools(&attack, 256, false)) / MIB;
        assert!((273..=333).contains(&estimated), "{estimated} MiB");
        // The shipped containers' settings fit their limits.
        let gateway_side = HttpLimits {
            max_connections: 256,
            body_budget_bytes: 16 * 1024 * 1024,
            ..HttpLimits::default()
        };
        let task_server = peak(&pools(&gateway_side, 192, true)) / MIB;
        assert!(task_server < 256, "{task_server} MiB");
    }
}
