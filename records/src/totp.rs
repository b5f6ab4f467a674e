//! The staff second factor: RFC 6238 TOTP (HMAC-SHA-1, 30-second steps, 6
//! digits) by the `totp-rs` crate, and the rule it does not have: a code is
//! accepted for the current step and one step either side, and never twice
//! (the last accepted step is kept with the account, `totp_last_step`).
//!
//! Sans IO: the secret's bytes come from the caller's CSPRNG, `now` from
//! the caller's clock.

use totp_rs::{Algorithm, TOTP};

pub const TOTP_STEP_SECS: u64 = 30;
pub const TOTP_DIGITS: u32 = 6;
const TOTP_ISSUER: &str = "tuxa";
/// RFC 4226's recommended length, and what the database holds (sealed):
/// 20 raw bytes, as before this crate.
pub const TOTP_SECRET_LEN: usize = 20;

/// RFC 4648 base32, upper case, without padding (what authenticator apps
/// expect in an `otpauth://` URI).
pub fn base32(data: &[u8]) -> String {
    generator(data, TOTP_DIGITS).get_secret_base32()
}

/// The `digits`-digit TOTP code of `key` at Unix time `unix` (30 s steps,
/// SHA-1), as a number: for the RFC's test vectors and tools.
pub fn totp(key: &[u8], unix: u64, digits: u32) -> u32 {
    generator(key, digits)
        .generate(unix)
        .parse()
        .expect("TOTP codes are decimal digits")
}

/// RFC 4226 HOTP: TOTP's counter is the step number.
pub fn hotp(key: &[u8], counter: u64, digits: u32) -> u32 {
    totp(key, counter.saturating_mul(TOTP_STEP_SECS), digits)
}

fn generator(key: &[u8], digits: u32) -> TOTP {
    // Unchecked: the RFC's own test key is 20 bytes, but the HOTP vectors'
    // callers may pass any length; the digits are ours (6, or 8 in tests).
    // Skew 0: the window and the reuse rule are decided in `verify`.
    TOTP::new_unchecked(
        Algorithm::SHA1,
        digits as usize,
        0,
        TOTP_STEP_SECS,
        key.to_vec(),
    )
}

/// A TOTP shared secret: 20 random bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret([u8; TOTP_SECRET_LEN]);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(…)")
    }
}

impl TotpSecret {
    /// A secret from the caller's CSPRNG.
    pub fn from_random(bytes: [u8; TOTP_SECRET_LEN]) -> TotpSecret {
        TotpSecret(bytes)
    }

    pub fn from_slice(b: &[u8]) -> Option<TotpSecret> {
        b.try_into().ok().map(TotpSecret)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn base32(&self) -> String {
        base32(&self.0)
    }

    /// The enrolment URI authenticator apps read (as text or a QR code).
    /// `account` is a username, whose characters need no escaping.
    pub fn otpauth_uri(&self, account: &str) -> String {
        format!(
            "otpauth://totp/{TOTP_ISSUER}:{account}?secret={}&issuer={TOTP_ISSUER}&algorithm=SHA1&digits={TOTP_DIGITS}&period={TOTP_STEP_SECS}",
            self.base32()
        )
    }

    /// The code at Unix time `unix` (for tests and tools).
    pub fn code_at(&self, unix: u64) -> String {
        generator(&self.0, TOTP_DIGITS).generate(unix)
    }

    /// Checks `code` at Unix time `now`: it must be the code of the current
    /// step or of one step either side, and that step must be later than
    /// `last_step` (the last one accepted), so that a code is never used
    /// twice. Returns the step to record. Every candidate is compared, in
    /// constant time (totp-rs's `check`).
    pub fn verify(&self, code: &str, now: u64, last_step: u64) -> Option<u64> {
        let code: String = code.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        if code.len() != TOTP_DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let totp = generator(&self.0, TOTP_DIGITS);
        let step = now / TOTP_STEP_SECS;
        let mut accepted = None;
        for s in [step.saturating_sub(1), step, step + 1] {
            let same = totp.check(&code, s * TOTP_STEP_SECS);
            if same && s > last_step && accepted.is_none() {
                accepted = Some(s);
            }
        }
        accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_KEY: &[u8] = b"12345678901234567890";

    #[test]
    fn hotp_rfc4226_vectors() {
        let expected = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        for (counter, want) in expected.into_iter().enumerate() {
            assert_eq!(hotp(RFC_KEY, counter as u64, 6), want, "counter {counter}");
        }
    }

    #[test]
    fn totp_rfc6238_sha1_vectors() {
        // RFC 6238 Appendix B, SHA-1 column (8 digits); the 6-digit codes are
        // the same truncation modulo 10^6.
        let vectors: [(u64, u32); 6] = [
            (59, 94287082),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ];
        for (t, want) in vectors {
            assert_eq!(totp(RFC_KEY, t, 8), want, "T = {t}");
            assert_eq!(totp(RFC_KEY, t, 6), want % 1_000_000, "T = {t}");
        }
        let s = TotpSecret::from_slice(RFC_KEY).unwrap();
        assert_eq!(s.code_at(59), "287082");
        assert_eq!(s.code_at(1111111109), "081804", "leading zero kept");
    }

    #[test]
    fn totp_window_is_one_step_either_side_and_never_twice() {
        let s = TotpSecret::from_slice(RFC_KEY).unwrap();
        let now = 1_111_111_111u64; // step 37037037
        let step = now / 30;
        for (offset, accepted) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
            let at = (now as i64 + offset * 30) as u64;
            let code = s.code_at(at);
            assert_eq!(
                s.verify(&code, now, 0).is_some(),
                accepted,
                "code from {offset} steps"
            );
        }
        // The step recorded is the code's own step.
        assert_eq!(s.verify(&s.code_at(now - 30), now, 0), Some(step - 1));
        // A code whose step was already used is refused, as is an older one.
        assert_eq!(s.verify(&s.code_at(now), now, step), None);
        assert_eq!(s.verify(&s.code_at(now - 30), now, step), None);
        assert_eq!(s.verify(&s.code_at(now + 30), now, step), Some(step + 1));
        // Format: six digits, spaces tolerated.
        let code = s.code_at(now);
        assert!(
            s.verify(&format!("{} {}", &code[..3], &code[3..]), now, 0)
                .is_some()
        );
        for bad in ["", "12345", "1234567", "abcdef", "１２３４５６"] {
            assert_eq!(s.verify(bad, now, 0), None, "{bad:?}");
        }
        // At the epoch's first step there is no step before.
        let s0 = s.code_at(0);
        assert_eq!(
            s.verify(&s0, 0, 0),
            None,
            "step 0 is never after last_step 0"
        );
        assert_eq!(s.verify(&s.code_at(30), 0, 0), Some(1));
    }

    #[test]
    fn base32_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
            ("12345678901234567890", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
        ] {
            assert_eq!(base32(input.as_bytes()), want, "{input:?}");
        }
        let s = TotpSecret::from_slice(RFC_KEY).unwrap();
        assert_eq!(
            s.otpauth_uri("bs.minh"),
            "otpauth://totp/tuxa:bs.minh?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=tuxa&algorithm=SHA1&digits=6&period=30"
        );
    }
}
