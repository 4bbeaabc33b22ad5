//! Access tokens: what is accepted, and every forgery an attacker would try.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use todo_auth::{JwtSigner, JwtVerifier, KeyAlgorithm, KeySet, PublicKey, SigningKey};
use todo_core::{
    AccessClaims, AccessTokenSigner, AccessTokenVerifier, Role, Timestamp, TokenError,
    TokenRejection, UserId, Username,
};

const NOW: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_micros(seconds * 1_000_000).unwrap()
}

fn claims() -> AccessClaims {
    AccessClaims {
        subject: UserId::parse("01890a5d-ac96-774b-bcce-b302099a8057").unwrap(),
        username: Username::parse("alice").unwrap(),
        role: Role::User,
        issuer: "todo-auth".to_owned(),
        audience: "todo".to_owned(),
        issued_at: NOW,
        not_before: NOW,
        expires_at: NOW + 300,
        token_id: uuid::Uuid::from_u128(42),
        session: Some(todo_core::SessionId::from_uuid(uuid::Uuid::from_u128(43))),
    }
}

struct Keys {
    signer: JwtSigner,
    verifier: JwtVerifier,
    public: PublicKey,
    pem: String,
}

fn keys(algorithm: KeyAlgorithm) -> Keys {
    let key = SigningKey::generate(algorithm).unwrap();
    let public = key.public_key().clone();
    let pem = key.to_pem().to_string();
    let verifier = JwtVerifier::new(KeySet::new([public.clone()]), "todo-auth", "todo", 0);
    Keys {
        signer: JwtSigner::new(key),
        verifier,
        public,
        pem,
    }
}

fn rejected(result: Result<AccessClaims, TokenError>) -> TokenRejection {
    match result {
        Err(TokenError::Rejected(reason)) => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn segments(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

fn b64(json: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(json).unwrap())
}

#[test]
fn tokens_round_trip_with_both_algorithms() {
    for algorithm in [KeyAlgorithm::EdDsa, KeyAlgorithm::Es256] {
        let k = keys(algorithm);
        let token = k.signer.sign(&claims()).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, algorithm.jwt());
        assert_eq!(header.kid.as_deref(), Some(k.public.kid()));
        assert_eq!(k.verifier.verify(&token, at(NOW + 10)).unwrap(), claims());
    }
}

#[test]
fn expiry_and_not_before_are_checked_against_the_given_clock() {
    let k = keys(KeyAlgorithm::EdDsa);
    let token = k.signer.sign(&claims()).unwrap();
    assert!(k.verifier.verify(&token, at(NOW + 299)).is_ok());
    assert_eq!(
        rejected(k.verifier.verify(&token, at(NOW + 300))),
        TokenRejection::Expired
    );
    assert_eq!(
        rejected(k.verifier.verify(&token, at(NOW - 1))),
        TokenRejection::NotYetValid
    );

    // Leeway forgives skew, but never more than 60 s.
    let lenient = JwtVerifier::new(KeySet::new([k.public.clone()]), "todo-auth", "todo", 3600);
    assert!(lenient.verify(&token, at(NOW + 359)).is_ok());
    assert_eq!(
        rejected(lenient.verify(&token, at(NOW + 360))),
        TokenRejection::Expired
    );
    assert!(lenient.verify(&token, at(NOW - 60)).is_ok());
    assert_eq!(
        rejected(lenient.verify(&token, at(NOW - 61))),
        TokenRejection::NotYetValid
    );
}

#[test]
fn issuer_and_audience_must_match() {
    let k = keys(KeyAlgorithm::EdDsa);
    for (issuer, audience) in [("someone-else", "todo"), ("todo-auth", "other-app")] {
        let token = k.signer.sign(&AccessClaims {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ..claims()
        });
        assert_eq!(
            rejected(k.verifier.verify(&token.unwrap(), at(NOW))),
            TokenRejection::WrongAudience
        );
    }
}

#[test]
fn alg_none_is_refused() {
    let k = keys(KeyAlgorithm::EdDsa);
    let good = segments(&k.signer.sign(&claims()).unwrap());
    let header = serde_json::json!({"alg": "none", "typ": "JWT", "kid": k.public.kid()});
    for token in [
        format!("{}.{}.", b64(&header), good[1]),
        format!("{}.{}", b64(&header), good[1]),
    ] {
        assert!(k.verifier.verify(&token, at(NOW)).is_err(), "{token}");
    }
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    let k = keys(KeyAlgorithm::EdDsa);
    let public_pem = k.public.to_pem();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(k.public.kid().to_owned());
    let wire = serde_json::json!({
        "sub": "01890a5d-ac96-774b-bcce-b302099a8057", "username": "alice", "role": "admin",
        "iss": "todo-auth", "aud": "todo", "iat": NOW, "nbf": NOW, "exp": NOW + 300,
        "jti": "00000000-0000-0000-0000-00000000002a"
    });
    let forged = jsonwebtoken::encode(
        &header,
        &wire,
        &EncodingKey::from_secret(public_pem.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        rejected(k.verifier.verify(&forged, at(NOW))),
        TokenRejection::BadSignature
    );
}

#[test]
fn a_stripped_or_mismatched_signature_is_refused() {
    let k = keys(KeyAlgorithm::EdDsa);
    let good = segments(&k.signer.sign(&claims()).unwrap());
    let stripped = format!("{}.{}.", good[0], good[1]);
    assert!(k.verifier.verify(&stripped, at(NOW)).is_err());
    // The signature of another token.
    let other = segments(
        &k.signer
            .sign(&AccessClaims {
                expires_at: NOW + 1,
                ..claims()
            })
            .unwrap(),
    );
    let swapped = format!("{}.{}.{}", good[0], good[1], other[2]);
    assert_eq!(
        rejected(k.verifier.verify(&swapped, at(NOW))),
        TokenRejection::BadSignature
    );
}

#[test]
fn tampered_claims_break_the_signature() {
    let k = keys(KeyAlgorithm::Es256);
    let good = segments(&k.signer.sign(&claims()).unwrap());
    let payload: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&good[1]).unwrap()).unwrap();
    for (field, value) in [
        ("role", serde_json::json!("admin")),
        (
            "sub",
            serde_json::json!("01890a5d-ac96-774b-bcce-b302099a8058"),
        ),
        ("exp", serde_json::json!(NOW + 999_999)),
    ] {
        let mut tampered = payload.clone();
        tampered[field] = value;
        let token = format!("{}.{}.{}", good[0], b64(&tampered), good[2]);
        assert_eq!(
            rejected(k.verifier.verify(&token, at(NOW))),
            TokenRejection::BadSignature,
            "{field}"
        );
    }
}

