//! Every authenticated request of both APIs passes [`admit`]: the token's
//! signature and times, then the account's standing ([`AccessGate`]).
//! Both are decided on the executor's worker when the standing was read
//! within the last second; only a fresh read of the store crosses to the
//! blocking pool.

use std::sync::Arc;

use todo_core::{AccessClaims, AccessGate, ApiTokenSecret, Principal, Timestamp};

use crate::blocking::blocking;
use crate::problem::ApiError;

/// Whether verified `claims` may act, and as whom (the stored role).
pub(crate) async fn admit(
    gate: &Arc<AccessGate>,
    claims: AccessClaims,
) -> Result<Principal, ApiError> {
    if let Some(decision) = gate.admit_remembered(&claims) {
        return decision.map_err(ApiError::from);
    }
    let gate = Arc::clone(gate);
    blocking(move || gate.admit(&claims)).await
}

/// Whether an API token may act, as whom and with what grant, and when it
/// expires: decided in place from what was read within the last second,
/// else on the blocking pool.
pub(crate) async fn admit_api_token(
    gate: &Arc<AccessGate>,
    token: &str,
) -> Result<(Principal, Timestamp), ApiError> {
    let secret = ApiTokenSecret::parse(token).ok_or_else(ApiError::invalid_token)?;
    admit_api_secret(gate, secret).await
}

/// [`admit_api_token`] for a token already parsed.
pub(crate) async fn admit_api_secret(
    gate: &Arc<AccessGate>,
    secret: ApiTokenSecret,
) -> Result<(Principal, Timestamp), ApiError> {
    if let Some(decision) = gate.admit_api_token_remembered(&secret) {
        return decision.map_err(ApiError::from);
    }
    let gate = Arc::clone(gate);
    blocking(move || gate.admit_api_token(&secret)).await
}
