//! Passkey ceremonies on webauthn-rs (kanidm's; pure Rust, its crypto on
//! RustCrypto's crates): the relying party's id and origin from
//! configuration, user verification required, discoverable credentials
//! (a sign-in asks no username). The states between a ceremony's steps are
//! serialised for the core to keep in the store, so the second step may
//! reach another instance.

use todo_core::{NewCredential, PasskeyCeremonies, PasskeyRefusal, UserId, Username};
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Webauthn, WebauthnBuilder,
};

use crate::error::KeyError;

/// The WebAuthn relying party: this site, as browsers scope passkeys.
pub struct WebauthnCeremonies {
    webauthn: Webauthn,
}

impl std::fmt::Debug for WebauthnCeremonies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebauthnCeremonies").finish_non_exhaustive()
    }
}

fn refusal(error: impl std::error::Error + Send + Sync + 'static) -> PasskeyRefusal {
    PasskeyRefusal(Box::new(error))
}

impl WebauthnCeremonies {
    /// The relying party of `origin` (the page's `https://` origin): its
    /// id is the origin's host, passkeys made for it work there only.
    ///
    /// # Errors
    ///
    /// [`KeyError::Relying`] for an origin without a host, or not
    /// `https` (browsers allow WebAuthn on `http` for `localhost` only).
    pub fn new(origin: &str, name: &str) -> Result<Self, KeyError> {
        let bad = |why: &str| KeyError::Relying(format!("{origin}: {why}"));
        let url = Url::parse(origin).map_err(|e| bad(&e.to_string()))?;
        let host = url.host_str().ok_or_else(|| bad("no host"))?.to_owned();
        if url.scheme() != "https" && host != "localhost" {
            return Err(bad("passkeys need an https origin"));
        }
        if url.domain().is_none() {
            return Err(bad("passkeys need a host name, not an address"));
        }
        let webauthn = WebauthnBuilder::new(&host, &url)
            .map_err(|e| bad(&e.to_string()))?
            .rp_name(name)
            .build()
            .map_err(|e| bad(&e.to_string()))?;
        Ok(Self { webauthn })
    }
}

impl PasskeyCeremonies for WebauthnCeremonies {
    fn start_registration(
        &self,
        user: UserId,
        username: &Username,
        existing: &[Vec<u8>],
    ) -> Result<(String, Vec<u8>), PasskeyRefusal> {
        let exclude = existing.to_vec();
        let (options, state) = self
            .webauthn
            .start_passkey_registration(
                *user.as_uuid(),
                username.as_str(),
                username.as_str(),
                Some(exclude),
            )
            .map_err(refusal)?;
        // A passkey here signs in with no username: it must live on the
        // authenticator (discoverable), which the library's options leave
        // to the authenticator ("discouraged").
        let mut options = serde_json::to_value(&options).map_err(refusal)?;
        if let Some(selection) = options
            .pointer_mut("/publicKey/authenticatorSelection")
            .and_then(serde_json::Value::as_object_mut)
        {
            selection.insert("residentKey".to_owned(), "required".into());
            selection.insert("requireResidentKey".to_owned(), true.into());
        }
        Ok((
            serde_json::to_string(&options).map_err(refusal)?,
            serde_json::to_vec(&state).map_err(refusal)?,
        ))
    }

    fn finish_registration(
        &self,
        answer: &str,
        state: &[u8],
    ) -> Result<NewCredential, PasskeyRefusal> {
        let answer: RegisterPublicKeyCredential = serde_json::from_str(answer).map_err(refusal)?;
        let state: PasskeyRegistration = serde_json::from_slice(state).map_err(refusal)?;
        let passkey = self
            .webauthn
            .finish_passkey_registration(&answer, &state)
            .map_err(refusal)?;
        Ok(NewCredential {
            credential_id: passkey.cred_id().as_slice().to_vec(),
            credential: serde_json::to_vec(&passkey).map_err(refusal)?,
        })
    }