#[test]
fn unknown_keys_and_foreign_keys_are_refused() {
    let trusted = keys(KeyAlgorithm::EdDsa);
    let stranger = keys(KeyAlgorithm::EdDsa);
    let token = stranger.signer.sign(&claims()).unwrap();
    assert_eq!(
        rejected(trusted.verifier.verify(&token, at(NOW))),
        TokenRejection::UnknownKey
    );

    // The stranger's signature under the trusted key's kid.
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(trusted.public.kid().to_owned());
    let wire: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(segments(&token)[1].as_bytes())
            .unwrap(),
    )
    .unwrap();
    let key = EncodingKey::from_ed_pem(stranger.pem.as_bytes()).unwrap();
    let forged = jsonwebtoken::encode(&header, &wire, &key).unwrap();
    assert_eq!(
        rejected(trusted.verifier.verify(&forged, at(NOW))),
        TokenRejection::BadSignature
    );

    // No kid at all.
    let mut bare = Header::new(Algorithm::EdDSA);
    bare.kid = None;
    let kidless = jsonwebtoken::encode(&bare, &wire, &key).unwrap();
    assert_eq!(
        rejected(trusted.verifier.verify(&kidless, at(NOW))),
        TokenRejection::UnknownKey
    );
}

#[test]
fn garbage_is_malformed_and_never_panics() {
    let k = keys(KeyAlgorithm::EdDsa);
    let huge = "a".repeat(100_000);
    for junk in [
        "",
        ".",
        "..",
        "a.b.c",
        "eyJ.eyJ.sig",
        "\u{0}\u{1}",
        "ünïcode.ünï.cöde",
        &huge,
    ] {
        assert!(k.verifier.verify(junk, at(NOW)).is_err(), "{junk:.20}");
    }
    assert_eq!(
        rejected(k.verifier.verify(&huge, at(NOW))),
        TokenRejection::Malformed
    );
}

