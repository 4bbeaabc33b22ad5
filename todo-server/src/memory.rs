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
use crate::setup::{AuthSettings, TaskSettings};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// What a fresh `todo` holds before any client (51 MiB on SQLite).
const BASE: u64 = 50 * MIB;
/// What a connection costs while its answers wait unread (session 32's
/// attack, F0: 512 connections of 8 streams, 132 MB in use).
const PER_CONNECTION: u64 = 60 * KIB;
/// What an HTTP/2 stream costs meanwhile, beyond its answer (measured
/// with shut windows; one whose client opens its window and does not read
/// may hold up to 32 KiB more in h2's buffer until it is reset).
const PER_STREAM: u64 = 7 * KIB;
/// What a live stream costs when its client stops reading (session 33's
/// attack: 256 of them, 47 MiB).
const PER_LIVE_STREAM: u64 = 184 * KIB;
/// The allocator's share on top of what the pools hold, in percent of
/// them: fitted so that the estimate is at least every peak measured
/// (sessions 32 and 33: 179, 224 and 303 MiB, where the pools, without
/// the base, held 98, 126 and 193 MiB).
const OVERHEAD_PERCENT: u64 = 140;

/// What a server serves, for [`pools`]: the caps of its listener, and
/// those of the APIs it carries.
#[derive(Debug, Clone)]
pub struct Served {
    /// Its connections, streams and budgets.
    pub limits: HttpLimits,
    /// Live streams at once (0 without the task API).
    pub live_streams: usize,
    /// Bytes of import and export files at once (0 without the task API).
    pub files: u64,
    /// Bytes of password hashes running at once (0 without the auth API).
    pub hashing: u64,
}

/// The pools a server's caps bound, by name, in bytes at most.
#[must_use]
pub fn pools(served: &Served) -> Vec<(&'static str, u64)> {
    let n = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let limits = &served.limits;
    let per_connection = PER_CONNECTION
        .saturating_add(PER_STREAM.saturating_mul(u64::from(limits.max_concurrent_streams)));
    let budget = n(limits.body_budget_bytes);
    vec![
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
            n(served.live_streams).saturating_mul(PER_LIVE_STREAM),
        ),
        ("import and export files", served.files),
        (
            "password hashes (--hash-workers × --argon2-memory-kib)",
            served.hashing,
        ),
    ]
}

/// The most the process may hold with `pools` full at once.
#[must_use]
pub fn peak(pools: &[(&'static str, u64)]) -> u64 {
    let held = pools
        .iter()
        .fold(0u64, |sum, (_, bytes)| sum.saturating_add(*bytes));
    BASE.saturating_add(held.saturating_mul(OVERHEAD_PERCENT) / 100)
}

/// The memory the process's cgroup allows, if it is limited: its own
/// cgroup's (v2 `memory.max`, named in `/proc/self/cgroup`), else the
/// root's (a container's usual view), else v1's `memory.limit_in_bytes`.
#[must_use]
pub fn container_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("0::").map(str::to_owned))
        })
        .map(|path| format!("/sys/fs/cgroup{}/memory.max", path.trim_end_matches('/')));
    own.into_iter()
        .chain([
            "/sys/fs/cgroup/memory.max".to_owned(),
            "/sys/fs/cgroup/memory/memory.limit_in_bytes".to_owned(),
        ])
        .find_map(|path| std::fs::read_to_string(path).ok())
        .and_then(|text| parse_limit(&text))
}

/// A cgroup's limit as written: `max` (v2) or a number past 2^60 (v1's
/// "unlimited", rounded down to a page) is none.
fn parse_limit(text: &str) -> Option<u64> {
    let bytes: u64 = text.trim().parse().ok()?;
    (bytes < 1 << 60).then_some(bytes)
}

/// Logs what `served`'s caps let the process reach, against the
/// container's limit: a warning naming the pools when they pass it.
pub fn check(served: &Served) {
    let pools = pools(served);
    let peak = peak(&pools);
    let named: Vec<String> = pools
        .iter()
        .filter(|(_, bytes)| *bytes > 0)
        .map(|(name, bytes)| format!("{name}: {} MiB", bytes / MIB))
        .collect();
    match container_limit() {
        Some(limit) if peak > limit => tracing::warn!(
            limit_mib = limit / MIB,
            peak_mib = peak / MIB,
            pools = %named.join(", "),
            "clients that fill every pool the caps allow would take memory past the container's limit: \
             lower the caps or raise the limit (OPERATIONS.md, \"Memory\")"
        ),
        Some(limit) => tracing::info!(
            limit_mib = limit / MIB,
            peak_mib = peak / MIB,
            "the caps keep memory within the container's limit"
        ),
        None => tracing::info!(
            peak_mib = peak / MIB,
            pools = %named.join(", "),
            "no memory limit found; the caps let memory reach this"
        ),
    }
}

