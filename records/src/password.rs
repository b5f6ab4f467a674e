//! Staff passwords: what a password may be, how one is generated from the
//! caller's random bytes, and the argon2id cost hashes are made at. The
//! hashing itself runs in `server` (auth.rs): it needs the CSPRNG for each
//! salt, and its 19 MiB buffers are a resource the server bounds (a
//! semaphore and a pool of buffers on the blocking threads).

use crate::{Error, Result};

/// A password as given: 10 to 256 characters (the upper bound keeps an
/// attacker from making argon2 hash megabytes).
#[derive(Clone)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(…)")
    }
}

impl Password {
    pub const MIN_CHARS: usize = 10;
    pub const MAX_BYTES: usize = 256;

    pub fn parse(s: &str) -> Result<Password> {
        if s.chars().count() < Self::MIN_CHARS || s.len() > Self::MAX_BYTES {
            return Err(Error::bad_request(format!(
                "password must be {} to {} characters",
                Self::MIN_CHARS,
                Self::MAX_BYTES
            )));
        }
        Ok(Password(s.to_owned()))
    }

    /// 16 characters from an alphabet without look-alikes (80 bits of the
    /// caller's random `bytes`), in groups of four: `k7mq-2xha-…`.
    pub fn from_random(bytes: [u8; 16]) -> Password {
        const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
        let mut s = String::with_capacity(19);
        for (i, b) in bytes.iter().enumerate() {
            if i > 0 && i % 4 == 0 {
                s.push('-');
            }
            s.push(ALPHABET[(b & 31) as usize] as char);
        }
        Password(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// argon2id cost (memory KiB, passes, lanes): OWASP's recommendation.
/// About 20 ms per hash in a release build.
pub const ARGON2_COST: (u32, u32, u32) = (19 * 1024, 2, 1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_rules() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse("chín ký t").is_err());
        assert!(Password::parse(&"x".repeat(257)).is_err());
        assert!(Password::parse(&"x".repeat(256)).is_ok());
        assert!(Password::parse("đủ mười ký tự").is_ok());
        let g = Password::from_random([0x5a; 16]);
        assert_eq!(g.as_str().len(), 19);
        assert_eq!(g.as_str(), "4444-4444-4444-4444");
        assert!(Password::parse(g.as_str()).is_ok());
        let g = Password::from_random(std::array::from_fn(|i| i as u8));
        assert_eq!(g.as_str(), "abcd-efgh-ijkm-npqr");
        assert_eq!(format!("{g:?}"), "Password(…)", "never in a log");
    }
}
