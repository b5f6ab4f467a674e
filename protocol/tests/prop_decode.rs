//! Property tests of the frame decoder (`parse_client_msg`): whatever a
//! WebSocket text frame holds, it becomes a `ClientMsg` or a `ProtocolError`
//! with one of the decoder's codes, never a panic; and whatever decodes
//! re-encodes to a frame that decodes to the same message.
//!
//! Bounded (a few hundred cases each) so that they run with the ordinary
//! `cargo test`; `fuzz/` has the same decoder as a cargo-fuzz target for
//! longer runs. A failing case is saved under `proptest-regressions/` and
//! replayed first by later runs (those files are committed).

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Map, Number, Value};
use tuxa_protocol::{
    ClientMsg, ErrorCode, LinkStats, MAX_MESSAGE_BYTES, MediaKind, ParticipantId, RoomId,
    TrackSource, parse_client_msg,
};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// The decoder's own codes: anything else would mean it let a frame through
/// half-judged.
fn is_decoder_code(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::BadJson
            | ErrorCode::UnknownMessage
            | ErrorCode::InvalidMessage
            | ErrorCode::MessageTooLarge
    )
}

/// Decodes `text` and checks what the decoder promises: an error with a
/// decoder code, or a message whose encoding decodes to itself.
fn check_frame(text: &str) -> Result<Option<ClientMsg>, TestCaseError> {
    match parse_client_msg(text) {
        Err(e) => {
            prop_assert!(is_decoder_code(e.code), "{text:?} gave {e}");
            if text.len() > MAX_MESSAGE_BYTES {
                prop_assert_eq!(e.code, ErrorCode::MessageTooLarge);
            }
            Ok(None)
        }
        Ok(msg) => {
            prop_assert!(text.len() <= MAX_MESSAGE_BYTES);
            prop_assert!(ClientMsg::TYPES.contains(&msg.type_name()));
            let again = serde_json::to_string(&msg).expect("a client message serialises");
            let back = parse_client_msg(&again);
            prop_assert_eq!(
                back.as_ref(),
                Ok(&msg),
                "{:?} decoded, re-encoded as {:?}",
                text,
                again
            );
            Ok(Some(msg))
        }
    }
}

/// Every field name a client message or its `stats` has, plus a stranger.
const FIELDS: &[&str] = &[
    "type",
    "versions",
    "client",
    "room",
    "token",
    "text_version",
    "remote_examination",
    "third_parties",
    "recording",
    "sdp",
    "kind",
    "muted",
    "seq",
    "participant_id",
    "queue",
    "name",
    "phone",
    "reason",
    "ticket",
    "doctor",
    "queues",
    "sources",
    "text",
    "locked",
    "stats",
    "on",
    "rtt_ms",
    "loss_pct",
    "jitter_ms",
    "frame_height",
    "audio_only",
    "extra",
];

/// Strings a field is likely to want (enum names, a valid room id, mids)
/// and some it will not.
fn json_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "", "audio", "video", "camera", "microphone", "screen", "second_camera",
            "abcdefghijklmnop", "7777777777777777", "ABCDEFGHIJKLMNOP", "v1.AAAA", "0", "1",
            "hello", "join", "chat", "null", "\u{0}", "\u{feff}", "Nguyễn", "../../etc",
        ])
        .prop_map(str::to_owned),
        1 => any::<String>(),
        1 => "[a-z2-7]{14,18}",
    ]
}

fn json_number() -> impl Strategy<Value = Number> {
    prop_oneof![
        3 => (0u64..5).prop_map(Number::from),
        1 => any::<u64>().prop_map(Number::from),
        1 => any::<i64>().prop_map(Number::from),
        1 => prop::sample::select(vec![
            u64::MAX, u64::from(u32::MAX), u64::from(u32::MAX) + 1, 9_007_199_254_740_993,
        ])
        .prop_map(Number::from),
        // Floats, including ones an f32 cannot hold.
        1 => prop::num::f64::NORMAL
            .prop_filter_map("finite", Number::from_f64),
        1 => prop::sample::select(vec![0.5, -0.0, 100.0, 100.000_01, 1e38, 3.5e38, 1e300, 1e-45])
            .prop_filter_map("finite", Number::from_f64),
    ]
}

