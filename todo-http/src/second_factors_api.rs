//! Second factors on the wire: a TOTP authenticator enrolled
//! (`/v1/users/me/totp`), confirmed and removed by its user; passkeys
//! registered, listed and removed (`/v1/users/me/passkeys`); both removed
//! by an administrator (`/v1/users/{id}/second-factors`). The two-step
//! login and the passkey sign-in are with the other session endpoints
//! (`auth_api.rs`).

use std::sync::Arc;

use axum::extract::State;
use http::StatusCode;
use qrcode::QrCode;
use qrcode::render::svg;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use todo_core::{
    PasskeyId, PasskeyName, PasskeyRecord, RecoveryCode, SecondFactorAnswer, TotpCode, UserRef,
};
use utoipa::ToSchema;

use crate::auth_api::{Admin, AuthApi};
use crate::blocking::call;
use crate::extract::{Caller, Client, Json, Path};
use crate::front::{ApiResponse, json_value, no_content};
use crate::problem::ApiError;

type Auth = State<Arc<AuthApi>>;

/// A code offered for a second factor: six digits from the authenticator,
/// else a recovery code; anything else is refused as `field`'s.
pub(crate) fn answer(field: &'static str, raw: &str) -> Result<SecondFactorAnswer, ApiError> {
    if let Some(code) = TotpCode::parse(raw) {
        return Ok(SecondFactorAnswer::Totp(code));
    }
    RecoveryCode::parse(raw)
        .map(SecondFactorAnswer::RecoveryCode)
        .ok_or_else(|| {
            ApiError::field(
                field,
                "is neither a six-digit code nor a recovery code (xxxx-xxxx-xxxx-xxxx)",
            )
        })
}

/// A passkey's answer confirming an action: to a challenge from
/// `POST /v1/auth/passkey/start`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PasskeyProof)]
pub(crate) struct PasskeyProof {
    challenge_id: String,
    /// What `navigator.credentials.get` answered.
    #[schema(value_type = Object)]
    credential: Box<RawValue>,
}

/// The second factor confirming an action: a code, else a passkey's
/// answer (a `challenge_id` that cannot be one is refused as a wrong
/// answer is: 403).
pub(crate) fn confirmation(
    code: Option<&str>,
    passkey: Option<PasskeyProof>,
) -> Result<Option<SecondFactorAnswer>, ApiError> {
    match (code, passkey) {
        (Some(_), Some(_)) => Err(ApiError::field("code", "give code or passkey, one of them")),
        (Some(code), None) => answer("code", code).map(Some),
        (None, Some(proof)) => Ok(Some(SecondFactorAnswer::Passkey {
            challenge_id: todo_core::ChallengeId::parse(&proof.challenge_id)
                .ok_or_else(|| ApiError::from(todo_core::Error::WrongCode))?,
            answer: proof.credential.get().to_owned(),
        })),
        (None, None) => Ok(None),
    }
}

/// The caller's password, to begin an enrolment (and one of their
/// passkeys' answers when they have any).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TotpEnrolmentRequest)]
pub(crate) struct BeginBody {
    current_password: String,
    /// One of the caller's passkeys: required when they have any.
    #[serde(default)]
    passkey: Option<PasskeyProof>,
}

/// An enrolment begun: what the authenticator app takes, shown this once.
#[derive(Serialize, ToSchema)]
#[schema(as = TotpEnrolment)]
pub(crate) struct EnrolmentDto {
    /// The secret in base32, to type in.
    secret: String,
    /// The `otpauth://` URI, to scan.
    otpauth_uri: String,
    /// The URI as a QR code, an SVG document.
    qr_svg: String,
}

/// The code that confirms an enrolment.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TotpConfirmation)]
pub(crate) struct ConfirmBody {
    /// Six digits from the authenticator.
    code: String,
}

/// The recovery codes of a confirmed enrolment, shown this once.
#[derive(Serialize, ToSchema)]
#[schema(as = RecoveryCodes)]
pub(crate) struct RecoveryCodesDto {
    /// Ten codes, each good for one sign-in in place of the authenticator.
    recovery_codes: Vec<String>,
}

/// The password and a code (or a passkey's answer), to remove the
/// authenticator.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TotpRemoval)]
pub(crate) struct RemoveBody {
    current_password: String,
    /// Six digits from the authenticator, or a recovery code.
    #[serde(default)]
    code: Option<String>,
    /// Or one of the caller's passkeys.
    #[serde(default)]
    passkey: Option<PasskeyProof>,
}

/// The URI as a QR code: SVG, medium error correction, black on white,
/// a quiet zone around it.
fn qr_svg(uri: &str) -> Result<String, ApiError> {
    let code = QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| ApiError::internal(format!("QR code: {e}")))?;
    Ok(code
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build())
}

/// Begin enrolling a TOTP authenticator (pending until confirmed).
#[utoipa::path(post, path = "/v1/users/me/totp", request_body = BeginBody,
    responses(
        (status = 201, description = "The secret, its URI and QR code: shown this once", body = EnrolmentDto),
        (status = 400, description = "The account has passkeys and no passkey's answer was given"),
        (status = 403, description = "Current password or passkey wrong"),
        (status = 409, description = "An authenticator is enrolled already: remove it first"),
        (status = 429, description = "Too many wrong passwords"),
        (status = 503, description = "This server offers no second factors"),
    ))]
