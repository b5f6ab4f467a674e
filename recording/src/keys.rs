//! Master keys for recordings: a [`KeyRing`] parsed from a key file or the
//! `TUXA_RECORDING_KEYS` environment variable (the server reads them; this
//! module only parses text), rotated by id.
//!
//! The text is one key a line, `ID BASE64`: a whole number from 1 and the
//! standard base64 of 32 random bytes; `#` starts a comment, blank lines are
//! skipped. The highest id seals new files ([`KeyRing::sealing`]); every id
//! still opens the files sealed under it, so rotating is adding a line with
//! a higher id and never removing the old ones while files sealed under
//! them are kept (docs/recording.md).
//!
//! A master key never touches a recording's bytes: each file has its own
//! random data key, wrapped (AES-256-GCM) under a key derived from the
//! master key ([`MasterKey::wrapping_key`]), so rotating re-wraps nothing
//! and a leaked data key opens one file only.

use std::collections::BTreeMap;
use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use aws_lc_rs::hkdf;
use base64::Engine as _;

/// The bytes of a master key.
pub const KEY_LEN: usize = 32;

/// A master key's id: the number at the start of its line. Stored in each
/// sealed file's clear header and in `recording_files.key_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u32);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One master key. Its bytes are never printed (`Debug` shows the id).
#[derive(Clone)]
pub struct MasterKey {
    id: KeyId,
    raw: [u8; KEY_LEN],
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

impl MasterKey {
    pub fn new(id: KeyId, raw: [u8; KEY_LEN]) -> MasterKey {
        MasterKey { id, raw }
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The AES-256-GCM key that wraps files' data keys: derived (HKDF-SHA256)
    /// from the master key under a label of its own, so that the same
    /// master key given elsewhere (e.g. as the secrets' key by mistake)
    /// never meets the same AES key twice.
    pub(crate) fn wrapping_key(&self) -> LessSafeKey {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"tuxa").extract(&self.raw);
        let okm = prk
            .expand(&[b"tuxa recording wrap v1"], &AES_256_GCM)
            .expect("HKDF output of one AES-256 key");
        LessSafeKey::new(UnboundKey::from(okm))
    }
}

/// Why a key text was refused. Never holds key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "line {line}: expected `ID BASE64` (a whole number from 1, then the base64 of 32 bytes)"
    )]
    Syntax { line: usize },
    #[error("line {line}: the key id must be a whole number from 1 to 4294967295")]
    BadId { line: usize },
    #[error("line {line}: the key is not the standard base64 of exactly 32 bytes")]
    BadKey { line: usize },
    #[error("line {line}: key id {id} appears twice")]
    DuplicateId { line: usize, id: KeyId },
    #[error("no key: the text has no `ID BASE64` line")]
    Empty,
}

/// The master keys a server holds: the highest id seals, every id opens.
#[derive(Clone)]
pub struct KeyRing {
    keys: BTreeMap<KeyId, MasterKey>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KeyRing")
            .field(&self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KeyRing {
    /// A ring of the given keys; `None` when there are none.
    pub fn new(keys: impl IntoIterator<Item = MasterKey>) -> Option<KeyRing> {
        let keys: BTreeMap<KeyId, MasterKey> = keys.into_iter().map(|k| (k.id, k)).collect();
        (!keys.is_empty()).then_some(KeyRing { keys })
    }

    /// Parses a key file's text (or `TUXA_RECORDING_KEYS`'): one `ID BASE64`
    /// a line, `#` comments, blank lines skipped. Errors name the line.
    pub fn parse(text: &str) -> Result<KeyRing, KeyError> {
        let mut keys = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let content = line.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let mut parts = content.split_whitespace();
            let (Some(id), Some(key), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(KeyError::Syntax { line: line_no });
            };
            let id = id
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .map(KeyId)
                .ok_or(KeyError::BadId { line: line_no })?;
            let raw: [u8; KEY_LEN] = base64::engine::general_purpose::STANDARD
                .decode(key)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or(KeyError::BadKey { line: line_no })?;
            if keys.insert(id, MasterKey::new(id, raw)).is_some() {
                return Err(KeyError::DuplicateId { line: line_no, id });
            }
        }
        KeyRing::new(keys.into_values()).ok_or(KeyError::Empty)
    }

    /// The key new files are sealed under: the highest id.
    pub fn sealing(&self) -> &MasterKey {
        self.keys
            .values()
            .next_back()
            .expect("a KeyRing is never empty")
    }

    /// The key with this id, to open a file sealed under it.
    pub fn get(&self, id: KeyId) -> Option<&MasterKey> {
        self.keys.get(&id)
    }

    /// Every id, lowest first.
    pub fn ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys.keys().copied()
    }
}

/// A key file line for a new key: `ID BASE64` of the given 32 random bytes
/// (the caller draws them: this crate reads no randomness for keys), for
/// `tuxa recording-key`.
pub fn key_line(id: KeyId, raw: &[u8; KEY_LEN]) -> String {
    format!(
        "{id} {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(b: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode([b; KEY_LEN])
    }

    #[test]
    fn the_highest_id_seals_and_every_id_opens() {
        let text = format!(
            "# recording keys\n\n2 {}  # rotated 01/2027\n1 {}\n",
            b64(2),
            b64(1)
        );
        let ring = KeyRing::parse(&text).unwrap();
        assert_eq!(ring.sealing().id(), KeyId(2));
        assert!(ring.get(KeyId(1)).is_some());
        assert!(ring.get(KeyId(3)).is_none());
        assert_eq!(ring.ids().collect::<Vec<_>>(), vec![KeyId(1), KeyId(2)]);
        // The bytes never show in logs.
        let shown = format!("{ring:?} {:?}", ring.sealing());
        assert!(!shown.contains(&b64(2)[..10]), "{shown}");
    }

    #[test]
    fn bad_texts_name_their_line() {
        let k = b64(1);
        assert_eq!(KeyRing::parse("").unwrap_err(), KeyError::Empty);
        assert_eq!(KeyRing::parse("# only\n").unwrap_err(), KeyError::Empty);
        assert_eq!(
            KeyRing::parse(&format!("\n{k}\n")).unwrap_err(),
            KeyError::Syntax { line: 2 }
        );
        assert_eq!(
            KeyRing::parse(&format!("0 {k}")).unwrap_err(),
            KeyError::BadId { line: 1 }
        );
        assert_eq!(
            KeyRing::parse(&format!("x {k}")).unwrap_err(),
            KeyError::BadId { line: 1 }
        );
        assert_eq!(
            KeyRing::parse("1 AAAA").unwrap_err(),
            KeyError::BadKey { line: 1 }
        );
        assert_eq!(
            KeyRing::parse(&format!("1 {k}\n1 {k}")).unwrap_err(),
            KeyError::DuplicateId {
                line: 2,
                id: KeyId(1)
            }
        );
        assert_eq!(
            KeyRing::parse(&format!("1 {k} extra")).unwrap_err(),
            KeyError::Syntax { line: 1 }
        );
    }

    #[test]
    fn a_fresh_key_line_parses_back() {
        let line = key_line(KeyId(7), &[9; KEY_LEN]);
        let ring = KeyRing::parse(&line).unwrap();
        assert_eq!(ring.sealing().id(), KeyId(7));
    }
}
