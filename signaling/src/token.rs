//! Join tokens: what a join link carries.
//!
//! A token is `v1.` followed by base64url(nonce ‖ AES-256-GCM(claims)). The
//! claims (room, role, name, facility, expiry) are encrypted, not just signed:
//! a link forwarded over Zalo or printed on a slip must not reveal who the
//! patient is. The 96-bit random nonce makes every token unique, so two links
//! for the same person are unlinkable.
//!
//! This module does no IO: the caller supplies the key, the nonce's random
//! bytes and the current time.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};
use tuxa_protocol::{ErrorCode, Role, RoomId};
use tuxa_records::StaffId;

use crate::b64;

const PREFIX: &str = "v1.";
const TAG_LEN: usize = 16;
/// Tokens longer than this are refused before any decoding: the largest
/// honest token (200-char facility, 100-char name, all multi-byte) is ~1.5 KiB.
pub const MAX_TOKEN_LEN: usize = 4096;

/// What a token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    #[serde(rename = "r")]
    pub room: RoomId,
    #[serde(rename = "o")]
    pub role: Role,
    #[serde(rename = "n")]
    pub name: String,
    #[serde(rename = "f", default, skip_serializing_if = "Option::is_none")]
    pub facility: Option<String>,
    /// Unix seconds after which the token is refused.
    #[serde(rename = "e")]
    pub expires_at: u64,
    /// Unix seconds before which the token is refused (appointment links
    /// open shortly before the appointment). Absent: valid at once.
    #[serde(rename = "b", default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<u64>,
    /// Enters without waiting in the lobby: a patient a doctor already
    /// accepted from the on-call queue.
    #[serde(rename = "a", default, skip_serializing_if = "std::ops::Not::not")]
    pub pre_admitted: bool,
    /// The staff account the link was minted for (conference invitees).
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub staff_id: Option<StaffId>,
    /// The practitioner's licence number, shown to the others in the room.
    #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
    pub licence_number: Option<String>,
    /// Chairs the room: admits, mutes, removes, locks, names the secretary.
    /// A room with a chair in it takes those orders from the chair only.
    #[serde(rename = "c", default, skip_serializing_if = "std::ops::Not::not")]
    pub chair: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a tuxa join token")]
    Malformed,
    #[error("the token was not issued by this server or has been altered")]
    Invalid,
    #[error("the link expired at {0} (Unix time)")]
    Expired(u64),
    #[error("the link is for another consultation")]
    WrongRoom,
    #[error("the link opens at {0} (Unix time)")]
    NotYetValid(u64),
}

impl TokenError {
    pub fn code(&self) -> ErrorCode {
        match self {
            TokenError::Malformed => ErrorCode::TokenMalformed,
            TokenError::Invalid => ErrorCode::TokenInvalid,
            TokenError::Expired(_) => ErrorCode::TokenExpired,
            TokenError::WrongRoom => ErrorCode::TokenWrongRoom,
            TokenError::NotYetValid(_) => ErrorCode::TokenNotYetValid,
        }
    }
}