#[test]
fn rotating_keys_keeps_old_tokens_valid_until_the_old_key_is_dropped() {
    let old = keys(KeyAlgorithm::EdDsa);
    let new = keys(KeyAlgorithm::EdDsa);
    let old_token = old.signer.sign(&claims()).unwrap();
    let new_token = new.signer.sign(&claims()).unwrap();
    let verifier = JwtVerifier::new(KeySet::new([old.public.clone()]), "todo-auth", "todo", 0);
    assert!(verifier.verify(&new_token, at(NOW)).is_err());
    verifier.set_keys(KeySet::new([new.public.clone(), old.public.clone()]));
    assert!(verifier.verify(&old_token, at(NOW)).is_ok());
    assert!(verifier.verify(&new_token, at(NOW)).is_ok());
    verifier.set_keys(KeySet::new([new.public.clone()]));
    assert_eq!(
        rejected(verifier.verify(&old_token, at(NOW))),
        TokenRejection::UnknownKey
    );
    assert!(verifier.verify(&new_token, at(NOW)).is_ok());
}

#[test]
fn keys_survive_pem_round_trips_with_the_same_kid() {
    for algorithm in [KeyAlgorithm::EdDsa, KeyAlgorithm::Es256] {
        let key = SigningKey::generate(algorithm).unwrap();
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let reloaded = SigningKey::from_pem(&pem).unwrap();
        assert_eq!(reloaded.public_key().kid(), key.public_key().kid());
        assert_eq!(reloaded.public_key().algorithm(), algorithm);
        let public_pem = key.public_key().to_pem();
        assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let public = PublicKey::from_pem(&public_pem).unwrap();
        assert_eq!(public.kid(), key.public_key().kid());
        // A token from the reloaded key verifies with the public PEM alone.
        let token = JwtSigner::new(reloaded).sign(&claims()).unwrap();
        let verifier = JwtVerifier::new(KeySet::new([public]), "todo-auth", "todo", 0);
        assert!(verifier.verify(&token, at(NOW)).is_ok());
        assert!(
            !format!("{key:?}").contains(&pem[30..60]),
            "Debug never prints the key"
        );
    }
    assert!(SigningKey::from_pem("not a key").is_err());
    assert!(
        PublicKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err()
    );
    let private = SigningKey::generate(KeyAlgorithm::EdDsa).unwrap().to_pem();
    assert!(
        PublicKey::from_pem(&private).is_err(),
        "a private key is not a public key"
    );
}

#[test]
fn the_jwks_lists_every_key_and_reads_back() {
    let a = keys(KeyAlgorithm::EdDsa);
    let b = keys(KeyAlgorithm::Es256);
    let set = KeySet::new([a.public.clone(), b.public.clone(), a.public.clone()]);
    assert_eq!(set.iter().count(), 2, "a key given twice is kept once");
    let jwks = set.to_jwks().unwrap();
    let json = serde_json::to_value(&jwks).unwrap();
    let entries = json["keys"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["kty"], "OKP");
    assert_eq!(entries[0]["crv"], "Ed25519");
    assert_eq!(entries[0]["alg"], "EdDSA");
    assert_eq!(entries[0]["use"], "sig");
    assert_eq!(entries[0]["kid"], a.public.kid());
    assert_eq!(entries[1]["kty"], "EC");
    assert_eq!(entries[1]["alg"], "ES256");
    assert!(
        entries.iter().all(|k| k.get("d").is_none()),
        "no private part"
    );

    let parsed: todo_auth::JwkSet = serde_json::from_value(json).unwrap();
    let back = KeySet::from_jwks(&parsed);
    let kids: Vec<&str> = back.iter().map(PublicKey::kid).collect();
    assert_eq!(kids, [a.public.kid(), b.public.kid()]);
    let token = b.signer.sign(&claims()).unwrap();
    let verifier = JwtVerifier::new(back, "todo-auth", "todo", 0);
    assert!(verifier.verify(&token, at(NOW)).is_ok());
}

#[test]
fn a_jwks_kid_is_recomputed_not_trusted() {
    let a = keys(KeyAlgorithm::EdDsa);
    let mut json =
        serde_json::to_value(KeySet::new([a.public.clone()]).to_jwks().unwrap()).unwrap();
    json["keys"][0]["kid"] = serde_json::json!("attacker-chosen");
    let parsed: todo_auth::JwkSet = serde_json::from_value(json).unwrap();
    let set = KeySet::from_jwks(&parsed);
    assert!(set.find("attacker-chosen").is_none());
    assert!(set.find(a.public.kid()).is_some());
}

