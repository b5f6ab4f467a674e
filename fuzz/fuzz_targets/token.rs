//! The join-token decoder: arbitrary text, and real tokens with bytes of
//! their text changed, are refused; only the unchanged token opens (as
//! `signaling/tests/prop_token.rs`, for longer runs).

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tuxa_protocol::{Role, RoomId};
use tuxa_signaling::{Claims, TokenKey};

const NOW: u64 = 1_750_000_000;

static KEY: LazyLock<TokenKey> = LazyLock::new(|| TokenKey::new(&[0x42; 32]));

/// Real tokens of a few sizes (the spare bits of base64url's last
/// character differ with the length).
static TOKENS: LazyLock<Vec<String>> = LazyLock::new(|| {
    (0..3u8)
        .map(|i| {
            let claims = Claims {
                room: RoomId::from_random([i; 10]),
                role: Role::Patient,
                name: "x".repeat(usize::from(i) + 1),
                facility: None,
                expires_at: NOW + 3600,
                not_before: None,
                pre_admitted: false,
                staff_id: None,
                licence_number: None,
                chair: false,
            };
            KEY.mint(&claims, [i; 12])
        })
        .collect()
});

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    if first & 0x80 == 0 {
        // Arbitrary text as a token.
        let text = String::from_utf8_lossy(rest);
        if let Ok(claims) = KEY.open(&text, NOW) {
            // Only a real token can open: the fuzzer cannot forge AES-GCM.
            assert!(
                TOKENS.contains(&text.to_string()),
                "{text:?} opened: {claims:?}"
            );
        }
    } else {
        // A real token with some of its bytes replaced (pairs of position,
        // new byte); anything changed must be refused.
        let token = &TOKENS[usize::from(first & 0x7f) % TOKENS.len()];
        let mut bytes = token.clone().into_bytes();
        for pair in rest.chunks_exact(2) {
            let at = usize::from(pair[0]) * bytes.len() / 256;
            bytes[at] = pair[1];
        }
        let text = String::from_utf8_lossy(&bytes);
        if text != token.as_str() {
            assert!(KEY.open(&text, NOW).is_err(), "{token} → {text} opens");
        }
    }
});
