//! argon2id at the configured parameters; access-token signing and
//! verification with EdDSA and ES256.
//!
//! `cargo bench -p todo-benches --bench crypto`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use todo_auth::{
    Argon2Config, Argon2Hasher, JwtSigner, JwtVerifier, KeyAlgorithm, KeySet, SigningKey,
};
use todo_core::{
    AccessClaims, AccessTokenSigner, AccessTokenVerifier, Password, PasswordHasher, Role,
    Timestamp, UserId, Username,
};

fn argon2(c: &mut Criterion) {
    let hasher = Argon2Hasher::new(Argon2Config::default()).unwrap();
    let password = Password::offered("correct horse battery staple").unwrap();
    let hash = hasher.hash(&password).unwrap();
    let mut group = c.benchmark_group("argon2id m=19456 t=2 p=1");
    group.sample_size(20);
    group.bench_function("hash", |b| {
        b.iter(|| hasher.hash(black_box(&password)).unwrap())
    });
    group.bench_function("verify", |b| {
        b.iter(|| {
            hasher
                .verify(black_box(&password), black_box(&hash))
                .unwrap()
        })
    });
    group.finish();
}

fn tokens(c: &mut Criterion) {
    let claims = AccessClaims {
        subject: UserId::parse("01890a5d-ac96-774b-bcce-b302099a8057").unwrap(),
        username: Username::parse("alice").unwrap(),
        role: Role::User,
        issuer: "todo-auth".into(),
        audience: "todo".into(),
        issued_at: 1_767_225_600,
        not_before: 1_767_225_600,
        expires_at: 1_767_225_900,
        token_id: uuid::Uuid::from_u128(1),
        session: None,
    };
    let now = Timestamp::from_unix_micros(1_767_225_700_000_000).unwrap();
    for algorithm in [KeyAlgorithm::EdDsa, KeyAlgorithm::Es256] {
        let key = SigningKey::generate(algorithm).unwrap();
        let verifier = JwtVerifier::new(
            KeySet::new([key.public_key().clone()]),
            "todo-auth",
            "todo",
            0,
        );
        let signer = JwtSigner::new(key);
        let token = signer.sign(&claims).unwrap();
        let mut group = c.benchmark_group(format!("access token {}", algorithm.as_str()));
        group.bench_function("sign", |b| {
            b.iter(|| signer.sign(black_box(&claims)).unwrap())
        });
        group.bench_function("verify", |b| {
            b.iter(|| verifier.verify(black_box(&token), now).unwrap())
        });
        group.finish();
    }
}

criterion_group!(benches, argon2, tokens);
criterion_main!(benches);
