//! Shared pieces of the benchmarks and the load harness.

/// Cheap argon2 parameters, for seeding many users quickly.
pub const LIGHT: todo_auth::Argon2Config = todo_auth::Argon2Config {
    memory_kib: 1024,
    iterations: 1,
    parallelism: 1,
};
