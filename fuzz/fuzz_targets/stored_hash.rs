//! The stored-hash (PHC string) parse path: no panic, and absurd costs are
//! refused before any hashing.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use todo_auth::{Argon2Config, Argon2Hasher};
use todo_core::PasswordHash;

fn hasher() -> &'static Argon2Hasher {
    static HASHER: OnceLock<Argon2Hasher> = OnceLock::new();
    HASHER.get_or_init(|| {
        Argon2Hasher::new(Argon2Config {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = hasher().needs_rehash(&PasswordHash::new(text.to_owned()));
});
