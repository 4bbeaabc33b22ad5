//! Webhook signatures, as Standard Webhooks define them: `v1,` and the
//! base64 of HMAC-SHA256, keyed by the secret's bytes, over
//! `{webhook-id}.{webhook-timestamp}.{body}`. A receiver recomputes it
//! with the secret it was shown and compares in constant time.

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use todo_core::WebhookSecret;

/// The `webhook-signature` header of a delivery.
#[must_use]
pub fn webhook_signature(
    secret: &WebhookSecret,
    message_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &secret.key());
    let mut context = hmac::Context::with_key(&key);
    context.update(message_id.as_bytes());
    context.update(b".");
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("v1,{}", STANDARD.encode(context.sign().as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn signs_as_the_specifications_example() {
        let secret =
            WebhookSecret::parse_stored("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned())
                .unwrap();
        let signature = webhook_signature(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
