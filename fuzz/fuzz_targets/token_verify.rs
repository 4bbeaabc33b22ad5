//! The access-token verifier on arbitrary input: no panic, and nothing but
//! a token signed by the trusted key is ever accepted.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use todo_auth::{JwtVerifier, KeyAlgorithm, KeySet, SigningKey};
use todo_core::{AccessTokenVerifier, Timestamp};

fn verifier() -> &'static JwtVerifier {
    static VERIFIER: OnceLock<JwtVerifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let ed = SigningKey::generate(KeyAlgorithm::EdDsa).unwrap();
        let ec = SigningKey::generate(KeyAlgorithm::Es256).unwrap();
        let keys = KeySet::new([ed.public_key().clone(), ec.public_key().clone()]);
        JwtVerifier::new(keys, "todo-auth", "todo", 60)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let now = Timestamp::from_unix_micros(1_767_225_600_000_000).unwrap();
    // The keys are fresh and never sign anything here: nothing may verify.
    assert!(verifier().verify(token, now).is_err());
});
