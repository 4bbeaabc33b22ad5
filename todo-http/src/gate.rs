//! Every authenticated request of both APIs passes [`admit`]: the token's
//! signature and times, then the account's standing ([`AccessGate`]).
//! Both are decided on the executor's worker when the standing was read
//! within the last second; only a fresh read of the store crosses to the
//! blocking pool.

use std::sync::Arc;

use todo_core::{AccessClaims, AccessGate, Principal};

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