#[test]
fn signing_keys_are_saved_owner_only_and_never_overwritten() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signing-key.pem");
    let key = SigningKey::generate(KeyAlgorithm::EdDsa).unwrap();
    key.save(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        SigningKey::load(&path).unwrap().public_key().kid(),
        key.public_key().kid()
    );
    let other = SigningKey::generate(KeyAlgorithm::EdDsa).unwrap();
    assert!(
        other.save(&path).is_err(),
        "an existing key is never overwritten"
    );
    assert_eq!(
        SigningKey::load(&path).unwrap().public_key().kid(),
        key.public_key().kid()
    );
    assert!(SigningKey::load(&dir.path().join("missing.pem")).is_err());
}

#[test]
fn the_cache_answers_like_the_verifier_and_honours_expiry() {
    use todo_auth::CachingVerifier;
    let k = keys(KeyAlgorithm::EdDsa);
    let token = k.signer.sign(&claims()).unwrap();
    let cached = CachingVerifier::new(
        JwtVerifier::new(KeySet::new([k.public.clone()]), "todo-auth", "todo", 0),
        2,
    );
    assert_eq!(cached.verify(&token, at(NOW + 1)).unwrap(), claims());
    assert_eq!(cached.len(), 1);
    assert_eq!(
        cached.verify(&token, at(NOW + 2)).unwrap(),
        claims(),
        "a hit"
    );
    assert_eq!(
        rejected(cached.verify(&token, at(NOW + 300))),
        TokenRejection::Expired,
        "a hit still expires"
    );
    assert_eq!(
        rejected(cached.verify(&token, at(NOW - 1))),
        TokenRejection::NotYetValid
    );
    // Failures are never remembered: a forgery fails every time.
    let forged = format!("{}x", &token[..token.len() - 1]);
    for _ in 0..3 {
        assert!(cached.verify(&forged, at(NOW + 1)).is_err());
    }
    // Bounded.
    for i in 0..5 {
        let other = k
            .signer
            .sign(&AccessClaims {
                expires_at: NOW + 300 + i,
                ..claims()
            })
            .unwrap();
        cached.verify(&other, at(NOW + 1)).unwrap();
        assert!(cached.len() <= 2);
    }
    cached.clear();
    assert!(cached.is_empty());
}

/// Signs `header` and `payload` (raw JSON) with `key`: a token whose header
/// says whatever a test wants.
fn sign_raw(header: &serde_json::Value, payload: &serde_json::Value, pem: &str) -> String {
    let message = format!("{}.{}", b64(header), b64(payload));
    let key = EncodingKey::from_ed_pem(pem.as_bytes()).unwrap();
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::EdDSA).unwrap();
    format!("{message}.{signature}")
}

#[test]
fn a_cache_hit_answers_like_a_miss_at_the_leeway_edges() {
    use todo_auth::CachingVerifier;
    use todo_core::Clock;
    use todo_core::testing::ManualClock;
    const LEEWAY: i64 = 30;
    let k = keys(KeyAlgorithm::EdDsa);
    let token = k.signer.sign(&claims()).unwrap();
    let verifier = || {
        JwtVerifier::new(
            KeySet::new([k.public.clone()]),
            "todo-auth",
            "todo",
            LEEWAY.cast_unsigned(),
        )
    };
    let answer = |r: Result<AccessClaims, TokenError>| r.map_err(|e| rejected(Err(e)));
    let exp = claims().expires_at;
    let nbf = claims().not_before;
    for edge in [
        exp + LEEWAY - 1,
        exp + LEEWAY,
        exp + LEEWAY + 1,
        nbf - LEEWAY - 1,
        nbf - LEEWAY,
        nbf - LEEWAY + 1,
    ] {
        // Warm: the token verified once, within its lifetime; then the
        // clock moves to the edge.
        let clock = ManualClock::at(at(NOW + 1));
        let warm = CachingVerifier::new(verifier(), 16);
        warm.verify(&token, clock.now()).unwrap();
        assert_eq!(warm.len(), 1);
        let clock = ManualClock::at(at(edge));
        let hit = answer(warm.verify(&token, clock.now()));
        let miss = answer(CachingVerifier::new(verifier(), 16).verify(&token, clock.now()));
        let plain = answer(verifier().verify(&token, clock.now()));
        assert_eq!(miss, plain, "a miss is the verifier's answer at {edge}");
        assert_eq!(hit, miss, "a hit answers like a miss at {}", edge - NOW);
    }
}