/// The server's token key. Kept by whoever owns the secrets; cheap to share
/// behind an `Arc`.
pub struct TokenKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    pub const LEN: usize = 32;

    pub fn new(bytes: &[u8; Self::LEN]) -> TokenKey {
        // AES-256 accepts any 32-byte key, so this cannot fail.
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).expect("32-byte AES-256 key");
        TokenKey {
            key: LessSafeKey::new(unbound),
        }
    }

    /// Mints a token. `nonce` must be fresh random bytes for every token.
    pub fn mint(&self, claims: &Claims, nonce: [u8; NONCE_LEN]) -> String {
        let mut buf = serde_json::to_vec(claims).expect("claims serialise");
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(PREFIX),
                &mut buf,
            )
            .expect("AES-GCM seal of a small buffer");
        let mut raw = Vec::with_capacity(NONCE_LEN + buf.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&buf);
        format!("{PREFIX}{}", b64::encode(&raw))
    }

    /// Opens a token and checks its expiry, without regard to room.
    pub fn open(&self, token: &str, now_unix: u64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let body = token.strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
        let mut raw = b64::decode(body).ok_or(TokenError::Malformed)?;
        if raw.len() < NONCE_LEN + TAG_LEN + 2 {
            return Err(TokenError::Malformed);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&raw[..NONCE_LEN]);
        let sealed = &mut raw[NONCE_LEN..];
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(PREFIX),
                sealed,
            )
            .map_err(|_| TokenError::Invalid)?;
        // Authentic but unreadable claims mean a token from a future format
        // under the same key; treat as invalid rather than malformed.
        let claims: Claims = serde_json::from_slice(plain).map_err(|_| TokenError::Invalid)?;
        if now_unix >= claims.expires_at {
            return Err(TokenError::Expired(claims.expires_at));
        }
        if let Some(nbf) = claims.not_before.filter(|nbf| now_unix < *nbf) {
            return Err(TokenError::NotYetValid(nbf));
        }
        Ok(claims)
    }

    /// Opens a token for a join into `room`.
    pub fn open_for_room(
        &self,
        token: &str,
        room: &RoomId,
        now_unix: u64,
    ) -> Result<Claims, TokenError> {
        let claims = self.open(token, now_unix)?;
        if &claims.room != room {
            return Err(TokenError::WrongRoom);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey::new(&[7u8; 32])
    }

    fn claims(room: &RoomId) -> Claims {
        Claims {
            room: room.clone(),
            role: Role::Patient,
            name: "Nguyễn Văn A".into(),
            facility: Some("Trạm y tế xã Tân Lập".into()),
            expires_at: 2_000,
            not_before: None,
            pre_admitted: false,
            staff_id: None,
            licence_number: None,
            chair: false,
        }
    }

    #[test]
    fn mint_and_open() {
        let room = RoomId::from_random([1; 10]);
        let t = key().mint(&claims(&room), [9; 12]);
        assert!(t.starts_with("v1."));
        assert_eq!(key().open_for_room(&t, &room, 1_000), Ok(claims(&room)));
    }

    #[test]
    fn appointment_links_open_at_their_time() {
        let room = RoomId::from_random([1; 10]);
        let mut c = claims(&room);
        c.not_before = Some(1_500);
        let t = key().mint(&c, [5; 12]);
        assert_eq!(key().open(&t, 1_499), Err(TokenError::NotYetValid(1_500)));
        assert_eq!(key().open(&t, 1_500), Ok(c.clone()));
        assert_eq!(key().open(&t, 2_000), Err(TokenError::Expired(2_000)));
    }

    #[test]
    fn token_reveals_no_personal_data() {
        let room = RoomId::from_random([1; 10]);
        let t = key().mint(&claims(&room), [9; 12]);
        assert!(!t.contains("Nguy") && !t.contains(room.as_str()) && !t.contains("patient"));
        // Two tokens for the same claims differ.
        assert_ne!(t, key().mint(&claims(&room), [8; 12]));
    }

    #[test]
    fn refusals_have_distinct_reasons() {
        let room = RoomId::from_random([1; 10]);
        let other = RoomId::from_random([2; 10]);
        let t = key().mint(&claims(&room), [9; 12]);
        assert_eq!(key().open(&t, 2_000), Err(TokenError::Expired(2_000)));
        assert_eq!(
            key().open_for_room(&t, &other, 1),
            Err(TokenError::WrongRoom)
        );
        assert_eq!(
            TokenKey::new(&[8; 32]).open(&t, 1),
            Err(TokenError::Invalid),
            "a token from another server's key"
        );
        // Flip one bit in the sealed part.
        let mut raw = b64::decode(&t[3..]).unwrap();
        raw[20] ^= 1;
        let forged = format!("v1.{}", b64::encode(&raw));
        assert_eq!(key().open(&forged, 1), Err(TokenError::Invalid));
        for bad in [
            "",
            "v1.",
            "v2.AAAA",
            "v1.!!!!",
            "v1.AAAA",
            "hello",
            &"v1.".repeat(2000),
        ] {
            assert_eq!(key().open(bad, 1), Err(TokenError::Malformed), "{bad:?}");
        }
    }

    /// Minted by the code before `staff_id` became a `StaffId` (it was an
    /// `Option<u64>`): links already sent out must keep working. Both
    /// encode as a plain JSON number, so the format did not change.
    const OLD_TOKEN: &str = "v1.BAQEBAQEBAQEBAQELhFa6lzLGmVq08qvdBWyEGDGrSJc9pklbflQf-kYEiFfx0eDurEh2mRWmPNSoI4HZ1j8-Mi0P12Tgxr55MXXWDnvH4bLAp39OZsJfF1fYhp18Scv_4RduoVllgBG37ixLPwze2v_g4h6dTYfPot0AsMcZMNa9P2vy5ZLLEPlbnBS4yIvcw1_ZkNUItHyuH4tG4bWBSgtbiNCIXhMzpS8eSdHoDhW2hzGOvZ5fZoU1MJv3Q";

    #[test]
    fn token_minted_with_u64_staff_id_still_opens() {
        let room = RoomId::from_random([3; 10]);
        let c = key().open_for_room(OLD_TOKEN, &room, 2_000).unwrap();
        assert_eq!(
            c,
            Claims {
                room,
                role: Role::Doctor,
                name: "BS. Trần Thị B".into(),
                facility: Some("Bệnh viện Đa khoa tỉnh".into()),
                expires_at: 4_000_000_000,
                not_before: Some(1_000),
                pre_admitted: false,
                staff_id: Some(StaffId(4_242)),
                licence_number: Some("000123/BYT-CCHN".into()),
                chair: true,
            }
        );
    }
}
