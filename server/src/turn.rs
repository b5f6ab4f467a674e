//! Short-lived TURN credentials for networks that block UDP to the media
//! port (hospital and provincial networks often allow only TCP 443).
//!
//! tuxa does not relay media itself: a TURN server (coturn, see
//! docs/turn.md) does, and tuxa mints credentials for it with coturn's
//! `use-auth-secret` scheme (the "TURN REST API" draft,
//! draft-uberti-behave-turn-rest-00): the username is `<expiry>:<label>`
//! (Unix seconds), the password is base64(HMAC-SHA1(shared secret,
//! username)). coturn recomputes the HMAC and refuses expired usernames, so
//! no database is shared and a leaked credential dies on its own.

use std::time::Duration;

use serde::Serialize;

/// Where the TURN server is and the secret shared with it.
#[derive(Debug, Clone)]
pub struct TurnConfig {
    /// `turn:` / `turns:` URLs handed to browsers as they are, e.g.
    /// `turns:turn.soyte.example.vn:443?transport=tcp`.
    pub urls: Vec<String>,
    /// coturn's `static-auth-secret`.
    pub secret: String,
    /// How long a credential lives.
    pub ttl: Duration,
}

/// Long enough for a day's clinic on one page load (a reconnect fetches a
/// fresh one anyway); short enough that a leaked one is soon worthless.
pub const DEFAULT_TTL: Duration = Duration::from_secs(6 * 3600);

/// One entry of a browser's `RTCConfiguration.iceServers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

/// The coturn `use-auth-secret` password for `username`:
/// base64(HMAC-SHA1(secret, username)), standard alphabet with padding.
pub fn password(secret: &str, username: &str) -> String {
    // SHA-1 is what coturn's REST scheme specifies; as an HMAC it is not
    // affected by SHA-1's collision weakness.
    let key = aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        secret.as_bytes(),
    );
    let tag = aws_lc_rs::hmac::sign(&key, username.as_bytes());
    base64_std(tag.as_ref())
}

/// Credentials valid until `now_unix + ttl`. `label` ends up in coturn's
/// logs: pass something that identifies a link to the operator without
/// naming anyone (a short hash).
pub fn credentials(config: &TurnConfig, now_unix: u64, label: &str) -> IceServer {
    let username = format!("{}:{label}", now_unix + config.ttl.as_secs());
    IceServer {
        urls: config.urls.clone(),
        credential: password(&config.secret, &username),
        username,
    }
}

/// RFC 4648 §4 base64 (with `+`, `/` and `=` padding), which coturn
/// expects.
fn base64_std(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed independently with OpenSSL:
    /// `printf %s '1700000000:tuxa' | openssl dgst -sha1 -hmac 'north-secret' -binary | base64`
    #[test]
    fn password_matches_an_independent_hmac_sha1() {
        assert_eq!(
            password("north-secret", "1700000000:tuxa"),
            "Z3bYus/9cQpZ7EOYgNV45SK965E="
        );
    }

    /// RFC 2202 test case 2 (HMAC-SHA1, key "Jefe"), as base64.
    #[test]
    fn password_matches_rfc_2202() {
        // effcdf6ae5eb2fa2d27416d5f184df9c259a7c79
        assert_eq!(
            password("Jefe", "what do ya want for nothing?"),
            "7/zfauXrL6LSdBbV8YTfnCWafHk="
        );
    }

    #[test]
    fn credentials_expire_after_the_ttl_and_carry_the_label() {
        let config = TurnConfig {
            urls: vec!["turns:turn.example.vn:443?transport=tcp".into()],
            secret: "s".into(),
            ttl: Duration::from_secs(600),
        };
        let c = credentials(&config, 1_000, "ab12");
        assert_eq!(c.username, "1600:ab12");
        assert_eq!(c.credential, password("s", "1600:ab12"));
        assert_eq!(c.urls, config.urls);
    }
}