#[test]
fn the_cache_forgets_tokens_when_the_keys_change() {
    use std::sync::Arc;
    use todo_auth::CachingVerifier;
    let old = keys(KeyAlgorithm::EdDsa);
    let new = keys(KeyAlgorithm::EdDsa);
    let token = old.signer.sign(&claims()).unwrap();
    let verifier = Arc::new(JwtVerifier::new(
        KeySet::new([old.public.clone()]),
        "todo-auth",
        "todo",
        0,
    ));
    let cached = CachingVerifier::new(Arc::clone(&verifier), 16);
    assert_eq!(cached.verify(&token, at(NOW + 1)).unwrap(), claims());
    // The old key is withdrawn (a refetched JWKS without it).
    verifier.set_keys(KeySet::new([new.public.clone()]));
    assert_eq!(
        rejected(cached.verify(&token, at(NOW + 2))),
        TokenRejection::UnknownKey,
        "a token of a withdrawn key is refused, remembered or not"
    );
    // The key comes back: the token verifies again (and is remembered anew).
    verifier.set_keys(KeySet::new([old.public.clone(), new.public.clone()]));
    assert_eq!(cached.verify(&token, at(NOW + 3)).unwrap(), claims());
    assert_eq!(cached.verify(&token, at(NOW + 4)).unwrap(), claims());
}

#[test]
fn a_crit_header_is_refused() {
    let k = keys(KeyAlgorithm::EdDsa);
    let payload: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(&segments(&k.signer.sign(&claims()).unwrap())[1])
            .unwrap(),
    )
    .unwrap();
    let kid = k.public.kid();
    let plain = sign_raw(
        &serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": kid}),
        &payload,
        &k.pem,
    );
    assert_eq!(
        k.verifier.verify(&plain, at(NOW + 1)).unwrap(),
        claims(),
        "the same token without crit verifies"
    );
    for crit in [
        serde_json::json!(["exp"]),
        serde_json::json!(["urn:example:must-understand"]),
        serde_json::json!([]),
        serde_json::Value::Null,
    ] {
        let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": kid, "crit": crit});
        let token = sign_raw(&header, &payload, &k.pem);
        assert!(
            k.verifier.verify(&token, at(NOW + 1)).is_err(),
            "crit {crit} must be refused"
        );
    }
}

/// `sid` names the session: a well-signed token whose `sid` is no session
/// id is refused as bad claims; one without `sid` (issued before sessions
/// were named) verifies, naming none.
#[test]
fn a_session_id_that_is_none_is_refused_and_an_absent_one_names_none() {
    let k = keys(KeyAlgorithm::EdDsa);
    let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": k.public.kid()});
    let payload = |sid: Option<&str>| {
        let mut claims = serde_json::json!({
            "sub": "01890a5d-ac96-774b-bcce-b302099a8057", "username": "alice",
            "role": "user", "iss": "todo-auth", "aud": "todo", "iat": NOW, "nbf": NOW,
            "exp": NOW + 300, "jti": "01890a5d-ac96-774b-bcce-b302099a8058",
        });
        if let Some(sid) = sid {
            claims["sid"] = serde_json::Value::from(sid);
        }
        claims
    };
    let bad = sign_raw(&header, &payload(Some("not-a-session")), &k.pem);
    assert_eq!(
        rejected(k.verifier.verify(&bad, at(NOW))),
        TokenRejection::BadClaims
    );
    let old = sign_raw(&header, &payload(None), &k.pem);
    assert_eq!(k.verifier.verify(&old, at(NOW)).unwrap().session, None);
    let named = sign_raw(
        &header,
        &payload(Some("01890a5d-ac96-774b-bcce-b302099a8059")),
        &k.pem,
    );
    assert_eq!(
        k.verifier
            .verify(&named, at(NOW))
            .unwrap()
            .session
            .map(|s| s.to_string()),
        Some("01890a5d-ac96-774b-bcce-b302099a8059".to_owned())
    );
}
