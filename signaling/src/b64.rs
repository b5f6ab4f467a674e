//! base64url without padding (RFC 4648 §5), the alphabet that survives URLs,
//! SMS and chat apps.
//!
//! Decoding is canonical: a last character whose spare low bits are not zero
//! is refused. Otherwise one token would have several spellings that open
//! to the same claims, and everything keyed by a token's text (the bar on a
//! removed participant's link, a reconnect's "same link") could be walked
//! round by changing its last character (found by `tests/prop_token.rs`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub fn encode(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// `None` for anything but the one canonical spelling of some bytes.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    // The engine refuses padding, characters outside the alphabet, a
    // dangling sixth of a byte and non-zero trailing bits.
    URL_SAFE_NO_PAD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors_and_round_trip() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes()), enc);
            assert_eq!(decode(enc).unwrap(), plain.as_bytes());
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(&all)).unwrap(), all);
        assert_eq!(decode("a"), None);
        assert_eq!(decode("ab+c"), None);
        assert_eq!(decode("Zg=="), None, "padding");
    }

    /// "Zg" is "f"; "Zh" to "Zv" differ from it only in the four spare
    /// bits of the last character and used to decode to "f" as well.
    #[test]
    fn only_the_canonical_spelling_decodes() {
        for twin in ["Zh", "Zi", "Zv", "Zm9", "Zm-"] {
            assert_eq!(decode(twin), None, "{twin}");
        }
        assert_eq!(decode("Zm8").unwrap(), b"fo");
    }
}