pub(crate) async fn begin_totp(
    State(api): Auth,
    Client(client): Client,
    Caller(me): Caller,
    Json(body, _held): Json<BeginBody>,
) -> Result<ApiResponse, ApiError> {
    let answer = confirmation(None, body.passkey)?;
    let enrolment = call(&api.services().account, move |s| {
        s.begin_totp(client, &me, &body.current_password, answer.as_ref())
    })
    .await?;
    let mut response = json_value(
        StatusCode::CREATED,
        &EnrolmentDto {
            secret: enrolment.secret.base32().to_string(),
            otpauth_uri: enrolment.uri.to_string(),
            qr_svg: qr_svg(&enrolment.uri)?,
        },
    )?;
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// Confirm the enrolment with a code; answers the recovery codes.
#[utoipa::path(post, path = "/v1/users/me/totp/confirm", request_body = ConfirmBody,
    responses(
        (status = 200, description = "Enrolled: ten recovery codes, shown this once", body = RecoveryCodesDto),
        (status = 400, description = "Not six digits"),
        (status = 403, description = "Wrong code"),
        (status = 409, description = "No enrolment pending (or it waited past 15 minutes)"),
        (status = 429, description = "Too many wrong codes"),
    ))]
pub(crate) async fn confirm_totp(
    State(api): Auth,
    Client(client): Client,
    Caller(me): Caller,
    Json(body, _held): Json<ConfirmBody>,
) -> Result<ApiResponse, ApiError> {
    let code =
        TotpCode::parse(&body.code).ok_or_else(|| ApiError::field("code", "is not six digits"))?;
    let codes = call(&api.services().account, move |s| {
        s.confirm_totp(client, &me, code)
    })
    .await?;
    let mut response = json_value(
        StatusCode::OK,
        &RecoveryCodesDto {
            recovery_codes: codes.iter().map(|c| c.expose().to_owned()).collect(),
        },
    )?;
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// Remove my authenticator and recovery codes (the password and a code).
#[utoipa::path(delete, path = "/v1/users/me/totp", request_body = RemoveBody,
    responses(
        (status = 204, description = "Removed: a password alone signs in again"),
        (status = 400, description = "The code is not one"),
        (status = 403, description = "Current password or code wrong"),
        (status = 404, description = "No authenticator enrolled"),
        (status = 429, description = "Too many wrong passwords or codes"),
    ))]
pub(crate) async fn remove_totp(
    State(api): Auth,
    Client(client): Client,
    Caller(me): Caller,
    Json(body, _held): Json<RemoveBody>,
) -> Result<ApiResponse, ApiError> {
    let answer = confirmation(body.code.as_deref(), body.passkey)?
        .ok_or_else(|| ApiError::field("code", "is required"))?;
    call(&api.services().account, move |s| {
        s.remove_totp(client, &me, &body.current_password, &answer)
    })
    .await?;
    Ok(no_content())
}

/// Remove a user's second factors (admin; audited): for one who lost both
/// the authenticator and the recovery codes.
#[utoipa::path(delete, path = "/v1/users/{id}/second-factors",
    params(Path<UserRef>),
    responses(
        (status = 204, description = "Removed: a password alone signs the user in"),
        (status = 403, description = "Not an admin"),
        (status = 404, description = "No such user"),
    ))]
pub(crate) async fn remove_second_factors(
    State(api): Auth,
    Admin(me): Admin,
    Path(id): Path<UserRef>,
) -> Result<ApiResponse, ApiError> {
    call(&api.services().admin, move |s| {
        s.remove_second_factors(&me, id)
    })
    .await?;
    Ok(no_content())
}

/// The password and, when the account has a second factor, a code or a
/// passkey's answer: to add a passkey.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PasskeyRegistrationStart)]
pub(crate) struct StartRegistrationBody {
    current_password: String,
    /// Six digits from the authenticator, or a recovery code.
    #[serde(default)]
    code: Option<String>,
    /// Or one of the caller's passkeys.
    #[serde(default)]
    passkey: Option<PasskeyProof>,
}

/// Begin registering a passkey (the password again, and a second factor
/// when the account has one): the options for `navigator.credentials.create`.
#[utoipa::path(post, path = "/v1/users/me/passkeys/register/start", request_body = StartRegistrationBody,
    responses(
        (status = 200, description = "WebAuthn creation options (`{publicKey: …}`); the registration waits five minutes for its finish", body = Object),
        (status = 400, description = "The account has a second factor and neither a code nor a passkey's answer was given"),
        (status = 403, description = "Current password, code or passkey wrong; or ten passkeys already (urn:todo:problem:quota-exceeded)"),
        (status = 429, description = "Too many wrong passwords or codes"),
        (status = 503, description = "This server offers no passkeys (no --public-url)"),
    ))]