/// Any JSON value, biased towards small and plausible ones.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        json_number().prop_map(Value::Number),
        json_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((field_name(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(FIELDS).prop_map(str::to_owned),
        1 => json_string(),
    ]
}

/// A JSON object with a known (mostly) `type` and random fields: the shape a
/// confused or hostile client sends.
fn message_like() -> impl Strategy<Value = Value> {
    let ty = prop_oneof![
        6 => prop::sample::select(ClientMsg::TYPES).prop_map(|t| Value::String(t.to_owned())),
        1 => json_value(),
    ];
    (
        ty,
        prop::collection::vec((field_name(), json_value()), 0..6),
    )
        .prop_map(|(ty, fields)| {
            let mut map: Map<String, Value> = fields.into_iter().collect();
            map.insert("type".to_owned(), ty);
            Value::Object(map)
        })
}

/// The golden client fixtures: real messages to mutate.
fn fixtures() -> Vec<Value> {
    let all: Value = serde_json::from_str(include_str!("../fixtures/messages.json")).unwrap();
    all["client"].as_array().unwrap().clone()
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Replace (or add) a field.
    Set(String, Value),
    /// Drop the n-th field.
    Remove(usize),
    /// Replace the n-th field's value.
    Retype(usize, Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (field_name(), json_value()).prop_map(|(k, v)| Mutation::Set(k, v)),
        (0usize..8).prop_map(Mutation::Remove),
        (0usize..8, json_value()).prop_map(|(i, v)| Mutation::Retype(i, v)),
    ]
}

fn mutate(mut v: Value, muts: &[Mutation]) -> Value {
    let Some(map) = v.as_object_mut() else {
        return v;
    };
    for m in muts {
        match m {
            Mutation::Set(k, val) => {
                map.insert(k.clone(), val.clone());
            }
            Mutation::Remove(i) => {
                if let Some(k) = map.keys().nth(i % map.len().max(1)).cloned() {
                    map.remove(&k);
                }
            }
            Mutation::Retype(i, val) => {
                if let Some(k) = map.keys().nth(i % map.len().max(1)).cloned() {
                    map.insert(k, val.clone());
                }
            }
        }
    }
    v
}

// Well-typed messages, for the encoder → decoder direction.

fn room_id() -> impl Strategy<Value = RoomId> {
    any::<[u8; 10]>().prop_map(RoomId::from_random)
}

fn pid() -> impl Strategy<Value = ParticipantId> {
    any::<u64>().prop_map(ParticipantId)
}

fn kind() -> impl Strategy<Value = MediaKind> {
    prop_oneof![Just(MediaKind::Audio), Just(MediaKind::Video)]
}

fn source() -> impl Strategy<Value = TrackSource> {
    prop_oneof![
        Just(TrackSource::Camera),
        Just(TrackSource::Microphone),
        Just(TrackSource::Screen),
        Just(TrackSource::SecondCamera),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), json_string()]
}

fn stats() -> impl Strategy<Value = LinkStats> {
    (
        any::<Option<u32>>(),
        // Any finite f32: the decoder does not judge ranges (the hub does).
        prop::option::of(prop::num::f32::NORMAL | prop::num::f32::ZERO),
        any::<Option<u32>>(),
        any::<Option<u32>>(),
        any::<bool>(),
    )
        .prop_map(
            |(rtt_ms, loss_pct, jitter_ms, frame_height, audio_only)| LinkStats {
                rtt_ms,
                loss_pct,
                jitter_ms,
                frame_height,
                audio_only,
            },
        )
}