    fn start_authentication(&self) -> Result<(String, Vec<u8>), PasskeyRefusal> {
        let (mut options, state) = self
            .webauthn
            .start_discoverable_authentication()
            .map_err(refusal)?;
        // A sign-in the user asks for with a button: the browser's own
        // dialog, not the autofill the library's default asks for.
        options.mediation = None;
        Ok((
            serde_json::to_string(&options).map_err(refusal)?,
            serde_json::to_vec(&state).map_err(refusal)?,
        ))
    }

    fn identify(&self, answer: &str) -> Result<(UserId, Vec<u8>), PasskeyRefusal> {
        let answer: PublicKeyCredential = serde_json::from_str(answer).map_err(refusal)?;
        let (user, credential) = self
            .webauthn
            .identify_discoverable_authentication(&answer)
            .map_err(refusal)?;
        Ok((UserId::from_uuid(user), credential.to_vec()))
    }

    fn finish_authentication(
        &self,
        answer: &str,
        state: &[u8],
        credential: &[u8],
    ) -> Result<Option<Vec<u8>>, PasskeyRefusal> {
        let answer: PublicKeyCredential = serde_json::from_str(answer).map_err(refusal)?;
        let state: DiscoverableAuthentication = serde_json::from_slice(state).map_err(refusal)?;
        let mut passkey: Passkey = serde_json::from_slice(credential).map_err(refusal)?;
        let result = self
            .webauthn
            .finish_discoverable_authentication_v2(&answer, state, &passkey)
            .map_err(refusal)?;
        // (a counter that went backwards is refused by the library: a clone)
        match passkey.update_credential(&result) {
            Some(true) => Ok(Some(serde_json::to_vec(&passkey).map_err(refusal)?)),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relying_party_is_the_origins_host_over_https() {
        assert!(WebauthnCeremonies::new("https://todo.example.com", "todo").is_ok());
        assert!(WebauthnCeremonies::new("https://localhost:8443", "todo").is_ok());
        assert!(WebauthnCeremonies::new("http://localhost:8443", "todo").is_ok());
        assert!(WebauthnCeremonies::new("http://todo.example.com", "todo").is_err());
        assert!(WebauthnCeremonies::new("not a url", "todo").is_err());
        assert!(WebauthnCeremonies::new("https://192.0.2.7", "todo").is_err());
        assert!(WebauthnCeremonies::new("https://[2001:db8::1]", "todo").is_err());
    }

    #[test]
    fn registration_options_require_user_verification_and_exclude_known_keys() {
        let rp = WebauthnCeremonies::new("https://todo.example.com", "todo").unwrap();
        let user = UserId::from_uuid(uuid::Uuid::from_u128(7));
        let name = Username::parse("alice").unwrap();
        let (options, state) = rp
            .start_registration(user, &name, &[vec![1, 2, 3]])
            .unwrap();
        let options: serde_json::Value = serde_json::from_str(&options).unwrap();
        let key = &options["publicKey"];
        assert_eq!(key["rp"]["id"], "todo.example.com");
        assert_eq!(
            key["authenticatorSelection"]["userVerification"],
            "required"
        );
        assert_eq!(key["authenticatorSelection"]["residentKey"], "required");
        assert_eq!(key["authenticatorSelection"]["requireResidentKey"], true);
        assert_eq!(key["excludeCredentials"][0]["id"], "AQID");
        assert!(!state.is_empty());
        // An answer that is not one is refused, whatever the state.
        assert!(rp.finish_registration("{}", &state).is_err());
        let (options, state) = rp.start_authentication().unwrap();
        let options: serde_json::Value = serde_json::from_str(&options).unwrap();
        assert!(
            options
                .get("mediation")
                .is_none_or(serde_json::Value::is_null)
        );
        assert_eq!(options["publicKey"]["userVerification"], "required");
        assert!(rp.identify("{}").is_err());
        assert!(rp.finish_authentication("{}", &state, b"{}").is_err());
    }
}