pub(crate) async fn start_passkey_registration(
    State(api): Auth,
    Client(client): Client,
    Caller(me): Caller,
    Json(body, _held): Json<StartRegistrationBody>,
) -> Result<ApiResponse, ApiError> {
    let answer = confirmation(body.code.as_deref(), body.passkey)?;
    let options = call(&api.services().account, move |s| {
        s.start_passkey_registration(client, &me, &body.current_password, answer.as_ref())
    })
    .await?;
    raw_json(StatusCode::OK, options)
}

/// A passkey's registration finished: its name and the browser's answer.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PasskeyRegistration)]
pub(crate) struct FinishRegistrationBody {
    /// What to call it: 1 to 64 characters.
    name: String,
    /// What `navigator.credentials.create` answered (a
    /// `PublicKeyCredential`, its binary fields in base64url).
    #[schema(value_type = Object)]
    credential: Box<RawValue>,
}

/// A passkey on the wire (never its key).
#[derive(Serialize, ToSchema)]
#[schema(as = Passkey)]
pub(crate) struct PasskeyDto {
    #[schema(format = Uuid)]
    id: String,
    name: String,
    created_at: String,
    /// When it last signed its user in.
    last_used_at: Option<String>,
}

impl From<&PasskeyRecord> for PasskeyDto {
    fn from(passkey: &PasskeyRecord) -> Self {
        Self {
            id: passkey.id.to_string(),
            name: passkey.name.as_str().to_owned(),
            created_at: passkey.created_at.to_string(),
            last_used_at: passkey.last_used_at.map(|at| at.to_string()),
        }
    }
}

/// The caller's passkeys, oldest first.
#[derive(Serialize, ToSchema)]
#[schema(as = PasskeyList)]
pub(crate) struct PasskeysDto {
    items: Vec<PasskeyDto>,
}

/// Finish registering a passkey with the browser's answer.
#[utoipa::path(post, path = "/v1/users/me/passkeys/register/finish", request_body = FinishRegistrationBody,
    responses(
        (status = 201, description = "Registered", body = PasskeyDto),
        (status = 400, description = "A bad name, no registration begun in the last five minutes, or an answer that does not hold (urn:todo:problem:passkey-refused)"),
        (status = 403, description = "Ten passkeys already"),
        (status = 409, description = "This passkey is registered already"),
    ))]
pub(crate) async fn finish_passkey_registration(
    State(api): Auth,
    Client(client): Client,
    Caller(me): Caller,
    Json(body, _held): Json<FinishRegistrationBody>,
) -> Result<ApiResponse, ApiError> {
    let name = PasskeyName::parse(&body.name).map_err(|e| ApiError::validation(vec![e]))?;
    let passkey = call(&api.services().account, move |s| {
        s.finish_passkey_registration(client, &me, name, body.credential.get())
    })
    .await?;
    json_value(StatusCode::CREATED, &PasskeyDto::from(&passkey))
}

/// My passkeys.
#[utoipa::path(get, path = "/v1/users/me/passkeys",
    responses((status = 200, description = "My passkeys, oldest first", body = PasskeysDto)))]
pub(crate) async fn list_passkeys(
    State(api): Auth,
    Caller(me): Caller,
) -> Result<ApiResponse, ApiError> {
    let passkeys = call(&api.services().account, move |s| s.list_passkeys(&me)).await?;
    json_value(
        StatusCode::OK,
        &PasskeysDto {
            items: passkeys.iter().map(PasskeyDto::from).collect(),
        },
    )
}

/// The password again (and a code when an authenticator is enrolled), to
/// remove a passkey.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PasskeyRemoval)]
pub(crate) struct RemovePasskeyBody {
    current_password: String,
    /// Six digits from the authenticator, or a recovery code.
    #[serde(default)]
    code: Option<String>,
    /// Or one of the caller's passkeys (this one too): one of the two is
    /// required.
    #[serde(default)]
    passkey: Option<PasskeyProof>,
}

/// Remove one of my passkeys (the password again, and a passkey's answer
/// or a code).
#[utoipa::path(delete, path = "/v1/users/me/passkeys/{id}", request_body = RemovePasskeyBody,
    params(Path<PasskeyId>),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Neither a code nor a passkey's answer"),
        (status = 403, description = "Current password, code or passkey wrong"),
        (status = 404, description = "No such passkey of mine"),
        (status = 429, description = "Too many wrong passwords or codes"),
    ))]
pub(crate) async fn remove_passkey(
    State(api): Auth,
    Client(client): Client,
    Caller(me): Caller,
    Path(id): Path<PasskeyId>,
    Json(body, _held): Json<RemovePasskeyBody>,
) -> Result<ApiResponse, ApiError> {
    let answer = confirmation(body.code.as_deref(), body.passkey)?;
    call(&api.services().account, move |s| {
        s.remove_passkey(client, &me, id, &body.current_password, answer.as_ref())
    })
    .await?;
    Ok(no_content())
}

/// A JSON document made by the ceremonies' library, answered as it is
/// (its challenge is good once: no cache keeps it).
pub(crate) fn raw_json(status: StatusCode, json: String) -> Result<ApiResponse, ApiError> {
    let mut response = crate::front::json(status, bytes::Bytes::from(json));
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}