fn client_msg() -> impl Strategy<Value = ClientMsg> {
    let sources = prop::collection::btree_map(text(), source(), 0..4)
        .prop_map(|m: BTreeMap<String, TrackSource>| m);
    prop_oneof![
        (
            prop::collection::vec(any::<u32>(), 0..4),
            any::<Option<String>>()
        )
            .prop_map(|(versions, client)| ClientMsg::Hello { versions, client }),
        (room_id(), text()).prop_map(|(room, token)| ClientMsg::Join { room, token }),
        (text(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(t, a, b, c)| {
            ClientMsg::Consent {
                text_version: t,
                remote_examination: a,
                third_parties: b,
                recording: c,
            }
        }),
        text().prop_map(|sdp| ClientMsg::Offer { sdp }),
        text().prop_map(|sdp| ClientMsg::Answer { sdp }),
        (kind(), any::<bool>()).prop_map(|(kind, muted)| ClientMsg::Mute { kind, muted }),
        Just(ClientMsg::Leave {}),
        any::<u64>().prop_map(|seq| ClientMsg::Ping { seq }),
        pid().prop_map(|participant_id| ClientMsg::Admit { participant_id }),
        pid().prop_map(|participant_id| ClientMsg::Refuse { participant_id }),
        (any::<u64>(), text(), text(), text()).prop_map(|(queue, name, phone, reason)| {
            ClientMsg::QueueJoin {
                queue,
                name,
                phone,
                reason,
            }
        }),
        text().prop_map(|ticket| ClientMsg::QueueResume { ticket }),
        text().prop_map(|ticket| ClientMsg::QueueCancel { ticket }),
        prop::collection::vec(any::<u64>(), 0..4)
            .prop_map(|queues| ClientMsg::Available { queues }),
        text().prop_map(|ticket| ClientMsg::AcceptPatient { ticket }),
        text().prop_map(|ticket| ClientMsg::DeclinePatient { ticket }),
        (text(), any::<Option<u64>>(), any::<Option<u64>>()).prop_map(|(ticket, queue, doctor)| {
            ClientMsg::Transfer {
                ticket,
                queue,
                doctor,
            }
        }),
        Just(ClientMsg::DoctorFree {}),
        sources.prop_map(|sources| ClientMsg::Sources { sources }),
        text().prop_map(|text| ClientMsg::Chat { text }),
        (pid(), kind()).prop_map(|(participant_id, kind)| ClientMsg::MuteParticipant {
            participant_id,
            kind
        }),
        pid().prop_map(|participant_id| ClientMsg::RemoveParticipant { participant_id }),
        any::<bool>().prop_map(|locked| ClientMsg::LockRoom { locked }),
        prop::option::of(pid())
            .prop_map(|participant_id| ClientMsg::SetSecretary { participant_id }),
        stats().prop_map(|stats| ClientMsg::Stats { stats }),
        any::<bool>().prop_map(|on| ClientMsg::AudioOnly { on }),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check_frame(&text)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        // A WebSocket text frame is UTF-8 by the time it is decoded; the
        // lossy conversion is what a server reading raw bytes would do.
        check_frame(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn arbitrary_json_never_panics(value in json_value()) {
        check_frame(&value.to_string())?;
    }

    #[test]
    fn message_shaped_json_decodes_or_is_refused(value in message_like()) {
        let text = value.to_string();
        if let Some(msg) = check_frame(&text)? {
            // What decoded is the message the frame named.
            prop_assert_eq!(Some(msg.type_name()), value["type"].as_str());
        } else {
            let code = parse_client_msg(&text).unwrap_err().code;
            match value["type"].as_str() {
                Some(t) if ClientMsg::TYPES.contains(&t) => {
                    prop_assert_eq!(code, ErrorCode::InvalidMessage)
                }
                Some(_) => prop_assert_eq!(code, ErrorCode::UnknownMessage),
                None => prop_assert_eq!(code, ErrorCode::BadJson),
            }
        }
    }

    #[test]
    fn mutated_fixtures_decode_or_are_refused(
        which in any::<prop::sample::Index>(),
        muts in prop::collection::vec(mutation(), 1..4),
    ) {
        let all = fixtures();
        let v = mutate(all[which.index(all.len())].clone(), &muts);
        check_frame(&v.to_string())?;
    }

    #[test]
    fn every_message_survives_encode_then_decode(msg in client_msg()) {
        let text = serde_json::to_string(&msg).expect("serialises");
        prop_assert_eq!(parse_client_msg(&text), Ok(msg));
    }

    #[test]
    fn oversized_frames_are_refused_by_size(msg in client_msg(), pad in 0usize..64) {
        // Whitespace is valid JSON: only the size can make this frame bad.
        let text = serde_json::to_string(&msg).expect("serialises");
        let big = format!("{text}{}", " ".repeat(MAX_MESSAGE_BYTES + 1 + pad - text.len().min(MAX_MESSAGE_BYTES)));
        prop_assert!(big.len() > MAX_MESSAGE_BYTES);
        prop_assert_eq!(parse_client_msg(&big).map_err(|e| e.code), Err(ErrorCode::MessageTooLarge));
    }

    /// A `stats` frame whose `loss_pct` is any JSON number decodes to a
    /// message that re-encodes to itself, or is refused. It failed while a
    /// number beyond f32's range (e.g. `3.5e38`) decoded to `Some(inf)`,
    /// which serialises as `null` and decodes back as `None`; such a number
    /// is refused now (`protocol/src/msg.rs`, `finite_f32`).
    #[test]
    fn stats_with_any_number_re_encode_to_themselves(loss in json_number()) {
        let frame = serde_json::json!({
            "type": "stats",
            "stats": { "loss_pct": loss, "audio_only": false },
        });
        check_frame(&frame.to_string())?;
    }
}
