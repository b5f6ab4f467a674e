//! Property tests of the join-token decoder (`TokenKey::open`,
//! `open_for_room`): it never panics, refuses anything but a token this key
//! minted unaltered, accepts a token only for its own room, and draws the
//! expiry and not-before lines exactly where the claims put them.
//!
//! Bounded (256 cases each) for the ordinary `cargo test`; `fuzz/` has the
//! decoder as a cargo-fuzz target. Failing seeds are kept in
//! `prop_token.proptest-regressions` (committed) and replayed first.

use proptest::prelude::*;
use tuxa_protocol::{Role, RoomId};
use tuxa_records::StaffId;
use tuxa_signaling::{Claims, TokenError, TokenKey, b64_decode, b64_encode};

const KEY: [u8; 32] = [0x42; 32];

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

fn room() -> impl Strategy<Value = RoomId> {
    any::<[u8; 10]>().prop_map(RoomId::from_random)
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Patient),
        Just(Role::Doctor),
        Just(Role::Nurse),
        Just(Role::Guest),
    ]
}

fn claims() -> impl Strategy<Value = Claims> {
    (
        room(),
        role(),
        ".{0,40}",
        prop::option::of(".{0,40}"),
        any::<u64>(),
        any::<Option<u64>>(),
        (
            any::<bool>(),
            prop::option::of(any::<i64>().prop_map(StaffId)),
            prop::option::of("[A-Z0-9/-]{0,20}"),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(room, role, name, facility, expires_at, not_before, rest)| {
                let (pre_admitted, staff_id, licence_number, chair) = rest;
                Claims {
                    room,
                    role,
                    name,
                    facility,
                    expires_at,
                    not_before,
                    pre_admitted,
                    staff_id,
                    licence_number,
                    chair,
                }
            },
        )
}

/// Claims valid over a stretch of time around `1_750_000_000`.
fn live_claims() -> impl Strategy<Value = Claims> {
    claims().prop_map(|mut c| {
        c.expires_at = 1_750_003_600;
        c.not_before = None;
        c
    })
}

const NOW: u64 = 1_750_000_000;

/// Whether the claims are valid at `now`, and if not, the error `open` owes.
fn expected(c: &Claims, now: u64) -> Result<(), TokenError> {
    if now >= c.expires_at {
        return Err(TokenError::Expired(c.expires_at));
    }
    match c.not_before {
        Some(nbf) if now < nbf => Err(TokenError::NotYetValid(nbf)),
        _ => Ok(()),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_never_panics_and_is_refused(text in any::<String>(), now in any::<u64>()) {
        let key = TokenKey::new(&KEY);
        prop_assert!(key.open(&text, now).is_err());
    }

    #[test]
    fn arbitrary_base64_bodies_are_refused(
        body in "[A-Za-z0-9_-]{0,200}",
        now in any::<u64>(),
    ) {
        let key = TokenKey::new(&KEY);
        let r = key.open(&format!("v1.{body}"), now);
        prop_assert!(
            matches!(r, Err(TokenError::Malformed | TokenError::Invalid)),
            "{r:?}"
        );
    }

    #[test]
    fn arbitrary_sealed_bytes_are_refused(
        raw in prop::collection::vec(any::<u8>(), 0..400),
        now in any::<u64>(),
    ) {
        let key = TokenKey::new(&KEY);
        let r = key.open(&format!("v1.{}", b64_encode(&raw)), now);
        prop_assert!(
            matches!(r, Err(TokenError::Malformed | TokenError::Invalid)),
            "{r:?}"
        );
    }

    #[test]
    fn a_minted_token_opens_to_its_claims(c in live_claims(), nonce in any::<[u8; 12]>()) {
        let key = TokenKey::new(&KEY);
        let t = key.mint(&c, nonce);
        prop_assert_eq!(key.open(&t, NOW), Ok(c.clone()));
        prop_assert_eq!(key.open_for_room(&t, &c.room, NOW), Ok(c));
    }

    #[test]
    fn a_token_opens_only_for_its_own_room(
        c in live_claims(),
        other in room(),
        nonce in any::<[u8; 12]>(),
    ) {
        let key = TokenKey::new(&KEY);
        let t = key.mint(&c, nonce);
        let r = key.open_for_room(&t, &other, NOW);
        if other == c.room {
            prop_assert_eq!(r, Ok(c));
        } else {
            prop_assert_eq!(r, Err(TokenError::WrongRoom));
        }
    }

    #[test]
    fn expiry_and_not_before_are_exact(
        c in claims(),
        nonce in any::<[u8; 12]>(),
        // Times at and beside both boundaries, and anywhere.
        pick in 0usize..7,
        anywhere in any::<u64>(),
    ) {
        let key = TokenKey::new(&KEY);
        let t = key.mint(&c, nonce);
        let nbf = c.not_before.unwrap_or(0);
        let now = [
            c.expires_at.saturating_sub(1),
            c.expires_at,
            c.expires_at.saturating_add(1),
            nbf.saturating_sub(1),
            nbf,
            nbf.saturating_add(1),
            anywhere,
        ][pick];
        let want = expected(&c, now).map(|()| c.clone());
        prop_assert_eq!(key.open(&t, now), want.clone());
        // The room check comes after the time checks.
        prop_assert_eq!(key.open_for_room(&t, &c.room, now), want);
    }

    #[test]
    fn flipping_any_bit_of_the_sealed_bytes_is_refused(
        c in live_claims(),
        nonce in any::<[u8; 12]>(),
        bit in any::<prop::sample::Index>(),
    ) {
        let key = TokenKey::new(&KEY);
        let t = key.mint(&c, nonce);
        let mut raw = b64_decode(&t[3..]).expect("a minted token is base64url");
        let i = bit.index(raw.len() * 8);
        raw[i / 8] ^= 1 << (i % 8);
        let forged = format!("v1.{}", b64_encode(&raw));
        prop_assert_eq!(key.open(&forged, NOW), Err(TokenError::Invalid));
    }

    #[test]
    fn a_token_from_another_key_is_refused(
        c in live_claims(),
        nonce in any::<[u8; 12]>(),
        other in any::<[u8; 32]>(),
    ) {
        prop_assume!(other != KEY);
        let t = TokenKey::new(&other).mint(&c, nonce);
        prop_assert_eq!(TokenKey::new(&KEY).open(&t, NOW), Err(TokenError::Invalid));
    }

    #[test]
    fn cutting_or_extending_a_token_is_refused(
        c in live_claims(),
        nonce in any::<[u8; 12]>(),
        cut in any::<prop::sample::Index>(),
        tail in "[A-Za-z0-9_-]{1,8}",
    ) {
        let key = TokenKey::new(&KEY);
        let t = key.mint(&c, nonce);
        let short = &t[..cut.index(t.len())];
        prop_assert!(key.open(short, NOW).is_err(), "{short:?}");
        let long = format!("{t}{tail}");
        prop_assert!(key.open(&long, NOW).is_err(), "{long:?}");
    }

    /// Changing any character of the token as text (what travels in the
    /// link) for another base64url character is refused. It failed while
    /// `b64::decode` ignored the 2 or 4 bits of base64url's last character
    /// that encode nothing when the sealed length is not a multiple of 3:
    /// e.g. `…4` → `…5` opens to the same claims. The hub keys a removed
    /// patient's bar (`Bar::Link`) and the reconnect match on SHA-256 of the
    /// token *text*, so such a twin link is neither barred nor taken for the
    /// same link: a removed patient or guest comes back (a pre-admitted one
    /// straight into the room; see `prop_hub.rs`). Fixed in
    /// `signaling/src/b64.rs`: non-zero spare bits are refused. A random bit
    /// flip of the text finds it only now and then (few of a token's bits
    /// are spare), so this property changes the last character half of the
    /// time.
    #[test]
    fn changing_any_character_of_the_token_text_is_refused(
        c in live_claims(),
        nonce in any::<[u8; 12]>(),
        at_end in any::<bool>(),
        at in any::<prop::sample::Index>(),
        with in any::<prop::sample::Index>(),
    ) {
        let key = TokenKey::new(&KEY);
        let t = key.mint(&c, nonce);
        let mut bytes = t.clone().into_bytes();
        let i = if at_end { bytes.len() - 1 } else { at.index(bytes.len()) };
        bytes[i] = ALPHABET[with.index(ALPHABET.len())];
        prop_assume!(bytes != t.as_bytes());
        let forged = String::from_utf8(bytes).expect("ASCII");
        prop_assert!(key.open(&forged, NOW).is_err(), "{} → {} opens", t, forged);
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The finding above, on one concrete token: the twin differs from the
/// minted token only in its last character's unused bits (it used to open).
#[test]
fn a_twin_of_a_token_with_other_padding_bits_is_refused() {
    let key = TokenKey::new(&KEY);
    let c = Claims {
        room: RoomId::from_random([1; 10]),
        role: Role::Patient,
        name: "A".into(),
        facility: None,
        expires_at: NOW + 3600,
        not_before: None,
        pre_admitted: true,
        staff_id: None,
        licence_number: None,
        chair: false,
    };
    let t = key.mint(&c, [0; 12]);
    let raw_len = b64_decode(&t[3..]).unwrap().len();
    assert_ne!(raw_len % 3, 0, "this token's last character has spare bits");
    let twin = twin_of(&t);
    assert_ne!(twin, t);
    assert!(key.open(&twin, NOW).is_err(), "{t} and {twin} both open");
}

/// The token with the last character's spare (low) bits set.
fn twin_of(t: &str) -> String {
    let (head, last) = t.split_at(t.len() - 1);
    let v = ALPHABET
        .iter()
        .position(|&a| a == last.as_bytes()[0])
        .unwrap();
    format!("{head}{}", ALPHABET[v | 1] as char)
}