/// [`check`] for a server of these APIs (auth-server: `auth`; task-server:
/// `tasks`; `todo`: both).
pub fn check_server(
    server: &ServerArgs,
    auth: Option<&AuthSettings>,
    tasks: Option<&TaskSettings>,
) -> Result<(), Error> {
    let files = u64::try_from(todo_http::TaskApi::FILES_HELD_BYTES).unwrap_or(u64::MAX);
    check(&Served {
        limits: server.limits()?,
        live_streams: tasks.map_or(0, |t| t.live_streams_total(server.max_connections)),
        files: tasks.map_or(0, |_| files),
        hashing: auth.map_or(0, AuthSettings::hashing_bytes),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_limit_is_read_as_cgroups_write_it() {
        assert_eq!(parse_limit("268435456\n"), Some(256 * MIB));
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("9223372036854771712\n"), None);
        assert_eq!(parse_limit(""), None);
    }

    /// The peak of the pools named `kept` (by the start of their names).
    fn peak_of(served: &Served, kept: &[&str]) -> u64 {
        let pools: Vec<_> = pools(served)
            .into_iter()
            .filter(|(name, _)| kept.iter().any(|k| name.starts_with(k)))
            .collect();
        peak(&pools) / MIB
    }

    fn served(connections: usize, streams: u32, live_streams: usize) -> Served {
        Served {
            limits: HttpLimits {
                max_connections: connections,
                max_concurrent_streams: streams,
                ..HttpLimits::default()
            },
            live_streams,
            files: 0,
            hashing: 0,
        }
    }

    /// The estimate is at least every peak measured, and not far past it:
    /// session 32's attack (unread answers to writes on 512 connections of
    /// 8 streams, then of 16: 179 and 224 MiB), session 33's (those on 448
    /// connections of 16 streams, 256 stalled live streams and held
    /// request bodies at once: 303 MiB).
    #[test]
    fn the_estimate_is_at_least_every_peak_measured() {
        for (served, kept, measured) in [
            (served(512, 8, 0), &["connections", "answers"][..], 179),
            (served(512, 16, 0), &["connections", "answers"][..], 224),
            (
                served(448, 16, 256),
                &["connections", "answers", "request bodies", "live streams"][..],
                303,
            ),
        ] {
            let estimated = peak_of(&served, kept);
            assert!(
                (measured..=measured * 6 / 5).contains(&estimated),
                "{estimated} MiB estimated, {measured} MiB measured"
            );
        }
    }

    /// The deploy file at `path`, from the workspace's root.
    fn deploy_file(path: &str) -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(path),
        )
        .unwrap()
    }

    /// The value of `name` in the deploy file at `path` (the first line
    /// `name: "value"`, `name=value` or `name: value`).
    fn setting(path: &str, name: &str) -> String {
        deploy_file(path)
            .lines()
            .map(|line| line.trim().trim_start_matches("- "))
            .find_map(|line| {
                let rest = line.strip_prefix(name)?;
                let value = rest.strip_prefix('=').or_else(|| rest.strip_prefix(':'))?;
                Some(value.trim().trim_matches('"').to_owned())
            })
            .unwrap_or_else(|| panic!("{name} in {path}"))
    }

    /// A size as the deploy files write it (`384m`, `384Mi`).
    fn size(text: &str) -> u64 {
        let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u64>().unwrap() * MIB
    }

    /// The shipped compose set's and Kubernetes base's caps, read from
    /// their files, keep task-server within its memory limit there.
    #[test]
    fn the_shipped_caps_fit_the_shipped_task_server_limits() {
        let files = u64::try_from(todo_http::TaskApi::FILES_HELD_BYTES).unwrap();
        // compose: the `mem_limit` of the `x-task-server` block; Kubernetes:
        // the container's `limits: {…, memory: …}`.
        let compose = deploy_file("deploy/compose.yaml");
        let compose_limit = compose
            .split("x-task-server:")
            .nth(1)
            .and_then(|block| {
                block
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("mem_limit:"))
            })
            .unwrap()
            .trim()
            .to_owned();
        let pod = deploy_file("deploy/k8s/base/task-server.yaml");
        let pod_limit = pod
            .lines()
            .find_map(|l| l.trim().strip_prefix("limits:"))
            .and_then(|l| l.split("memory:").nth(1))
            .unwrap()
            .trim()
            .to_owned();
        for (settings, limit) in [
            ("deploy/compose.yaml", compose_limit),
            ("deploy/k8s/base/kustomization.yaml", pod_limit),
        ] {
            let connections: usize = setting(settings, "TODO_MAX_CONNECTIONS").parse().unwrap();
            let budget: usize = setting(settings, "TODO_BODY_BUDGET_BYTES").parse().unwrap();
            let limit = size(&limit);
            let limits = HttpLimits {
                max_connections: connections,
                body_budget_bytes: budget,
                ..HttpLimits::default()
            };
            let live = TaskSettings::default().live_streams_total(connections);
            let estimated = peak(&pools(&Served {
                limits,
                live_streams: live,
                files,
                hashing: 0,
            }));
            assert!(
                estimated <= limit,
                "{settings}: {} MiB estimated, {} MiB allowed",
                estimated / MIB,
                limit / MIB
            );
        }
    }
}
