//! The signaling hub driven through its public API only, in simulated time.
//!
//! Nothing here opens a socket or sleeps: `Instant`s are built from one
//! `Instant::now()` plus `Duration`s, and the Unix clock is a plain number.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tuxa_protocol::{
    ClientMsg, ConsultationKind, ErrorCode, KEEPALIVE_INTERVAL_MS, LeaveReason, LinkGrade,
    LinkStats, MediaKind, ParticipantId, ParticipantInfo, ProtocolError, Role, RoomId, RoomInfo,
    SUPPORTED_VERSIONS, ServerMsg,
};
use tuxa_records::{FacilityId, QueueId, StaffId};
use tuxa_signaling::{
    Bar, Claims, Hub, HubConfig, Input, MediaCommand, Output, QualityWindow, RecordEvent,
    RoomStatus, SessionId, TokenError, TokenKey, b64_decode, b64_encode,
};

const KEY: [u8; 32] = [0x42; 32];
/// "Now" on the Unix clock, in seconds.
const UNIX_NOW: u64 = 1_750_000_000;
const IDLE: Duration = Duration::from_secs(45);
const GRACE: Duration = Duration::from_secs(30);

fn room_id(n: u8) -> RoomId {
    RoomId::from_random([n; 10])
}

fn room_info(id: &RoomId) -> RoomInfo {
    RoomInfo {
        id: id.clone(),
        kind: ConsultationKind::Visit,
        title: "Khám từ xa".into(),
    }
}

/// One hub plus a simulated clock and a token mint.
struct World {
    hub: Hub,
    key: Arc<TokenKey>,
    t0: Instant,
    now: Instant,
    unix: u64,
    nonce: u64,
    next_sid: u64,
    /// A doctor's session per room, to admit patients and guests from the
    /// lobby in tests that are not about the lobby.
    hosts: std::collections::HashMap<RoomId, SessionId>,
}

impl World {
    fn new() -> World {
        World::with_config(HubConfig {
            server_name: "tuxa-test".into(),
            max_participants: 16,
            idle_timeout: IDLE,
            reconnect_grace: Duration::ZERO,
            abandon_after: tuxa_signaling::DEFAULT_ABANDON_AFTER,
            recording_available: false,
        })
    }

    /// A hub that keeps a dropped participant's place for [`GRACE`].
    fn with_grace() -> World {
        World::with_config(HubConfig {
            server_name: "tuxa-test".into(),
            max_participants: 16,
            idle_timeout: IDLE,
            reconnect_grace: GRACE,
            abandon_after: tuxa_signaling::DEFAULT_ABANDON_AFTER,
            recording_available: false,
        })
    }

    fn with_config(config: HubConfig) -> World {
        let key = Arc::new(TokenKey::new(&KEY));
        let t0 = Instant::now();
        World {
            hub: Hub::new(config, key.clone()),
            key,
            t0,
            now: t0,
            unix: UNIX_NOW,
            nonce: 0,
            next_sid: 1,
            hosts: std::collections::HashMap::new(),
        }
    }

    /// Moves both clocks forward together.
    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.unix = UNIX_NOW + (self.now - self.t0).as_secs();
    }

    fn handle(&mut self, input: Input) -> Vec<Output> {
        self.hub.handle(self.now, self.unix, input);
        self.drain()
    }

    fn timeout(&mut self) -> (Option<Instant>, Vec<Output>) {
        let next = self.hub.handle_timeout(self.now);
        (next, self.drain())
    }

    fn drain(&mut self) -> Vec<Output> {
        let mut v = Vec::new();
        while let Some(o) = self.hub.poll_output() {
            v.push(o);
        }
        v
    }

    fn open_room(&mut self, id: &RoomId) {
        let out = self.handle(Input::RoomOpened(room_info(id), RoomStatus::Open));
        assert!(out.is_empty(), "opening a room says nothing: {out:?}");
    }

    fn fresh_nonce(&mut self) -> [u8; 12] {
        self.nonce += 1;
        let mut n = [0u8; 12];
        n[..8].copy_from_slice(&self.nonce.to_be_bytes());
        n
    }

    fn claims(&self, room: &RoomId, role: Role, name: &str) -> Claims {
        Claims {
            room: room.clone(),
            role,
            name: name.into(),
            facility: Some(format!("Trạm y tế của {name}")),
            expires_at: UNIX_NOW + 3600,
            not_before: None,
            pre_admitted: false,
            staff_id: None,
            licence_number: None,
            chair: false,
        }
    }

    fn mint(&mut self, claims: &Claims) -> String {
        let nonce = self.fresh_nonce();
        self.key.mint(claims, nonce)
    }

    fn token(&mut self, room: &RoomId, role: Role, name: &str) -> String {
        let c = self.claims(room, role, name);
        self.mint(&c)
    }

    fn connect(&mut self) -> SessionId {
        let sid = SessionId(self.next_sid);
        self.next_sid += 1;
        // Every test client is on one address (the queue's per-address cap is
        // tested in tests/queue.rs).
        let out = self.handle(Input::Connected(sid, std::net::Ipv4Addr::LOCALHOST.into()));
        assert!(out.is_empty(), "{out:?}");
        sid
    }

    fn frame(&mut self, sid: SessionId, msg: ClientMsg) -> Vec<Output> {
        self.handle(Input::Frame(sid, Ok(msg)))
    }

    fn hello(&mut self, sid: SessionId) {
        let out = self.frame(sid, hello(&[1]));
        match only_sends_to(&out, sid).as_slice() {
            [ServerMsg::Welcome { version: 1, .. }] => {}
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    /// Sends the patient's consent answers and checks they were recorded.
    fn consent(&mut self, sid: SessionId, remote_examination: bool) -> Vec<Output> {
        let out = self.frame(
            sid,
            ClientMsg::Consent {
                text_version: "vi-test-1".into(),
                remote_examination,
                third_parties: false,
                recording: false,
            },
        );
        assert!(
            sends_to(&out, sid)
                .iter()
                .any(|m| matches!(m, ServerMsg::ConsentRecorded { text_version, at } if text_version == "vi-test-1" && *at == self.unix)),
            "{out:?}"
        );
        out
    }

    /// Connects, says hello and joins; returns the session and who it is.
    fn join(
        &mut self,
        room: &RoomId,
        role: Role,
        name: &str,
    ) -> (SessionId, ParticipantInfo, Vec<Output>) {
        let sid = self.connect();
        self.hello(sid);
        if role == Role::Patient {
            self.consent(sid, true);
        }
        let token = self.token(room, role, name);
        let mut out = self.frame(
            sid,
            ClientMsg::Join {
                room: room.clone(),
                token,
            },
        );
        if role.waits_in_lobby() {
            let waiting = sends_to(&out, sid)
                .into_iter()
                .find_map(|m| match m {
                    ServerMsg::Waiting { you, .. } => Some(you),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{name} did not reach the lobby: {out:?}"));
            let host = *self
                .hosts
                .get(room)
                .unwrap_or_else(|| panic!("no doctor in the room to admit {name}"));
            out = self.frame(
                host,
                ClientMsg::Admit {
                    participant_id: waiting.id,
                },
            );
        }
        if role.is_host() {
            self.hosts.entry(room.clone()).or_insert(sid);
        }
        let you = sends_to(&out, sid)
            .into_iter()
            .find_map(|m| match m {
                ServerMsg::Joined { you, .. } => Some(you),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{name} did not join: {out:?}"));
        (sid, you, out)
    }
}

fn hello(versions: &[u32]) -> ClientMsg {
    ClientMsg::Hello {
        versions: versions.to_vec(),
        client: Some("hub-test".into()),
    }
}

fn sends_to(out: &[Output], sid: SessionId) -> Vec<ServerMsg> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(s, m) if *s == sid => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// The messages for `sid`, asserting that nothing else came out.
fn only_sends_to(out: &[Output], sid: SessionId) -> Vec<ServerMsg> {
    for o in out {
        assert!(
            matches!(o, Output::Send(s, _) if *s == sid),
            "unexpected output {o:?} in {out:?}"
        );
    }
    sends_to(out, sid)
}

fn closed(out: &[Output], sid: SessionId) -> bool {
    out.contains(&Output::Close(sid))
}

fn error_codes(out: &[Output], sid: SessionId) -> Vec<ErrorCode> {
    sends_to(out, sid)
        .into_iter()
        .filter_map(|m| match m {
            ServerMsg::Error { code, .. } => Some(code),
            _ => None,
        })
        .collect()
}

/// Exactly one message for `sid`, an error with `code`, and what it replies to.
fn expect_error(out: &[Output], sid: SessionId, code: ErrorCode) -> Option<String> {
    match sends_to(out, sid).as_slice() {
        [
            ServerMsg::Error {
                code: c,
                in_reply_to,
                ..
            },
        ] if *c == code => in_reply_to.clone(),
        other => panic!("expected one {code} error for {sid:?}, got {other:?} (all: {out:?})"),
    }
}

fn media_cmds(out: &[Output]) -> Vec<MediaCommand> {
    out.iter()
        .filter_map(|o| match o {
            Output::Media(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn records(out: &[Output]) -> Vec<RecordEvent> {
    out.iter()
        .filter_map(|o| match o {
            Output::Record(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// The position of the first output matching `f` (for ordering checks).
fn pos(out: &[Output], f: impl Fn(&Output) -> bool) -> usize {
    out.iter()
        .position(f)
        .unwrap_or_else(|| panic!("no such output in {out:?}"))
}

// ---------------------------------------------------------------------------
// hello

#[test]
fn hello_picks_the_highest_common_version() {
    let mut w = World::new();
    let best = *SUPPORTED_VERSIONS.iter().max().unwrap();
    // Versions we do not speak, around and above the ones we do, in any order.
    let mut offered: Vec<u32> = vec![best + 7, 0, best + 1];
    offered.extend(SUPPORTED_VERSIONS.iter().copied());
    offered.push(9_999);
    let sid = w.connect();
    let out = w.frame(sid, hello(&offered));
    match only_sends_to(&out, sid).as_slice() {
        [
            ServerMsg::Welcome {
                version,
                server,
                keepalive_interval_ms,
                idle_timeout_ms,
            },
        ] => {
            assert_eq!(*version, best);
            assert_eq!(server, "tuxa-test");
            assert_eq!(*keepalive_interval_ms, KEEPALIVE_INTERVAL_MS);
            assert_eq!(*idle_timeout_ms, IDLE.as_millis() as u64, "from the config");
        }
        other => panic!("{other:?}"),
    }
    assert!(!closed(&out, sid));

    // Every supported version is accepted on its own too.
    for v in SUPPORTED_VERSIONS {
        let sid = w.connect();
        let out = w.frame(sid, hello(&[*v, 10_000]));
        assert!(
            matches!(only_sends_to(&out, sid).as_slice(), [ServerMsg::Welcome { version, .. }] if version == v),
            "{out:?}"
        );
    }
}

#[test]
fn hello_without_common_version_is_fatal() {
    let mut w = World::new();
    let r = room_id(1);
    w.open_room(&r);
    for versions in [vec![], vec![0], vec![2, 3, 1000]] {
        if versions.iter().any(|v| SUPPORTED_VERSIONS.contains(v)) {
            continue;
        }
        let sid = w.connect();
        let out = w.frame(sid, hello(&versions));
        assert_eq!(error_codes(&out, sid), vec![ErrorCode::UnsupportedVersion]);
        assert!(ErrorCode::UnsupportedVersion.is_fatal());
        // The error goes out first, then the close.
        let e = pos(
            &out,
            |o| matches!(o, Output::Send(s, ServerMsg::Error { .. }) if *s == sid),
        );
        let c = pos(&out, |o| *o == Output::Close(sid));
        assert!(e < c, "{out:?}");
        assert_eq!(out.len(), 2, "{out:?}");

        // The session is dead: a later good hello or join is ignored.
        assert!(w.frame(sid, hello(&[1])).is_empty());
        let tok = w.token(&r, Role::Doctor, "BS. Lan");
        assert!(
            w.frame(
                sid,
                ClientMsg::Join {
                    room: r.clone(),
                    token: tok
                }
            )
            .is_empty()
        );
    }
    assert!(w.hub.participants_in(&r).is_empty());
}

#[test]
fn messages_before_hello_get_hello_required_and_the_session_survives() {
    let mut w = World::new();
    let r = room_id(1);
    w.open_room(&r);
    let sid = w.connect();
    let tok = w.token(&r, Role::Nurse, "Nguyễn Văn A");
    let early = [
        ClientMsg::Ping { seq: 1 },
        ClientMsg::Join {
            room: r.clone(),
            token: tok.clone(),
        },
        ClientMsg::Offer { sdp: "v=0".into() },
        ClientMsg::Leave {},
    ];
    for msg in early {
        let ty = msg.type_name();
        let out = w.frame(sid, msg);
        assert_eq!(
            expect_error(&out, sid, ErrorCode::HelloRequired).as_deref(),
            Some(ty)
        );
        assert!(!closed(&out, sid), "hello_required is not fatal");
    }
    // A frame that did not parse is answered with its own code, not hello_required.
    let out = w.handle(Input::Frame(
        sid,
        Err(ProtocolError::new(ErrorCode::BadJson, "not JSON")),
    ));
    expect_error(&out, sid, ErrorCode::BadJson);
    assert!(!closed(&out, sid));
    assert!(
        w.hub.participants_in(&r).is_empty(),
        "the early join did nothing"
    );

    w.hello(sid);
    let out = w.frame(
        sid,
        ClientMsg::Join {
            room: r.clone(),
            token: tok,
        },
    );
    assert!(
        matches!(sends_to(&out, sid).as_slice(), [ServerMsg::Joined { .. }]),
        "{out:?}"
    );
}

#[test]
fn second_hello_is_refused_and_the_session_survives() {
    let mut w = World::new();
    let sid = w.connect();
    w.hello(sid);
    let out = w.frame(sid, hello(&[1]));
    assert_eq!(
        expect_error(&out, sid, ErrorCode::AlreadyNegotiated).as_deref(),
        Some("hello")
    );
    assert!(!closed(&out, sid));
    // Even one with no common version is not fatal once negotiated.
    let out = w.frame(sid, hello(&[999]));
    expect_error(&out, sid, ErrorCode::AlreadyNegotiated);
    assert!(!closed(&out, sid));
    let out = w.frame(sid, ClientMsg::Ping { seq: 77 });
    assert_eq!(only_sends_to(&out, sid), vec![ServerMsg::Pong { seq: 77 }]);
}

// ---------------------------------------------------------------------------
// join

#[test]
fn each_bad_token_gets_its_code_and_the_session_stays_usable() {
    let mut w = World::new();
    let r = room_id(1);
    let other_room = room_id(2);
    w.open_room(&r);
    w.open_room(&other_room);
    let sid = w.connect();
    w.hello(sid);

    let good = w.token(&r, Role::Nurse, "Trần Thị B");

    // Forged: minted with another server's key.
    let forged = TokenKey::new(&[0x43; 32]).mint(&w.claims(&r, Role::Doctor, "Mallory"), [1; 12]);
    // Tampered: one bit flipped inside the sealed part of a good token.
    let mut raw = b64_decode(&good[3..]).unwrap();
    raw[15] ^= 0x01;
    let tampered = format!("v1.{}", b64_encode(&raw));
    // Expired: the expiry is now (a token is refused from its expiry second on).
    let mut c = w.claims(&r, Role::Nurse, "Trần Thị B");
    c.expires_at = w.unix;
    let expired = w.mint(&c);
    // For another consultation.
    let wrong_room = w.token(&other_room, Role::Nurse, "Trần Thị B");

    let cases: Vec<(&str, String, ErrorCode)> = vec![
        ("empty", String::new(), ErrorCode::TokenMalformed),
        ("garbage", "hello".into(), ErrorCode::TokenMalformed),
        ("bad base64", "v1.!!!!".into(), ErrorCode::TokenMalformed),
        (
            "too long",
            format!("v1.{}", "A".repeat(5000)),
            ErrorCode::TokenMalformed,
        ),
        ("forged", forged, ErrorCode::TokenInvalid),
        ("tampered", tampered, ErrorCode::TokenInvalid),
        ("expired", expired, ErrorCode::TokenExpired),
        ("wrong room", wrong_room, ErrorCode::TokenWrongRoom),
    ];
    for (what, token, code) in cases {
        let out = w.frame(
            sid,
            ClientMsg::Join {
                room: r.clone(),
                token,
            },
        );
        assert_eq!(
            expect_error(&out, sid, code).as_deref(),
            Some("join"),
            "{what}"
        );
        assert!(!closed(&out, sid), "{what}: a bad token is not fatal");
        assert!(!code.is_fatal());
        // Refusals of real tokens are recorded (not those of junk).
        let recs = records(&out);
        if code == ErrorCode::TokenMalformed {
            assert!(recs.is_empty(), "{what}: {recs:?}");
        } else {
            assert_eq!(
                recs,
                vec![RecordEvent::TokenRefused {
                    room: r.clone(),
                    code
                }],
                "{what}"
            );
        }
        assert!(w.hub.participants_in(&r).is_empty(), "{what}");
    }

    // After all that, a good token works on the same session.
    let out = w.frame(
        sid,
        ClientMsg::Join {
            room: r.clone(),
            token: good,
        },
    );
    match sends_to(&out, sid).as_slice() {
        [ServerMsg::Joined { you, .. }] => assert_eq!(you.name, "Trần Thị B"),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.hub.participants_in(&r).len(), 1);
}

#[test]
fn token_expiry_boundary() {
    let mut w = World::new();
    let r = room_id(1);
    w.open_room(&r);
    let mut c = w.claims(&r, Role::Doctor, "BS. Hùng");
    c.expires_at = w.unix + 10;
    let token = w.mint(&c);
    // Valid one second before expiry ...
    w.advance(Duration::from_secs(9));
    assert!(w.hub.check_token(&r, &token, w.unix).is_ok());
    // ... refused at it, by check_token and by join alike.
    w.advance(Duration::from_secs(1));
    assert_eq!(
        w.hub
            .check_token(&r, &token, w.unix)
            .map(|_| ())
            .unwrap_err()
            .0,
        ErrorCode::TokenExpired
    );
    let sid = w.connect();
    w.hello(sid);
    let out = w.frame(
        sid,
        ClientMsg::Join {
            room: r.clone(),
            token,
        },
    );
    expect_error(&out, sid, ErrorCode::TokenExpired);
}

#[test]
fn join_errors_for_rooms() {
    let mut w = World::with_config(HubConfig {
        server_name: "tuxa-test".into(),
        max_participants: 2,
        idle_timeout: IDLE,
        reconnect_grace: Duration::ZERO,
        abandon_after: tuxa_signaling::DEFAULT_ABANDON_AFTER,
        recording_available: false,
    });
    let r = room_id(1);
    let unknown = room_id(9);
    let ended = room_id(3);
    w.open_room(&r);
    w.handle(Input::RoomOpened(room_info(&ended), RoomStatus::Ended));

    let sid = w.connect();
    w.hello(sid);

    // A valid token for a room the hub has never heard of.
    let tok = w.token(&unknown, Role::Doctor, "BS. An");
    let out = w.frame(
        sid,
        ClientMsg::Join {
            room: unknown.clone(),
            token: tok,
        },
    );
    assert_eq!(
        expect_error(&out, sid, ErrorCode::RoomNotFound).as_deref(),
        Some("join")
    );
    assert!(!closed(&out, sid));

    // A room loaded as already ended (on a session of its own: room_ended
    // is fatal, see `join_into_ended_room_is_fatal_like_every_room_ended`).
    let other = w.connect();
    w.hello(other);
    let tok = w.token(&ended, Role::Doctor, "BS. An");
    let out = w.frame(
        other,
        ClientMsg::Join {
            room: ended.clone(),
            token: tok,
        },
    );
    assert_eq!(error_codes(&out, other), vec![ErrorCode::RoomEnded]);

    // A full room: max_participants = 2.
    let (a, _, _) = w.join(&r, Role::Doctor, "BS. An");
    let (b, _, _) = w.join(&r, Role::Patient, "Lê Văn C");
    let tok = w.token(&r, Role::Nurse, "YT. Dung");
    let out = w.frame(
        sid,
        ClientMsg::Join {
            room: r.clone(),
            token: tok.clone(),
        },
    );
    assert_eq!(
        expect_error(&out, sid, ErrorCode::RoomFull).as_deref(),
        Some("join")
    );
    assert!(!closed(&out, sid));
    assert!(
        sends_to(&out, a).is_empty() && sends_to(&out, b).is_empty(),
        "{out:?}"
    );
    assert_eq!(w.hub.participants_in(&r).len(), 2);

    // Once someone leaves there is room again, on the same session.
    w.frame(b, ClientMsg::Leave {});
    let out = w.frame(
        sid,
        ClientMsg::Join {
            room: r.clone(),
            token: tok,
        },
    );
    assert!(
        matches!(sends_to(&out, sid).as_slice(), [ServerMsg::Joined { .. }]),
        "{out:?}"
    );
    let again = w.token(&r, Role::Nurse, "x");
    let out = w.frame(
        sid,
        ClientMsg::Join {
            room: r.clone(),
            token: again,
        },
    );
    assert_eq!(
        expect_error(&out, sid, ErrorCode::AlreadyJoined).as_deref(),
        Some("join")
    );
}

/// The protocol says fatal codes are followed by a close, and `room_ended`
/// is fatal (`ErrorCode::is_fatal`, docs/protocol.md). A join into an ended
/// room gets `room_ended` but the session is left open.
#[test]
fn join_into_ended_room_is_fatal_like_every_room_ended() {
    let mut w = World::new();
    let ended = room_id(3);
    w.handle(Input::RoomOpened(room_info(&ended), RoomStatus::Ended));
    let sid = w.connect();
    w.hello(sid);
    let tok = w.token(&ended, Role::Doctor, "BS. An");
    let out = w.frame(
        sid,
        ClientMsg::Join {
            room: ended.clone(),
            token: tok,
        },
    );
    assert_eq!(error_codes(&out, sid), vec![ErrorCode::RoomEnded]);
    assert!(ErrorCode::RoomEnded.is_fatal());
    assert!(
        closed(&out, sid),
        "room_ended is fatal, so it must be followed by a close: {out:?}"
    );
}

#[test]
fn join_success_uses_the_token_not_the_client() {
    let mut w = World::new();
    let r = room_id(1);
    w.open_room(&r);

    // A doctor first.
    let (doc, doc_info, out) = w.join(&r, Role::Doctor, "BS. Phạm Minh");
    match sends_to(&out, doc).as_slice() {
        [
            ServerMsg::Joined {
                room,
                you,
                participants,
                resumed: false,
            },
            ServerMsg::Lobby { waiting },
        ] => {
            assert!(waiting.is_empty(), "a host is told the lobby on joining");
            assert_eq!(room, &room_info(&r));
            assert_eq!(you.name, "BS. Phạm Minh");
            assert_eq!(you.role, Role::Doctor);
            assert_eq!(you.facility.as_deref(), Some("Trạm y tế của BS. Phạm Minh"));
            assert!(!you.audio_muted && !you.video_muted);
            assert!(participants.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        records(&out),
        vec![RecordEvent::Joined {
            room: r.clone(),
            participant: doc_info.clone()
        }]
    );

    // A nurse whose token has no facility. The wire has no way to claim a
    // name or role; what the hub reports is exactly the token's.
    let sid = w.connect();
    w.hello(sid);
    let claims = Claims {
        room: r.clone(),
        role: Role::Nurse,
        name: "Hoàng Thị Em".into(),
        facility: None,
        expires_at: UNIX_NOW + 60,
        not_before: None,
        pre_admitted: false,
        staff_id: None,
        licence_number: None,
        chair: false,
    };
    let token = w.mint(&claims);
    let out = w.frame(
        sid,
        ClientMsg::Join {
            room: r.clone(),
            token,
        },
    );
    let you = match sends_to(&out, sid).as_slice() {
        [
            ServerMsg::Joined {
                you, participants, ..
            },
        ] => {
            assert_eq!(
                participants,
                &vec![doc_info.clone()],
                "the doctor is already there"
            );
            you.clone()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (you.name.as_str(), you.role, you.facility.clone()),
        ("Hoàng Thị Em", Role::Nurse, None)
    );
    assert_ne!(you.id, doc_info.id, "ids are unique");
    // The doctor hears of the patient, with the same record.
    assert_eq!(
        sends_to(&out, doc),
        vec![ServerMsg::ParticipantJoined {
            participant: you.clone()
        }]
    );
    assert_eq!(
        records(&out),
        vec![RecordEvent::Joined {
            room: r.clone(),
            participant: you.clone()
        }]
    );
    assert_eq!(w.hub.participants_in(&r), vec![doc_info, you]);
}

// ---------------------------------------------------------------------------
// in the room

#[test]
fn offer_and_answer_need_a_join() {
    let mut w = World::new();
    let r = room_id(1);
    w.open_room(&r);
    let sid = w.connect();
    w.hello(sid);
    for msg in [
        ClientMsg::Offer { sdp: "v=0".into() },
        ClientMsg::Answer { sdp: "v=0".into() },
        ClientMsg::Mute {
            kind: MediaKind::Audio,
            muted: true,
        },
        ClientMsg::Leave {},
    ] {
        let ty = msg.type_name();
        let out = w.frame(sid, msg);
        assert_eq!(
            expect_error(&out, sid, ErrorCode::NotJoined).as_deref(),
            Some(ty)
        );
        assert!(media_cmds(&out).is_empty());
        assert!(!closed(&out, sid));
    }

    let (a, a_info, _) = w.join(&r, Role::Doctor, "BS. An");
    let out = w.frame(
        a,
        ClientMsg::Offer {
            sdp: "v=0 offer".into(),
        },
    );
    assert_eq!(
        out,
        vec![Output::Media(MediaCommand::Offer {
            room: r.clone(),
            participant: a_info.id,
            sdp: "v=0 offer".into()
        })]
    );
    let out = w.frame(
        a,
        ClientMsg::Answer {
            sdp: "v=0 answer".into(),
        },
    );
    assert_eq!(
        out,
        vec![Output::Media(MediaCommand::Answer {
            participant: a_info.id,
            sdp: "v=0 answer".into()
        })]
    );
}

#[test]
fn mute_is_told_to_the_others_only() {
    let mut w = World::new();
    let r = room_id(1);
    w.open_room(&r);
    let (a, a_info, _) = w.join(&r, Role::Doctor, "BS. An");
    let (b, _, _) = w.join(&r, Role::Patient, "Bệnh nhân B");
    let (c, _, _) = w.join(&r, Role::Nurse, "YT. C");

    let out = w.frame(
        a,
        ClientMsg::Mute {
            kind: MediaKind::Video,
            muted: true,
        },
    );
    let expected = ServerMsg::MuteChanged {
        participant_id: a_info.id,
        kind: MediaKind::Video,
        muted: true,
    };
    assert!(sends_to(&out, a).is_empty(), "{out:?}");
    assert_eq!(sends_to(&out, b), vec![expected.clone()]);
    assert_eq!(sends_to(&out, c), vec![expected]);
    assert_eq!(out.len(), 2);

    // The state is kept: a newcomer sees it in `joined`.
    let (d, _, out) = w.join(&r, Role::Guest, "Khách D");
    match sends_to(&out, d).as_slice() {
        [ServerMsg::Joined { participants, .. }] => {
            let a_seen = participants.iter().find(|p| p.id == a_info.id).unwrap();
            assert!(a_seen.video_muted && !a_seen.audio_muted);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn leave_tells_the_others_removes_media_and_closes() {
    let mut w = World::new();
    let r = room_id(1);
    w.open_room(&r);
    let (a, _, _) = w.join(&r, Role::Doctor, "BS. An");
    let (b, b_info, _) = w.join(&r, Role::Patient, "Bệnh nhân B");

    let out = w.frame(b, ClientMsg::Leave {});
    assert_eq!(
        sends_to(&out, a),
        vec![ServerMsg::ParticipantLeft {
            participant_id: b_info.id,
            reason: LeaveReason::Left
        }]
    );
    assert!(sends_to(&out, b).is_empty());
    assert_eq!(
        media_cmds(&out),
        vec![MediaCommand::Remove {
            participant: b_info.id
        }]
    );
    assert!(closed(&out, b));
    assert!(!closed(&out, a));
    assert_eq!(
        records(&out),
        vec![RecordEvent::Left {
            room: r.clone(),
            participant: b_info.id,
            reason: LeaveReason::Left
        }]
    );
    assert_eq!(w.hub.participants_in(&r).len(), 1);

    // Frames still arriving before the close are ignored; the final
    // disconnect of that socket changes nothing more.
    assert!(
        w.frame(b, ClientMsg::Offer { sdp: "v=0".into() })
            .is_empty()
    );
    assert!(w.handle(Input::Disconnected(b)).is_empty());
    // Media for a participant who is gone goes nowhere.
    assert!(
        w.handle(Input::FromMedia(
            b_info.id,
            ServerMsg::Offer { sdp: "x".into() }
        ))
        .is_empty()
    );
}

#[test]
fn disconnect_is_reported_as_disconnected() {
    let mut w = World::new();
    let r = room_id(1);
    w.open_room(&r);
    let (a, _, _) = w.join(&r, Role::Doctor, "BS. An");
    let (b, b_info, _) = w.join(&r, Role::Patient, "Bệnh nhân B");
    let out = w.handle(Input::Disconnected(b));
    assert_eq!(
        sends_to(&out, a),
        vec![ServerMsg::ParticipantLeft {
            participant_id: b_info.id,
            reason: LeaveReason::Disconnected
        }]
    );
    assert_eq!(
        media_cmds(&out),
        vec![MediaCommand::Remove {
            participant: b_info.id
        }]
    );
    assert_eq!(
        records(&out),
        vec![RecordEvent::Left {
            room: r.clone(),
            participant: b_info.id,
            reason: LeaveReason::Disconnected
        }]
    );
    assert_eq!(w.hub.session_count(), 1);

    // A session that never joined disconnects quietly.
    let c = w.connect();
    w.hello(c);
    assert!(w.handle(Input::Disconnected(c)).is_empty());
    assert_eq!(w.hub.session_count(), 1);
}

#[test]
fn idle_sessions_time_out_and_pinging_ones_survive() {
    let mut w = World::new();
    let r = room_id(1);
    w.open_room(&r);
    let (pinger, _, _) = w.join(&r, Role::Doctor, "BS. An");
    let (silent, silent_info, _) = w.join(&r, Role::Patient, "Bệnh nhân B");
    // One that never even says hello.
    let mute = w.connect();

    let step = Duration::from_millis(500);
    let mut seq = 0;
    let mut since_ping = Duration::ZERO;
    let mut timed_out_at = None;
    let start = w.now;
    while w.now - start < IDLE * 3 {
        w.advance(step);
        since_ping += step;
        if since_ping >= Duration::from_millis(KEEPALIVE_INTERVAL_MS) {
            since_ping = Duration::ZERO;
            seq += 1;
            let out = w.frame(pinger, ClientMsg::Ping { seq });
            assert_eq!(only_sends_to(&out, pinger), vec![ServerMsg::Pong { seq }]);
        }
        let (_, out) = w.timeout();
        if out.is_empty() {
            continue;
        }
        assert!(timed_out_at.is_none(), "timed out twice: {out:?}");
        timed_out_at = Some(w.now - start);
        // Both silent ones, at once (they went silent together).
        for sid in [silent, mute] {
            assert_eq!(error_codes(&out, sid), vec![ErrorCode::IdleTimeout]);
            assert!(closed(&out, sid));
        }
        assert!(!closed(&out, pinger));
        assert_eq!(
            sends_to(&out, pinger),
            vec![ServerMsg::ParticipantLeft {
                participant_id: silent_info.id,
                reason: LeaveReason::Disconnected
            }]
        );
        assert_eq!(
            media_cmds(&out),
            vec![MediaCommand::Remove {
                participant: silent_info.id
            }]
        );
        assert_eq!(
            records(&out),
            vec![RecordEvent::Left {
                room: r.clone(),
                participant: silent_info.id,
                reason: LeaveReason::Disconnected
            }]
        );
    }
    let at = timed_out_at.expect("the silent sessions timed out");
    assert!(at >= IDLE && at < IDLE + step * 2, "timed out after {at:?}");
    assert_eq!(w.hub.participants_in(&r).len(), 1, "the pinger is still in");
    // Frames from a timed-out session are ignored.
    assert!(w.frame(silent, ClientMsg::Ping { seq: 1 }).is_empty());
}

/// `handle_timeout` "returns when it next needs calling". Once a session has
/// timed out (it stays, closing, until the server reports its disconnect) it
/// needs nothing more, so the deadline must be the live sessions' one, not a
/// moment already past (which tells the caller to spin).
#[test]
fn timeout_deadline_ignores_closing_sessions() {
    let mut w = World::new();
    let r = room_id(1);
    w.open_room(&r);
    let (silent, _, _) = w.join(&r, Role::Nurse, "Bệnh nhân B");
    w.advance(Duration::from_secs(30));
    let (alive, _, _) = w.join(&r, Role::Doctor, "BS. An");
    w.advance(Duration::from_secs(15));
    let (_, out) = w.timeout();
    assert!(closed(&out, silent));
    assert!(!closed(&out, alive));
    let (next, out) = w.timeout();
    assert!(out.is_empty());
    let next = next.expect("one live session");
    assert!(
        next > w.now,
        "next deadline {:?} before now: the timed-out session is still counted",
        w.now.saturating_duration_since(next)
    );
    assert_eq!(
        next,
        w.now + Duration::from_secs(30),
        "the live session's deadline"
    );
}

#[test]
fn ending_a_room_is_fatal_for_every_member_and_later_joins() {
    let mut w = World::new();
    let r = room_id(1);
    let other = room_id(2);
    w.open_room(&r);
    w.open_room(&other);
    let (a, a_info, _) = w.join(&r, Role::Doctor, "BS. An");
    let (b, b_info, _) = w.join(&r, Role::Patient, "Bệnh nhân B");
    let (o, _, _) = w.join(&other, Role::Doctor, "BS. Khác");

    let out = w.handle(Input::EndRoom(r.clone()));
    for sid in [a, b] {
        // Told why (the end screen), not an error.
        assert!(
            sends_to(&out, sid).iter().any(|m| matches!(
                m,
                ServerMsg::RoomEnded {
                    reason: tuxa_protocol::EndReason::Ended,
                    ..
                }
            )),
            "{sid:?}: {out:?}"
        );
        assert!(error_codes(&out, sid).is_empty(), "{out:?}");
        assert!(closed(&out, sid));
        // Nothing is sent to a session after its close.
        let c = pos(&out, |x| *x == Output::Close(sid));
        assert!(
            !out[c..]
                .iter()
                .any(|x| matches!(x, Output::Send(s, _) if *s == sid)),
            "{out:?}"
        );
    }
    assert!(sends_to(&out, o).is_empty(), "other rooms are untouched");
    assert!(!closed(&out, o));
    let mut removed = media_cmds(&out);
    removed.sort_by_key(|c| match c {
        MediaCommand::Remove { participant } => participant.0,
        _ => u64::MAX,
    });
    assert_eq!(
        removed,
        vec![
            MediaCommand::Remove {
                participant: a_info.id
            },
            MediaCommand::Remove {
                participant: b_info.id
            }
        ]
    );
    let left: Vec<_> = records(&out)
        .into_iter()
        .filter_map(|r| match r {
            RecordEvent::Left {
                participant,
                reason,
                ..
            } => Some((participant, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|(_, reason)| *reason == LeaveReason::Ended));
    assert!(w.hub.participants_in(&r).is_empty());
    assert_eq!(
        w.hub.rooms().find(|(i, _, _)| i.id == r).map(|(_, s, _)| s),
        Some(RoomStatus::Ended)
    );

    // Later joins, even with good tokens, get room_ended; so does check_token.
    let sid = w.connect();
    w.hello(sid);
    let tok = w.token(&r, Role::Nurse, "YT. C");
    assert_eq!(
        w.hub
            .check_token(&r, &tok, w.unix)
            .map(|_| ())
            .unwrap_err()
            .0,
        ErrorCode::RoomEnded
    );
    let out = w.frame(
        sid,
        ClientMsg::Join {
            room: r.clone(),
            token: tok,
        },
    );
    assert_eq!(error_codes(&out, sid), vec![ErrorCode::RoomEnded]);
    assert!(w.hub.participants_in(&r).is_empty());
    // Re-opening an ended room (say, loaded again) does not revive it.
    w.handle(Input::RoomOpened(room_info(&r), RoomStatus::Open));
    let tok = w.token(&r, Role::Nurse, "YT. C");
    assert_eq!(
        w.hub
            .check_token(&r, &tok, w.unix)
            .map(|_| ())
            .unwrap_err()
            .0,
        ErrorCode::RoomEnded
    );
}

#[test]
fn messages_from_media_go_to_the_right_session() {
    let mut w = World::new();
    let r = room_id(1);
    let r2 = room_id(2);
    w.open_room(&r);
    w.open_room(&r2);
    let (a, a_info, _) = w.join(&r, Role::Doctor, "BS. An");
    let (b, b_info, _) = w.join(&r, Role::Patient, "Bệnh nhân B");
    let (c, c_info, _) = w.join(&r2, Role::Nurse, "Bệnh nhân C");
    for (sid, pid) in [(a, a_info.id), (b, b_info.id), (c, c_info.id)] {
        let msg = ServerMsg::Offer {
            sdp: format!("v=0 for {pid}"),
        };
        let out = w.handle(Input::FromMedia(pid, msg.clone()));
        assert_eq!(out, vec![Output::Send(sid, msg)]);
    }
    // Unknown participant: dropped.
    assert!(
        w.handle(Input::FromMedia(
            ParticipantId(9_999),
            ServerMsg::Answer { sdp: "x".into() }
        ))
        .is_empty()
    );
    // A failed transport is told to its owner only, and is not fatal.
    let out = w.handle(Input::MediaGone(b_info.id));
    assert_eq!(error_codes(&out, b), vec![ErrorCode::MediaFailed]);
    assert_eq!(out.len(), 1);
}

#[test]
fn check_token_results() {
    let mut w = World::new();
    let r = room_id(1);
    let other = room_id(2);
    let missing = room_id(5);
    w.open_room(&r);
    w.open_room(&other);

    let tok = w.token(&r, Role::Nurse, "YT. Dung");
    let (claims, info) = w.hub.check_token(&r, &tok, w.unix).expect("good token");
    assert_eq!(claims, w.claims(&r, Role::Nurse, "YT. Dung"));
    assert_eq!(info, room_info(&r));

    let code =
        |res: Result<(Claims, RoomInfo), (ErrorCode, String)>| res.map(|_| ()).unwrap_err().0;
    assert_eq!(
        code(w.hub.check_token(&r, "nope", w.unix)),
        ErrorCode::TokenMalformed
    );
    let forged = TokenKey::new(&[1; 32]).mint(&w.claims(&r, Role::Doctor, "X"), [3; 12]);
    assert_eq!(
        code(w.hub.check_token(&r, &forged, w.unix)),
        ErrorCode::TokenInvalid
    );
    assert_eq!(
        code(w.hub.check_token(&other, &tok, w.unix)),
        ErrorCode::TokenWrongRoom
    );
    assert_eq!(
        code(w.hub.check_token(&r, &tok, UNIX_NOW + 3600)),
        ErrorCode::TokenExpired
    );
    let tok_missing = w.token(&missing, Role::Doctor, "BS. An");
    assert_eq!(
        code(w.hub.check_token(&missing, &tok_missing, w.unix)),
        ErrorCode::RoomNotFound
    );
    // The token is checked before the room, as in join: a bad token for a
    // missing room is a token error.
    assert_eq!(
        code(w.hub.check_token(&missing, &tok, w.unix)),
        ErrorCode::TokenWrongRoom
    );
    // check_token has no side effects.
    assert!(w.drain().is_empty());
    assert!(w.hub.participants_in(&r).is_empty());

    // Same verdicts as TokenKey itself.
    assert_eq!(w.key.open(&forged, w.unix), Err(TokenError::Invalid));
}

#[test]
fn shutdown_closes_every_session() {
    let mut w = World::new();
    let r = room_id(1);
    w.open_room(&r);
    let (a, _, _) = w.join(&r, Role::Doctor, "BS. An");
    let b = w.connect();
    w.hub.shutdown();
    let out = w.drain();
    for sid in [a, b] {
        assert_eq!(error_codes(&out, sid), vec![ErrorCode::ServerShutdown]);
        assert!(closed(&out, sid));
    }
    assert!(w.hub.participants_in(&r).is_empty());
}

#[test]
fn shutdown_ends_the_places_kept_for_a_reconnect_too() {
    // Otherwise their attendance stays open, and the next start takes the
    // room for one a crash left (and ends it as server_restart).
    let mut w = World::with_grace();
    let r = room_id(1);
    w.open_room(&r);
    let (a, info, _) = w.join(&r, Role::Doctor, "BS. An");
    w.handle(Input::Disconnected(a));
    assert_eq!(w.hub.participants_in(&r).len(), 1, "the place is kept");
    w.hub.shutdown();
    let out = w.drain();
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Record(RecordEvent::Left { participant, reason: LeaveReason::Disconnected, .. })
                if *participant == info.id
        )),
        "{out:?}"
    );
    assert!(w.hub.participants_in(&r).is_empty());
}

// ---------------------------------------------------------------------------
// lobby

/// Connects, says hello and sends a join with a fresh token.
fn arrive(w: &mut World, r: &RoomId, role: Role, name: &str) -> (SessionId, Vec<Output>) {
    let sid = w.connect();
    w.hello(sid);
    if role == Role::Patient {
        w.consent(sid, true);
    }
    let token = w.token(r, role, name);
    let out = w.frame(
        sid,
        ClientMsg::Join {
            room: r.clone(),
            token,
        },
    );
    (sid, out)
}

fn lobby_of(out: &[Output], sid: SessionId) -> Option<Vec<String>> {
    sends_to(out, sid).into_iter().rev().find_map(|m| match m {
        ServerMsg::Lobby { waiting } => Some(waiting.into_iter().map(|p| p.name).collect()),
        _ => None,
    })
}

#[test]
fn patients_and_guests_wait_until_a_doctor_admits_them() {
    let mut w = World::new();
    let r = room_id(1);
    w.open_room(&r);

    // A patient before any doctor: waits, nobody else is told yet.
    let (pat, out) = arrive(&mut w, &r, Role::Patient, "Nguyễn Văn A");
    let pat_info = match sends_to(&out, pat).as_slice() {
        [ServerMsg::Waiting { room, you }] => {
            assert_eq!(room, &room_info(&r));
            assert_eq!(you.role, Role::Patient);
            you.clone()
        }
        other => panic!("{other:?}"),
    };
    assert!(w.hub.participants_in(&r).is_empty(), "not in the room yet");
    assert_eq!(w.hub.waiting_in(&r), vec![pat_info.clone()]);
    // While waiting, media and room messages are refused.
    let out = w.frame(pat, ClientMsg::Offer { sdp: "v=0".into() });
    expect_error(&out, pat, ErrorCode::NotJoined);
    assert!(media_cmds(&out).is_empty());

    // A nurse enters directly and is not a host: no lobby for her.
    let (nurse, nurse_info, out) = w.join(&r, Role::Nurse, "ĐD. Hoa");
    assert_eq!(lobby_of(&out, nurse), None);
    assert!(
        sends_to(&out, pat).is_empty(),
        "the waiting patient hears nothing"
    );
    // A nurse cannot admit.
    let out = w.frame(
        nurse,
        ClientMsg::Admit {
            participant_id: pat_info.id,
        },
    );
    expect_error(&out, nurse, ErrorCode::Forbidden);

    // The doctor arrives and sees the patient waiting.
    let (doc, doc_info, out) = w.join(&r, Role::Doctor, "BS. Lan");
    assert_eq!(lobby_of(&out, doc), Some(vec!["Nguyễn Văn A".to_owned()]));

    // A guest arrives: the doctor's lobby grows.
    let (guest, out) = arrive(&mut w, &r, Role::Guest, "Phiên dịch viên");
    assert!(matches!(
        sends_to(&out, guest).as_slice(),
        [ServerMsg::Waiting { .. }]
    ));
    assert_eq!(
        lobby_of(&out, doc),
        Some(vec![
            "Nguyễn Văn A".to_owned(),
            "Phiên dịch viên".to_owned()
        ])
    );
    let guest_id = w.hub.waiting_in(&r)[1].id;

    // Admit the patient: joined with who is there, others told, lobby shrinks.
    let out = w.frame(
        doc,
        ClientMsg::Admit {
            participant_id: pat_info.id,
        },
    );
    match sends_to(&out, pat).as_slice() {
        [
            ServerMsg::Joined {
                you, participants, ..
            },
        ] => {
            assert_eq!(you, &pat_info);
            assert_eq!(participants, &vec![nurse_info.clone(), doc_info.clone()]);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        sends_to(&out, nurse).contains(&ServerMsg::ParticipantJoined {
            participant: pat_info.clone()
        })
    );
    assert_eq!(
        lobby_of(&out, doc),
        Some(vec!["Phiên dịch viên".to_owned()])
    );
    assert!(records(&out).contains(&RecordEvent::Admitted {
        room: r.clone(),
        participant: pat_info.id,
        by: doc_info.id
    }));
    assert_eq!(w.hub.participants_in(&r).len(), 3);

    // Admitting again, or someone unknown: not_waiting.
    let out = w.frame(
        doc,
        ClientMsg::Admit {
            participant_id: pat_info.id,
        },
    );
    expect_error(&out, doc, ErrorCode::NotWaiting);
    // A patient cannot admit.
    let out = w.frame(
        pat,
        ClientMsg::Admit {
            participant_id: guest_id,
        },
    );
    expect_error(&out, pat, ErrorCode::Forbidden);

    // Refuse the guest: fatal `refused` for them, lobby empty for the doctor.
    let out = w.frame(
        doc,
        ClientMsg::Refuse {
            participant_id: guest_id,
        },
    );
    assert_eq!(error_codes(&out, guest), vec![ErrorCode::Refused]);
    assert!(closed(&out, guest));
    assert_eq!(lobby_of(&out, doc), Some(vec![]));
    assert!(w.hub.waiting_in(&r).is_empty());
    // Their disconnect afterwards changes nothing for the room.
    let out = w.handle(Input::Disconnected(guest));
    assert!(sends_to(&out, doc).is_empty(), "{out:?}");
}

#[test]
fn leaving_or_dropping_out_of_the_lobby_updates_the_hosts() {
    let mut w = World::new();
    let r = room_id(2);
    w.open_room(&r);
    let (doc, _, _) = w.join(&r, Role::Doctor, "BS. Lan");
    let (a, _) = arrive(&mut w, &r, Role::Patient, "A");
    let (b, out) = arrive(&mut w, &r, Role::Patient, "B");
    assert_eq!(
        lobby_of(&out, doc),
        Some(vec!["A".to_owned(), "B".to_owned()])
    );
    let out = w.frame(a, ClientMsg::Leave {});
    assert!(closed(&out, a));
    assert_eq!(lobby_of(&out, doc), Some(vec!["B".to_owned()]));
    let out = w.handle(Input::Disconnected(b));
    assert_eq!(lobby_of(&out, doc), Some(vec![]));
    // No participant_left for people who never entered.
    assert!(
        !sends_to(&out, doc)
            .iter()
            .any(|m| matches!(m, ServerMsg::ParticipantLeft { .. }))
    );

    // A waiting patient who goes silent times out and leaves the lobby.
    let (_c, out) = arrive(&mut w, &r, Role::Patient, "C");
    assert_eq!(lobby_of(&out, doc), Some(vec!["C".to_owned()]));
    for _ in 0..10 {
        w.advance(IDLE / 8);
        w.frame(doc, ClientMsg::Ping { seq: 1 });
    }
    let (_, out) = w.timeout();
    assert_eq!(lobby_of(&out, doc), Some(vec![]));

    // Ending the room ends the lobby too.
    let (d, _) = arrive(&mut w, &r, Role::Patient, "D");
    let out = w.handle(Input::EndRoom(r.clone()));
    assert!(
        sends_to(&out, d)
            .iter()
            .any(|m| matches!(m, ServerMsg::RoomEnded { .. })),
        "{out:?}"
    );
    assert!(closed(&out, d));
    assert!(w.hub.waiting_in(&r).is_empty());
}

// ---------------------------------------------------------------------------
// consent

#[test]
fn a_patient_joins_only_with_consent_to_remote_examination() {
    let mut w = World::new();
    let r = room_id(3);
    w.open_room(&r);
    let (doc, _, _) = w.join(&r, Role::Doctor, "BS. Lan");

    // No consent at all: refused, not fatal.
    let sid = w.connect();
    w.hello(sid);
    let token = w.token(&r, Role::Patient, "Nguyễn Văn A");
    let join = ClientMsg::Join {
        room: r.clone(),
        token,
    };
    let out = w.frame(sid, join.clone());
    assert_eq!(
        expect_error(&out, sid, ErrorCode::ConsentRequired).as_deref(),
        Some("join")
    );
    assert!(!closed(&out, sid));
    // Refusing remote examination: still refused.
    w.consent(sid, false);
    let out = w.frame(sid, join.clone());
    expect_error(&out, sid, ErrorCode::ConsentRequired);
    assert!(w.hub.waiting_in(&r).is_empty());

    // Consenting to the examination but refusing recording and third
    // parties does not block care; the answers are recorded at join.
    w.consent(sid, true);
    let out = w.frame(sid, join);
    let pid = match sends_to(&out, sid).as_slice() {
        [ServerMsg::Waiting { you, .. }] => you.id,
        other => panic!("{other:?}"),
    };
    let recs = records(&out);
    let consent = recs
        .iter()
        .find_map(|rec| match rec {
            RecordEvent::Consent {
                room,
                participant,
                consent,
            } if *room == r && *participant == pid => Some(consent.clone()),
            _ => None,
        })
        .expect("consent recorded with the join");
    assert!(consent.remote_examination && !consent.recording && !consent.third_parties);
    assert_eq!(consent.text_version, "vi-test-1");
    assert_eq!(consent.at, w.unix);

    // A change of mind later is recorded against the same participant.
    w.frame(
        doc,
        ClientMsg::Admit {
            participant_id: pid,
        },
    );
    let out = w.frame(
        sid,
        ClientMsg::Consent {
            text_version: "vi-test-1".into(),
            remote_examination: true,
            third_parties: true,
            recording: false,
        },
    );
    assert!(records(&out).iter().any(|rec| matches!(rec,
        RecordEvent::Consent { participant, consent, .. } if *participant == pid && consent.third_parties)));

    // Staff need no consent of their own.
    let (_, _, _) = w.join(&r, Role::Nurse, "ĐD. Hoa");
    // An empty text version is refused.
    let out = w.frame(
        sid,
        ClientMsg::Consent {
            text_version: String::new(),
            remote_examination: true,
            third_parties: false,
            recording: false,
        },
    );
    expect_error(&out, sid, ErrorCode::InvalidMessage);
}

// ---------------------------------------------------------------------------
// Case conferences: the chair, the secretary, moderation and chat

/// A conference room, its chair (a provincial doctor) and a district doctor
/// in it, and the chair's and district doctor's sessions and ids.
struct Conference {
    room: RoomId,
    chair: (SessionId, ParticipantId),
    district: (SessionId, ParticipantId),
}

/// Joins with a token carrying the staff claims of a conference invitee.
fn join_as(
    w: &mut World,
    room: &RoomId,
    role: Role,
    name: &str,
    chair: bool,
    staff_id: Option<StaffId>,
) -> (SessionId, Vec<Output>, String) {
    let sid = w.connect();
    w.hello(sid);
    if role == Role::Patient {
        w.consent(sid, true);
    }
    let claims = Claims {
        chair,
        staff_id,
        licence_number: staff_id.map(|s| format!("{s:06}/AH-CCHN")),
        ..w.claims(room, role, name)
    };
    let token = w.mint(&claims);
    let out = w.frame(
        sid,
        ClientMsg::Join {
            room: room.clone(),
            token: token.clone(),
        },
    );
    (sid, out, token)
}

fn joined_id(out: &[Output], sid: SessionId) -> ParticipantId {
    sends_to(out, sid)
        .into_iter()
        .find_map(|m| match m {
            ServerMsg::Joined { you, .. } | ServerMsg::Waiting { you, .. } => Some(you.id),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no joined/waiting for {sid:?} in {out:?}"))
}

fn room_state(
    out: &[Output],
    sid: SessionId,
) -> Option<(bool, Option<ParticipantId>, Option<ParticipantId>)> {
    sends_to(out, sid).into_iter().rev().find_map(|m| match m {
        ServerMsg::RoomState {
            locked,
            chair,
            secretary,
        } => Some((locked, chair, secretary)),
        _ => None,
    })
}

fn conference(w: &mut World) -> Conference {
    let room = room_id(9);
    let out = w.handle(Input::RoomOpened(
        RoomInfo {
            id: room.clone(),
            kind: ConsultationKind::Conference,
            title: "Hội chẩn — Nội khoa".into(),
        },
        RoomStatus::Open,
    ));
    assert!(out.is_empty());
    // The scheduler named staff member 3 to chair.
    let out = w.handle(Input::ChairNamed {
        room: room.clone(),
        staff: StaffId(3),
    });
    assert!(
        out.is_empty(),
        "naming the chair of an empty room says nothing"
    );
    let (d_sid, out, _) = join_as(
        w,
        &room,
        Role::Doctor,
        "BS. Huyện",
        false,
        Some(StaffId(10)),
    );
    let d_id = joined_id(&out, d_sid);
    assert_eq!(
        room_state(&out, d_sid),
        None,
        "a plain room says nothing of its state"
    );
    let (c_sid, out, _) = join_as(w, &room, Role::Doctor, "BS. Tỉnh", true, Some(StaffId(3)));
    let c_id = joined_id(&out, c_sid);
    // Both learn who chairs; the chair's licence number is shown to the others.
    assert_eq!(room_state(&out, c_sid), Some((false, Some(c_id), None)));
    assert_eq!(room_state(&out, d_sid), Some((false, Some(c_id), None)));
    let shown = sends_to(&out, d_sid).into_iter().find_map(|m| match m {
        ServerMsg::ParticipantJoined { participant } => participant.licence_number,
        _ => None,
    });
    assert_eq!(shown.as_deref(), Some("000003/AH-CCHN"));
    Conference {
        room,
        chair: (c_sid, c_id),
        district: (d_sid, d_id),
    }
}

#[test]
fn with_a_chair_present_only_the_chair_admits_and_others_are_refused() {
    let mut w = World::new();
    let c = conference(&mut w);
    let (p_sid, out, _) = join_as(&mut w, &c.room, Role::Patient, "Trần Thị B", false, None);
    let p_id = joined_id(&out, p_sid);
    // Both doctors see the lobby, but the district doctor may not decide.
    assert_eq!(
        lobby_of(&out, c.chair.0),
        Some(vec!["Trần Thị B".to_owned()])
    );
    let out = w.frame(
        c.district.0,
        ClientMsg::Admit {
            participant_id: p_id,
        },
    );
    assert_eq!(
        expect_error(&out, c.district.0, ErrorCode::Forbidden).as_deref(),
        Some("admit")
    );
    // The patient cannot admit themselves (they are not in the room yet)…
    let out = w.frame(
        p_sid,
        ClientMsg::Admit {
            participant_id: p_id,
        },
    );
    expect_error(&out, p_sid, ErrorCode::NotJoined);
    // …the chair can.
    let out = w.frame(
        c.chair.0,
        ClientMsg::Admit {
            participant_id: p_id,
        },
    );
    assert!(
        sends_to(&out, p_sid)
            .iter()
            .any(|m| matches!(m, ServerMsg::Joined { .. }))
    );
    assert!(records(&out).contains(&RecordEvent::Admitted {
        room: c.room.clone(),
        participant: p_id,
        by: c.chair.1,
    }));
    // A joined patient has no moderation rights either.
    for msg in [
        ClientMsg::LockRoom { locked: true },
        ClientMsg::MuteParticipant {
            participant_id: c.chair.1,
            kind: MediaKind::Audio,
        },
        ClientMsg::RemoveParticipant {
            participant_id: c.district.1,
        },
        ClientMsg::SetSecretary {
            participant_id: Some(c.district.1),
        },
    ] {
        let ty = msg.type_name();
        let out = w.frame(p_sid, msg);
        assert_eq!(
            expect_error(&out, p_sid, ErrorCode::Forbidden).as_deref(),
            Some(ty)
        );
    }
    // When the chair leaves, the room's doctors moderate again.
    let out = w.frame(c.chair.0, ClientMsg::Leave {});
    assert_eq!(room_state(&out, c.district.0), Some((false, None, None)));
    let (g_sid, out, _) = join_as(&mut w, &c.room, Role::Guest, "Phiên dịch", false, None);
    let g_id = joined_id(&out, g_sid);
    let out = w.frame(
        c.district.0,
        ClientMsg::Admit {
            participant_id: g_id,
        },
    );
    assert!(
        sends_to(&out, g_sid)
            .iter()
            .any(|m| matches!(m, ServerMsg::Joined { .. }))
    );
}

#[test]
fn the_chair_names_a_secretary_mutes_and_locks() {
    let mut w = World::new();
    let c = conference(&mut w);
    // The secretary must be staff in the room.
    let out = w.frame(
        c.chair.0,
        ClientMsg::SetSecretary {
            participant_id: Some(ParticipantId(999)),
        },
    );
    expect_error(&out, c.chair.0, ErrorCode::InvalidMessage);
    let out = w.frame(
        c.chair.0,
        ClientMsg::SetSecretary {
            participant_id: Some(c.district.1),
        },
    );
    for sid in [c.chair.0, c.district.0] {
        assert_eq!(
            room_state(&out, sid),
            Some((false, Some(c.chair.1), Some(c.district.1)))
        );
    }
    assert!(records(&out).contains(&RecordEvent::SecretaryNamed {
        room: c.room.clone(),
        participant: Some(c.district.1),
        staff_id: Some(StaffId(10)),
        by: c.chair.1,
    }));

    // Mute: the target is asked, the others see it muted at once.
    let out = w.frame(
        c.chair.0,
        ClientMsg::MuteParticipant {
            participant_id: c.district.1,
            kind: MediaKind::Audio,
        },
    );
    assert_eq!(
        sends_to(&out, c.district.0),
        vec![ServerMsg::MuteRequested {
            kind: MediaKind::Audio,
            by: c.chair.1
        }]
    );
    assert_eq!(
        sends_to(&out, c.chair.0),
        vec![ServerMsg::MuteChanged {
            participant_id: c.district.1,
            kind: MediaKind::Audio,
            muted: true
        }]
    );
    // Not oneself, not someone absent.
    let out = w.frame(
        c.chair.0,
        ClientMsg::MuteParticipant {
            participant_id: c.chair.1,
            kind: MediaKind::Video,
        },
    );
    expect_error(&out, c.chair.0, ErrorCode::InvalidMessage);
    let out = w.frame(
        c.chair.0,
        ClientMsg::RemoveParticipant {
            participant_id: ParticipantId(777),
        },
    );
    expect_error(&out, c.chair.0, ErrorCode::NotFound);

    // Lock: nobody new gets in, not even into the lobby; unlocking lets them.
    let out = w.frame(c.chair.0, ClientMsg::LockRoom { locked: true });
    assert_eq!(
        room_state(&out, c.district.0),
        Some((true, Some(c.chair.1), Some(c.district.1)))
    );
    assert!(records(&out).contains(&RecordEvent::Locked {
        room: c.room.clone(),
        locked: true,
        by: c.chair.1
    }));
    let (late, out, token) = join_as(
        &mut w,
        &c.room,
        Role::Doctor,
        "BS. Muộn",
        false,
        Some(StaffId(20)),
    );
    assert_eq!(
        expect_error(&out, late, ErrorCode::RoomLocked).as_deref(),
        Some("join")
    );
    assert!(
        !closed(&out, late),
        "a locked room is not fatal: the client may retry"
    );
    w.frame(c.chair.0, ClientMsg::LockRoom { locked: false });
    let out = w.frame(
        late,
        ClientMsg::Join {
            room: c.room.clone(),
            token,
        },
    );
    assert!(
        sends_to(&out, late)
            .iter()
            .any(|m| matches!(m, ServerMsg::Joined { .. }))
    );
}

#[test]
fn a_removed_participant_is_closed_and_their_link_is_barred() {
    let mut w = World::new();
    let c = conference(&mut w);
    let (g_sid, out, token) = join_as(&mut w, &c.room, Role::Guest, "Khách", false, None);
    let g_id = joined_id(&out, g_sid);
    w.frame(
        c.chair.0,
        ClientMsg::Admit {
            participant_id: g_id,
        },
    );
    let out = w.frame(
        c.chair.0,
        ClientMsg::RemoveParticipant {
            participant_id: g_id,
        },
    );
    assert_eq!(error_codes(&out, g_sid), vec![ErrorCode::Removed]);
    assert!(closed(&out, g_sid));
    assert!(
        sends_to(&out, c.district.0).contains(&ServerMsg::ParticipantLeft {
            participant_id: g_id,
            reason: LeaveReason::Removed,
        })
    );
    assert!(media_cmds(&out).contains(&MediaCommand::Remove { participant: g_id }));
    let bar = records(&out)
        .iter()
        .find_map(|r| match r {
            RecordEvent::Removed {
                room,
                participant,
                by,
                bar,
            } if *room == c.room && *participant == g_id && *by == c.chair.1 => Some(*bar),
            _ => None,
        })
        .expect("the removal is recorded");
    // A guest's link names no account: the link itself is barred.
    assert!(matches!(bar, Bar::Link(_)), "{bar:?}");
    // The same link, on a new connection, is refused for good.
    let again = w.connect();
    w.hello(again);
    let out = w.frame(
        again,
        ClientMsg::Join {
            room: c.room.clone(),
            token,
        },
    );
    assert_eq!(error_codes(&out, again), vec![ErrorCode::Removed]);
    assert!(closed(&out, again));
}

/// Opens a conference room whose scheduler named `chair` (if any).
fn conference_room(w: &mut World, n: u8, chair: Option<StaffId>) -> RoomId {
    let room = room_id(n);
    w.handle(Input::RoomOpened(
        RoomInfo {
            id: room.clone(),
            kind: ConsultationKind::Conference,
            title: "Hội chẩn".into(),
        },
        RoomStatus::Open,
    ));
    if let Some(staff) = chair {
        w.handle(Input::ChairNamed {
            room: room.clone(),
            staff,
        });
    }
    room
}

#[test]
fn only_the_named_chairs_own_link_carries_the_chair() {
    let mut w = World::new();
    let room = conference_room(&mut w, 20, Some(StaffId(3)));
    // Staff member 10 holds a link with the chair's claim (minted for
    // themselves): they enter as a plain doctor, and no chair is announced.
    let (self_made, out, _) = join_as(
        &mut w,
        &room,
        Role::Doctor,
        "BS. Tự phong",
        true,
        Some(StaffId(10)),
    );
    let self_made_id = joined_id(&out, self_made);
    assert_eq!(room_state(&out, self_made), None, "{out:?}");
    // A chair claim with no account behind it, or the named chair's account
    // without the claim, carries nothing either.
    let (anon, out, _) = join_as(&mut w, &room, Role::Doctor, "BS. Vô danh", true, None);
    let _ = joined_id(&out, anon);
    assert_eq!(room_state(&out, anon), None, "{out:?}");
    let (plain, out, _) = join_as(
        &mut w,
        &room,
        Role::Nurse,
        "ĐD. Tỉnh",
        false,
        Some(StaffId(3)),
    );
    let _ = joined_id(&out, plain);
    assert_eq!(room_state(&out, plain), None, "{out:?}");
    // The named chair enters: everyone learns who chairs, and from then on
    // the self-made chair is refused what only the chair may do.
    let (chair, out, _) = join_as(
        &mut w,
        &room,
        Role::Doctor,
        "BS. Chủ tọa",
        true,
        Some(StaffId(3)),
    );
    let chair_id = joined_id(&out, chair);
    for sid in [chair, self_made, anon] {
        assert_eq!(room_state(&out, sid), Some((false, Some(chair_id), None)));
    }
    for msg in [
        ClientMsg::LockRoom { locked: true },
        ClientMsg::RemoveParticipant {
            participant_id: chair_id,
        },
        ClientMsg::SetSecretary {
            participant_id: Some(self_made_id),
        },
    ] {
        let ty = msg.type_name();
        let out = w.frame(self_made, msg);
        assert_eq!(
            expect_error(&out, self_made, ErrorCode::Forbidden).as_deref(),
            Some(ty)
        );
    }
    // The chair may, and the self-made chair does not get past a lock.
    w.frame(chair, ClientMsg::LockRoom { locked: true });
    w.frame(self_made, ClientMsg::Leave {});
    let (again, out, _) = join_as(
        &mut w,
        &room,
        Role::Doctor,
        "BS. Tự phong",
        true,
        Some(StaffId(10)),
    );
    expect_error(&out, again, ErrorCode::RoomLocked);

    // A room whose scheduler named nobody (a visit, or a conference made
    // through the plain API) has no chair, whatever the links claim.
    let visit = room_id(21);
    w.open_room(&visit);
    let (sid, out, _) = join_as(
        &mut w,
        &visit,
        Role::Doctor,
        "BS. Khám",
        true,
        Some(StaffId(3)),
    );
    let _ = joined_id(&out, sid);
    assert_eq!(room_state(&out, sid), None, "{out:?}");
}

#[test]
fn naming_another_chair_takes_the_rights_from_the_one_in_the_room() {
    let mut w = World::new();
    let c = conference(&mut w);
    let out = w.handle(Input::ChairNamed {
        room: c.room.clone(),
        staff: StaffId(10),
    });
    // Staff 3's link no longer chairs; staff 10's link has no chair claim.
    assert_eq!(room_state(&out, c.district.0), Some((false, None, None)));
    assert_eq!(room_state(&out, c.chair.0), Some((false, None, None)));
}

#[test]
fn a_removed_staff_member_stays_out_with_a_fresh_link_and_after_a_restart() {
    let mut w = World::new();
    let c = conference(&mut w);
    let (g_sid, out, g_token) = join_as(&mut w, &c.room, Role::Guest, "Khách", false, None);
    let g_id = joined_id(&out, g_sid);
    let mut bars = Vec::new();
    for (target, by) in [(c.district.1, c.chair.0), (g_id, c.chair.0)] {
        let out = w.frame(
            by,
            ClientMsg::RemoveParticipant {
                participant_id: target,
            },
        );
        bars.extend(records(&out).into_iter().filter_map(|r| match r {
            RecordEvent::Removed { bar, .. } => Some(bar),
            _ => None,
        }));
    }
    // The district doctor (staff 10) is barred as a person, the guest by link.
    assert_eq!(bars.len(), 2);
    assert_eq!(bars[0], Bar::Staff(StaffId(10)));
    assert!(matches!(bars[1], Bar::Link(_)), "{bars:?}");

    // A fresh link for staff 10 (as the conference's join mints one) is
    // refused, at the join page's check and at join; another staff member's is not.
    let fresh = {
        let claims = Claims {
            staff_id: Some(StaffId(10)),
            ..w.claims(&c.room, Role::Doctor, "BS. Huyện")
        };
        w.mint(&claims)
    };
    assert_eq!(
        w.hub.check_token(&c.room, &fresh, w.unix).map(|_| ()),
        Err((
            ErrorCode::Removed,
            "the chair removed you from this consultation".into()
        ))
    );
    let sid = w.connect();
    w.hello(sid);
    let out = w.frame(
        sid,
        ClientMsg::Join {
            room: c.room.clone(),
            token: fresh.clone(),
        },
    );
    assert_eq!(error_codes(&out, sid), vec![ErrorCode::Removed]);
    assert!(closed(&out, sid));
    let (other, out, _) = join_as(
        &mut w,
        &c.room,
        Role::Doctor,
        "BS. Khác",
        false,
        Some(StaffId(11)),
    );
    let _ = joined_id(&out, other);

    // A restart: a new hub with the room, its chair and its bars from the
    // store keeps both out.
    let mut w2 = World::new();
    let room = conference_room(&mut w2, 9, Some(StaffId(3)));
    assert_eq!(room, c.room);
    for bar in bars {
        let out = w2.handle(Input::Barred {
            room: room.clone(),
            bar,
        });
        assert!(out.is_empty(), "{out:?}");
    }
    for token in [fresh, g_token] {
        let sid = w2.connect();
        w2.hello(sid);
        w2.consent(sid, true);
        let out = w2.frame(
            sid,
            ClientMsg::Join {
                room: room.clone(),
                token,
            },
        );
        assert_eq!(error_codes(&out, sid), vec![ErrorCode::Removed]);
    }
    // The chair still chairs after the restart.
    let (chair, out, _) = join_as(
        &mut w2,
        &room,
        Role::Doctor,
        "BS. Tỉnh",
        true,
        Some(StaffId(3)),
    );
    let chair_id = joined_id(&out, chair);
    assert_eq!(room_state(&out, chair), Some((false, Some(chair_id), None)));
}

#[test]
fn chat_reaches_everyone_and_is_kept_only_for_conferences() {
    let mut w = World::new();
    let c = conference(&mut w);
    let out = w.frame(
        c.district.0,
        ClientMsg::Chat {
            text: "  Xin chào hội đồng  ".into(),
        },
    );
    let expected = ServerMsg::Chat {
        from: c.district.1,
        name: "BS. Huyện".into(),
        text: "Xin chào hội đồng".into(),
        at: w.unix,
    };
    for sid in [c.chair.0, c.district.0] {
        assert_eq!(sends_to(&out, sid), vec![expected.clone()]);
    }
    assert!(
        matches!(records(&out).as_slice(), [RecordEvent::Chat { text, .. }] if text == "Xin chào hội đồng")
    );
    for bad in ["   ".to_owned(), "x".repeat(2001)] {
        let out = w.frame(c.district.0, ClientMsg::Chat { text: bad });
        expect_error(&out, c.district.0, ErrorCode::InvalidMessage);
    }
    // A visit's chat goes to the room but not into the record.
    let r = room_id(3);
    w.open_room(&r);
    let (d, out, _) = join_as(&mut w, &r, Role::Doctor, "BS. An", false, None);
    let _ = joined_id(&out, d);
    let out = w.frame(
        d,
        ClientMsg::Chat {
            text: "ghi chú".into(),
        },
    );
    assert_eq!(sends_to(&out, d).len(), 1);
    assert!(records(&out).is_empty(), "{out:?}");
}

#[test]
fn sources_go_to_the_media_side_and_are_bounded() {
    let mut w = World::new();
    let c = conference(&mut w);
    let sources: std::collections::BTreeMap<String, tuxa_protocol::TrackSource> =
        [("2".to_owned(), tuxa_protocol::TrackSource::Screen)].into();
    let out = w.frame(
        c.district.0,
        ClientMsg::Sources {
            sources: sources.clone(),
        },
    );
    assert_eq!(
        media_cmds(&out),
        vec![MediaCommand::Sources {
            participant: c.district.1,
            sources
        }]
    );
    let many = (0..17)
        .map(|i| (i.to_string(), tuxa_protocol::TrackSource::Camera))
        .collect();
    let out = w.frame(c.district.0, ClientMsg::Sources { sources: many });
    expect_error(&out, c.district.0, ErrorCode::InvalidMessage);
}

/// A participant's audio-only choice goes to the media side as theirs; one
/// not in a room is refused.
#[test]
fn audio_only_goes_to_the_media_side() {
    let mut w = World::new();
    let c = conference(&mut w);
    for on in [true, false] {
        let out = w.frame(c.district.0, ClientMsg::AudioOnly { on });
        assert_eq!(
            media_cmds(&out),
            vec![MediaCommand::AudioOnly {
                participant: c.district.1,
                on
            }]
        );
    }
    let stranger = w.connect();
    w.hello(stranger);
    let out = w.frame(stranger, ClientMsg::AudioOnly { on: true });
    assert!(media_cmds(&out).is_empty());
    expect_error(&out, stranger, ErrorCode::NotJoined);
}

// ---------------------------------------------------------------------------
// Reconnect within the grace window

/// A new session, with hello (and consent for a patient), joining with `token`.
fn rejoin(w: &mut World, room: &RoomId, token: &str, patient: bool) -> (SessionId, Vec<Output>) {
    let sid = w.connect();
    w.hello(sid);
    if patient {
        w.consent(sid, true);
    }
    let out = w.frame(
        sid,
        ClientMsg::Join {
            room: room.clone(),
            token: token.to_owned(),
        },
    );
    (sid, out)
}

fn left_msgs(out: &[Output]) -> Vec<&Output> {
    out.iter()
        .filter(|o| matches!(o, Output::Send(_, ServerMsg::ParticipantLeft { .. })))
        .collect()
}

#[test]
fn a_dropped_chair_keeps_their_place_and_takes_it_back_with_the_same_link() {
    let mut w = World::with_grace();
    let room = room_id(9);
    w.handle(Input::RoomOpened(
        RoomInfo {
            id: room.clone(),
            kind: ConsultationKind::Conference,
            title: "Hội chẩn".into(),
        },
        RoomStatus::Open,
    ));
    w.handle(Input::ChairNamed {
        room: room.clone(),
        staff: StaffId(3),
    });
    let (d_sid, out, _) = join_as(
        &mut w,
        &room,
        Role::Doctor,
        "BS. Huyện",
        false,
        Some(StaffId(10)),
    );
    let d_id = joined_id(&out, d_sid);
    let (c_sid, out, c_token) = join_as(
        &mut w,
        &room,
        Role::Doctor,
        "BS. Tỉnh",
        true,
        Some(StaffId(3)),
    );
    let c_id = joined_id(&out, c_sid);
    w.frame(
        c_sid,
        ClientMsg::SetSecretary {
            participant_id: Some(d_id),
        },
    );
    w.frame(c_sid, ClientMsg::LockRoom { locked: true });
    w.frame(
        c_sid,
        ClientMsg::Mute {
            kind: MediaKind::Video,
            muted: true,
        },
    );

    // The chair's WebSocket breaks: the others hear "reconnecting", not "left".
    let out = w.handle(Input::Disconnected(c_sid));
    assert_eq!(
        sends_to(&out, d_sid),
        vec![ServerMsg::ParticipantReconnecting {
            participant_id: c_id
        }]
    );
    assert!(left_msgs(&out).is_empty(), "{out:?}");
    assert!(
        media_cmds(&out).is_empty(),
        "the transport is left to the SFU"
    );
    assert_eq!(
        records(&out),
        vec![RecordEvent::LinkLost {
            room: room.clone(),
            participant: c_id
        }]
    );
    assert!(w.hub.is_reconnecting(c_id));
    // Nothing is sent to the dead session, whatever happens meanwhile.
    let out = w.frame(
        d_sid,
        ClientMsg::Chat {
            text: "Chờ BS. Tỉnh".into(),
        },
    );
    assert!(sends_to(&out, c_sid).is_empty());
    w.advance(Duration::from_secs(20));
    let (_, out) = w.timeout();
    assert!(
        left_msgs(&out).is_empty(),
        "still inside the window: {out:?}"
    );

    // Back with the same link, 20 s later, into a locked room: same id,
    // still chair, the secretary and the mute kept.
    let (c2, out) = rejoin(&mut w, &room, &c_token, false);
    let joined = sends_to(&out, c2)
        .into_iter()
        .find_map(|m| match m {
            ServerMsg::Joined {
                you,
                participants,
                resumed,
                ..
            } => Some((you, participants, resumed)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no joined: {out:?}"));
    assert_eq!(joined.0.id, c_id);
    assert!(joined.0.video_muted);
    assert!(joined.2, "joined says resumed");
    assert_eq!(
        joined.1.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![d_id]
    );
    assert_eq!(room_state(&out, c2), Some((true, Some(c_id), Some(d_id))));
    assert_eq!(
        sends_to(&out, d_sid),
        vec![ServerMsg::ParticipantReconnected {
            participant_id: c_id
        }]
    );
    assert_eq!(
        media_cmds(&out),
        vec![MediaCommand::Remove { participant: c_id }],
        "the old transport goes; the new offer makes a new one"
    );
    assert!(records(&out).contains(&RecordEvent::LinkBack {
        room: room.clone(),
        participant: c_id,
        replaced: false
    }));
    assert!(!w.hub.is_reconnecting(c_id));
    // Still the chair: only they may lock.
    let out = w.frame(d_sid, ClientMsg::LockRoom { locked: false });
    assert_eq!(error_codes(&out, d_sid), vec![ErrorCode::Forbidden]);
    let out = w.frame(c2, ClientMsg::LockRoom { locked: false });
    assert_eq!(
        room_state(&out, d_sid),
        Some((false, Some(c_id), Some(d_id)))
    );

    // What the media side says of the old transport (in flight when it
    // was removed) does not reach the new session; after its offer it does.
    let stale = ServerMsg::Offer { sdp: "old".into() };
    let out = w.handle(Input::FromMedia(c_id, stale));
    assert!(out.is_empty(), "{out:?}");
    assert!(w.handle(Input::MediaGone(c_id)).is_empty());
    let out = w.frame(
        c2,
        ClientMsg::Offer {
            sdp: "v=0 new".into(),
        },
    );
    assert_eq!(
        media_cmds(&out),
        vec![MediaCommand::Offer {
            room: room.clone(),
            participant: c_id,
            sdp: "v=0 new".into()
        }]
    );
    let fresh = ServerMsg::Answer { sdp: "new".into() };
    let out = w.handle(Input::FromMedia(c_id, fresh.clone()));
    assert_eq!(out, vec![Output::Send(c2, fresh)]);

    // Much later nothing leaves: the window closed with the reconnect.
    w.advance(Duration::from_secs(60));
    w.frame(d_sid, ClientMsg::Ping { seq: 1 });
    w.frame(c2, ClientMsg::Ping { seq: 1 });
    let (_, out) = w.timeout();
    assert!(left_msgs(&out).is_empty(), "{out:?}");
}

#[test]
fn after_the_grace_window_the_participant_leaves_disconnected() {
    let mut w = World::with_grace();
    let r = room_id(1);
    w.open_room(&r);
    let (a, _, _) = w.join(&r, Role::Doctor, "BS. An");
    let (b, b_info, _) = w.join(&r, Role::Nurse, "YT. Bình");
    let out = w.handle(Input::Disconnected(b));
    assert!(left_msgs(&out).is_empty());
    let dropped_at = w.now;
    w.advance(Duration::from_secs(29));
    w.frame(a, ClientMsg::Ping { seq: 1 });
    let (next, out) = w.timeout();
    assert!(left_msgs(&out).is_empty(), "{out:?}");
    assert_eq!(next, Some(dropped_at + GRACE), "woken when the window ends");
    w.advance(Duration::from_secs(1));
    let (_, out) = w.timeout();
    assert_eq!(
        sends_to(&out, a),
        vec![ServerMsg::ParticipantLeft {
            participant_id: b_info.id,
            reason: LeaveReason::Disconnected
        }]
    );
    assert_eq!(
        media_cmds(&out),
        vec![MediaCommand::Remove {
            participant: b_info.id
        }]
    );
    assert!(records(&out).contains(&RecordEvent::Left {
        room: r.clone(),
        participant: b_info.id,
        reason: LeaveReason::Disconnected
    }));
    assert!(w.hub.participants_in(&r).iter().all(|p| p.id != b_info.id));
}

#[test]
fn after_the_window_the_same_link_joins_as_a_new_participant() {
    let mut w = World::with_grace();
    let r = room_id(1);
    w.open_room(&r);
    let (_a, _, _) = w.join(&r, Role::Doctor, "BS. An");
    let b_token = w.token(&r, Role::Nurse, "YT. Bình");
    let (b, out) = rejoin(&mut w, &r, &b_token, false);
    let b_id = joined_id(&out, b);
    w.handle(Input::Disconnected(b));
    w.advance(GRACE);
    w.timeout();
    let (b2, out) = rejoin(&mut w, &r, &b_token, false);
    let b2_id = joined_id(&out, b2);
    assert_ne!(b2_id, b_id, "the place was given up: a new participant");
    assert!(
        sends_to(&out, b2)
            .iter()
            .any(|m| matches!(m, ServerMsg::Joined { resumed, .. } if !resumed))
    );
}

#[test]
fn a_second_session_with_the_same_link_replaces_the_first() {
    let mut w = World::with_grace();
    let r = room_id(1);
    w.open_room(&r);
    let (a, a_info, _) = w.join(&r, Role::Doctor, "BS. An");
    let p_token = w.token(&r, Role::Patient, "Bệnh nhân B");
    let (p, out) = rejoin(&mut w, &r, &p_token, true);
    let p_id = joined_id(&out, p);
    w.frame(
        a,
        ClientMsg::Admit {
            participant_id: p_id,
        },
    );
    // The phone opens the link again (new tab, or a reconnect the server
    // has not noticed the old connection of yet).
    let (p2, out) = rejoin(&mut w, &r, &p_token, true);
    assert_eq!(error_codes(&out, p), vec![ErrorCode::Replaced]);
    assert!(closed(&out, p));
    assert_eq!(joined_id(&out, p2), p_id, "the same participant, no lobby");
    assert!(
        sends_to(&out, a).is_empty(),
        "the others see nothing: {out:?}"
    );
    assert_eq!(
        media_cmds(&out),
        vec![MediaCommand::Remove { participant: p_id }]
    );
    assert!(records(&out).contains(&RecordEvent::LinkBack {
        room: r.clone(),
        participant: p_id,
        replaced: true
    }));
    // Consent was given again on the new session, and recorded.
    assert!(
        records(&out)
            .iter()
            .any(|e| matches!(e, RecordEvent::Consent { participant, .. } if *participant == p_id))
    );
    // The old session's disconnect, arriving later, changes nothing.
    let out = w.handle(Input::Disconnected(p));
    assert!(out.is_empty(), "{out:?}");
    assert!(!w.hub.is_reconnecting(p_id));
    // The new one is live: its mute reaches the doctor.
    let out = w.frame(
        p2,
        ClientMsg::Mute {
            kind: MediaKind::Audio,
            muted: true,
        },
    );
    assert_eq!(sends_to(&out, a).len(), 1);
    let _ = a_info;
}

#[test]
fn a_second_session_in_the_lobby_keeps_the_place_in_line() {
    let mut w = World::with_grace();
    let r = room_id(1);
    w.open_room(&r);
    let (a, _, _) = w.join(&r, Role::Doctor, "BS. An");
    let p_token = w.token(&r, Role::Patient, "Bệnh nhân B");
    let (p, out) = rejoin(&mut w, &r, &p_token, true);
    let p_id = joined_id(&out, p);
    let (_q, out) = arrive(&mut w, &r, Role::Patient, "Bệnh nhân C");
    let _ = out;
    let (p2, out) = rejoin(&mut w, &r, &p_token, true);
    assert_eq!(error_codes(&out, p), vec![ErrorCode::Replaced]);
    assert_eq!(joined_id(&out, p2), p_id);
    assert_eq!(w.hub.waiting_in(&r)[0].id, p_id, "still first in line");
    let out = w.frame(
        a,
        ClientMsg::Admit {
            participant_id: p_id,
        },
    );
    assert!(
        sends_to(&out, p2)
            .iter()
            .any(|m| matches!(m, ServerMsg::Joined { .. })),
        "the new session is admitted: {out:?}"
    );
}

#[test]
fn an_idle_session_keeps_its_place_for_the_window_too() {
    let mut w = World::with_grace();
    let r = room_id(1);
    w.open_room(&r);
    let (a, _, _) = w.join(&r, Role::Doctor, "BS. An");
    let b_token = w.token(&r, Role::Doctor, "BS. Bình");
    let (b, out) = rejoin(&mut w, &r, &b_token, false);
    let b_id = joined_id(&out, b);
    // b goes silent (a dead 3G link sends no FIN); a keeps pinging.
    for _ in 0..3 {
        w.advance(IDLE / 3);
        w.frame(a, ClientMsg::Ping { seq: 1 });
    }
    let (_, out) = w.timeout();
    assert_eq!(error_codes(&out, b), vec![ErrorCode::IdleTimeout]);
    assert!(closed(&out, b));
    assert_eq!(
        sends_to(&out, a),
        vec![ServerMsg::ParticipantReconnecting {
            participant_id: b_id
        }]
    );
    // The socket's end, reported later, changes nothing.
    assert!(w.handle(Input::Disconnected(b)).is_empty());
    w.advance(Duration::from_secs(10));
    let (b2, out) = rejoin(&mut w, &r, &b_token, false);
    assert_eq!(joined_id(&out, b2), b_id);
    assert_eq!(
        sends_to(&out, a),
        vec![ServerMsg::ParticipantReconnected {
            participant_id: b_id
        }]
    );
}

#[test]
fn someone_away_can_be_removed_and_the_room_ended_without_them() {
    let mut w = World::with_grace();
    let c = conference(&mut w);
    let (g_sid, out, g_token) = join_as(&mut w, &c.room, Role::Guest, "Khách", false, None);
    let g_id = joined_id(&out, g_sid);
    w.frame(
        c.chair.0,
        ClientMsg::Admit {
            participant_id: g_id,
        },
    );
    w.handle(Input::Disconnected(g_sid));
    let out = w.frame(
        c.chair.0,
        ClientMsg::RemoveParticipant {
            participant_id: g_id,
        },
    );
    assert!(
        sends_to(&out, c.district.0).contains(&ServerMsg::ParticipantLeft {
            participant_id: g_id,
            reason: LeaveReason::Removed,
        })
    );
    assert!(media_cmds(&out).contains(&MediaCommand::Remove { participant: g_id }));
    // The link is barred: no taking the place back.
    let (g2, out) = rejoin(&mut w, &c.room, &g_token, false);
    assert_eq!(error_codes(&out, g2), vec![ErrorCode::Removed]);

    // The district doctor drops; then the room ends: they are out with "ended".
    w.handle(Input::Disconnected(c.district.0));
    let out = w.handle(Input::EndRoom(c.room.clone()));
    assert!(records(&out).contains(&RecordEvent::Left {
        room: c.room.clone(),
        participant: c.district.1,
        reason: LeaveReason::Ended
    }));
    assert!(w.hub.participants_in(&c.room).is_empty());
}

#[test]
fn a_newcomer_learns_who_is_reconnecting() {
    let mut w = World::with_grace();
    let r = room_id(1);
    w.open_room(&r);
    let (_a, a_info, _) = w.join(&r, Role::Doctor, "BS. An");
    let (a2, _, _) = w.join(&r, Role::Doctor, "BS. Hai");
    w.handle(Input::Disconnected(a2));
    let (n, _, out) = w.join(&r, Role::Nurse, "YT. Ba");
    let msgs = sends_to(&out, n);
    let away: Vec<ParticipantId> = msgs
        .iter()
        .filter_map(|m| match m {
            ServerMsg::ParticipantReconnecting { participant_id } => Some(*participant_id),
            _ => None,
        })
        .collect();
    assert_eq!(away.len(), 1);
    assert_ne!(away[0], a_info.id);
}

// ---------------------------------------------------------------------------
// Link telemetry

fn stats(rtt: u32, loss: f32, audio_only: bool) -> ClientMsg {
    ClientMsg::Stats {
        stats: LinkStats {
            rtt_ms: Some(rtt),
            loss_pct: Some(loss),
            jitter_ms: Some(12),
            frame_height: (!audio_only).then_some(360),
            audio_only,
        },
    }
}

fn quality_windows(out: &[Output]) -> Vec<QualityWindow> {
    records(out)
        .into_iter()
        .filter_map(|r| match r {
            RecordEvent::LinkQuality { window, .. } => Some(window),
            _ => None,
        })
        .collect()
}

#[test]
fn stats_reach_the_moderators_only_with_a_grade() {
    let mut w = World::with_grace();
    let r = room_id(1);
    w.open_room(&r);
    let (d, _, _) = w.join(&r, Role::Doctor, "BS. An");
    let (n, _, _) = w.join(&r, Role::Nurse, "YT. Bình");
    let (p, p_info, _) = w.join(&r, Role::Patient, "Bệnh nhân C");
    let out = w.frame(p, stats(950, 12.5, true));
    let want = ServerMsg::LinkQuality {
        participant_id: p_info.id,
        stats: LinkStats {
            rtt_ms: Some(950),
            loss_pct: Some(12.5),
            jitter_ms: Some(12),
            frame_height: None,
            audio_only: true,
        },
        grade: LinkGrade::Poor,
    };
    assert_eq!(sends_to(&out, d), vec![want]);
    assert!(sends_to(&out, n).is_empty(), "a nurse is not a moderator");
    assert!(sends_to(&out, p).is_empty());
    // Too soon after the last one: ignored, without an error.
    w.advance(Duration::from_secs(1));
    assert!(w.frame(p, stats(100, 0.0, false)).is_empty());
    w.advance(Duration::from_secs(4));
    let out = w.frame(p, stats(100, 0.0, false));
    assert!(matches!(
        sends_to(&out, d).as_slice(),
        [ServerMsg::LinkQuality {
            grade: LinkGrade::Good,
            ..
        }]
    ));
}

#[test]
fn stats_out_of_bounds_are_refused_and_lobby_stats_are_not_joined() {
    let mut w = World::with_grace();
    let r = room_id(1);
    w.open_room(&r);
    let (d, _, _) = w.join(&r, Role::Doctor, "BS. An");
    let (p, _, _) = w.join(&r, Role::Nurse, "YT. Bình");
    let bad = [
        LinkStats {
            loss_pct: Some(100.5),
            ..LinkStats::default()
        },
        LinkStats {
            loss_pct: Some(-1.0),
            ..LinkStats::default()
        },
        LinkStats {
            rtt_ms: Some(60_001),
            ..LinkStats::default()
        },
        LinkStats {
            jitter_ms: Some(u32::MAX),
            ..LinkStats::default()
        },
        LinkStats {
            frame_height: Some(10_000),
            ..LinkStats::default()
        },
    ];
    for s in bad {
        let out = w.frame(p, ClientMsg::Stats { stats: s });
        assert_eq!(
            expect_error(&out, p, ErrorCode::InvalidMessage).as_deref(),
            Some("stats"),
            "{s:?}"
        );
        assert!(sends_to(&out, d).is_empty());
        assert!(records(&out).is_empty());
    }
    let (q, _) = arrive(&mut w, &r, Role::Patient, "Bệnh nhân C");
    let out = w.frame(q, stats(100, 0.0, false));
    assert_eq!(
        expect_error(&out, q, ErrorCode::NotJoined).as_deref(),
        Some("stats")
    );
    // Malformed on the wire: the parser's invalid_message, not a panic.
    for text in [
        r#"{"type":"stats","stats":{"audio_only":true,"rtt_ms":-5}}"#,
        r#"{"type":"stats","stats":{"audio_only":true,"loss_pct":"much"}}"#,
        r#"{"type":"stats","stats":{"rtt_ms":5}}"#,
        r#"{"type":"stats","stats":{"audio_only":false,"mos":4}}"#,
        r#"{"type":"stats"}"#,
    ] {
        let e = tuxa_protocol::parse_client_msg(text).expect_err(text);
        assert_eq!(e.code, ErrorCode::InvalidMessage, "{text}");
    }
}

#[test]
fn stats_are_kept_in_windows_of_ten_seconds() {
    let mut w = World::with_grace();
    let r = room_id(1);
    w.open_room(&r);
    let (_d, _, _) = w.join(&r, Role::Doctor, "BS. An");
    let (p, p_info, _) = w.join(&r, Role::Nurse, "YT. Bình");
    let t0 = w.unix;
    // Samples every 5 s: at 0 (covers nothing), 5 (audio-only), 10 (new window).
    assert!(quality_windows(&w.frame(p, stats(100, 1.0, false))).is_empty());
    w.advance(Duration::from_secs(5));
    assert!(quality_windows(&w.frame(p, stats(300, 4.0, true))).is_empty());
    w.advance(Duration::from_secs(5));
    let out = w.frame(p, stats(200, 0.5, false));
    let first = quality_windows(&out);
    assert_eq!(first.len(), 1, "{out:?}");
    let f = first[0];
    assert_eq!((f.from, f.to, f.samples), (t0, t0 + 5, 2));
    assert_eq!(f.rtt_ms_max, Some(300));
    assert_eq!(f.rtt_ms_avg, Some(200));
    assert_eq!(f.loss_pct_max, Some(4.0));
    assert_eq!(f.frame_height_min, Some(360));
    assert_eq!((f.covered_ms, f.audio_only_ms), (5000, 5000));
    // A silence of a minute: the window of the sample at 10 s closes, and
    // the next sample speaks for 15 s at most.
    w.advance(Duration::from_secs(60));
    let second = quality_windows(&w.frame(p, stats(200, 0.0, true)));
    assert_eq!(second.len(), 1);
    assert_eq!((second[0].from, second[0].samples), (t0 + 10, 1));
    assert_eq!((second[0].covered_ms, second[0].audio_only_ms), (5000, 0));
    // Leaving flushes the window in progress.
    let out = w.frame(p, ClientMsg::Leave {});
    let last = quality_windows(&out);
    assert_eq!(last.len(), 1);
    assert_eq!((last[0].from, last[0].samples), (t0 + 70, 1));
    assert_eq!(
        (last[0].covered_ms, last[0].audio_only_ms),
        (15_000, 15_000)
    );
    assert!(records(&out).iter().any(|e| matches!(
        e,
        RecordEvent::LinkQuality { participant, .. } if *participant == p_info.id
    )));
}

// ---------------------------------------------------------------------------
// Rosters that change while a doctor is signed in

#[test]
fn a_shift_that_ends_withdraws_availability_and_one_that_starts_allows_it() {
    use tuxa_signaling::StaffInfo;
    use tuxa_signaling::queue::StaffRef;
    let mut w = World::new();
    for q in [1, 2] {
        w.handle(Input::QueueOpened {
            queue: QueueId(q),
            name: format!("Hàng {q}"),
            facility: FacilityId(1),
        });
    }
    let sid = w.connect();
    w.hello(sid);
    w.handle(Input::Identified(
        sid,
        StaffInfo {
            staff: StaffRef {
                id: StaffId(42),
                name: "BS. Trực".into(),
                facility: FacilityId(1),
            },
            is_doctor: true,
            on_call: vec![QueueId(1)],
        },
    ));
    assert_eq!(w.hub.staff_online(), vec![StaffId(42)]);
    let status = |out: &[Output]| {
        sends_to(out, sid).into_iter().rev().find_map(|m| match m {
            ServerMsg::DoctorStatus {
                available, queues, ..
            } => Some((available, queues)),
            _ => None,
        })
    };
    // Queue 2's shift has not started: refused.
    let out = w.frame(sid, ClientMsg::Available { queues: vec![1, 2] });
    expect_error(&out, sid, ErrorCode::NotOnCall);
    // It starts: now allowed, without reconnecting.
    w.handle(Input::OnCallChanged {
        staff: StaffId(42),
        on_call: vec![QueueId(1), QueueId(2)],
    });
    let out = w.frame(sid, ClientMsg::Available { queues: vec![1, 2] });
    assert_eq!(status(&out), Some((true, vec![1, 2])));
    // Queue 1's shift ends: the doctor stays available for queue 2 only.
    let out = w.handle(Input::OnCallChanged {
        staff: StaffId(42),
        on_call: vec![QueueId(2)],
    });
    assert_eq!(status(&out), Some((true, vec![2])));
    // Every shift ends: not available any more.
    let out = w.handle(Input::OnCallChanged {
        staff: StaffId(42),
        on_call: vec![],
    });
    assert_eq!(status(&out).map(|s| s.0), Some(false));
    // Another staff member's change touches nobody here.
    let out = w.handle(Input::OnCallChanged {
        staff: StaffId(7),
        on_call: vec![QueueId(1)],
    });
    assert!(out.is_empty(), "{out:?}");
}

// ---------------------------------------------------------------------------
// Issue 12: staff on call see each queue's counts before going available

#[test]
fn staff_on_call_see_their_queues_counts_and_nobody_else_does() {
    use tuxa_signaling::StaffInfo;
    use tuxa_signaling::queue::StaffRef;
    let mut w = World::new();
    for q in [1, 2] {
        w.handle(Input::QueueOpened {
            queue: QueueId(q),
            name: format!("Hàng {q}"),
            facility: FacilityId(1),
        });
    }
    let identified = |w: &mut World, id: i64, on_call: Vec<QueueId>| {
        let sid = w.connect();
        w.handle(Input::Identified(
            sid,
            StaffInfo {
                staff: StaffRef {
                    id: StaffId(id),
                    name: format!("NV {id}"),
                    facility: FacilityId(1),
                },
                is_doctor: false,
                on_call,
            },
        ));
        sid
    };
    let counts = |out: &[Output], sid: SessionId| -> Vec<(u64, u32, u32, u32)> {
        sends_to(out, sid)
            .into_iter()
            .filter_map(|m| match m {
                ServerMsg::QueueCounts {
                    queue,
                    waiting,
                    offered,
                    doctors_available,
                } => Some((queue, waiting, offered, doctors_available)),
                _ => None,
            })
            .collect()
    };
    let nurse = identified(&mut w, 42, vec![QueueId(1)]);
    let off = identified(&mut w, 43, vec![]);
    // After welcome: the counts of the queues on call now, and only those.
    let out = w.frame(nurse, hello(&[1]));
    assert!(matches!(
        sends_to(&out, nurse).first(),
        Some(ServerMsg::Welcome { .. })
    ));
    assert_eq!(counts(&out, nurse), [(1, 0, 0, 0)]);
    let out = w.frame(off, hello(&[1]));
    assert!(counts(&out, off).is_empty(), "{out:?}");

    // A patient joins queue 1: the nurse on call hears the new count, the
    // staff member off call and the patient do not.
    let patient = w.connect();
    w.hello(patient);
    w.consent(patient, true);
    let out = w.frame(
        patient,
        ClientMsg::QueueJoin {
            queue: 1,
            name: "Bệnh nhân A".into(),
            phone: "0912345678".into(),
            reason: "ho".into(),
        },
    );
    assert_eq!(counts(&out, nurse), [(1, 1, 0, 0)]);
    assert!(counts(&out, off).is_empty());
    assert!(counts(&out, patient).is_empty());
    // Nothing but counts reaches staff not in the call: no name, no phone.
    assert!(
        sends_to(&out, nurse)
            .iter()
            .all(|m| matches!(m, ServerMsg::QueueCounts { .. }))
    );

    // A shift starts for queue 2: its counts come at once.
    let out = w.handle(Input::OnCallChanged {
        staff: StaffId(43),
        on_call: vec![QueueId(2)],
    });
    assert_eq!(counts(&out, off), [(2, 0, 0, 0)]);
}

/// The wire carries queue and staff ids as `u64`, the hub as row ids
/// (`i64`): a number no row can have is refused exactly like an unknown id,
/// and nothing panics or wraps around onto a real queue.
#[test]
fn wire_ids_no_row_can_have_are_refused_like_unknown_ones() {
    use tuxa_signaling::StaffInfo;
    use tuxa_signaling::queue::StaffRef;
    let mut w = World::new();
    w.handle(Input::QueueOpened {
        queue: QueueId(1),
        name: "Hàng 1".into(),
        facility: FacilityId(1),
    });
    let error = |out: &[Output], sid: SessionId| match sends_to(out, sid).as_slice() {
        [e @ ServerMsg::Error { .. }] => e.clone(),
        other => panic!("expected one error, got {other:?}"),
    };
    // Cast with `as`, these would be -1, i64::MIN and i64::MIN + 1.
    let beyond = [u64::MAX, 1 << 63, (1 << 63) | 1];

    // A patient joining a queue.
    let join = |w: &mut World, queue: u64| {
        let p = w.connect();
        w.hello(p);
        w.consent(p, true);
        let out = w.frame(
            p,
            ClientMsg::QueueJoin {
                queue,
                name: "Bệnh nhân A".into(),
                phone: "0912345678".into(),
                reason: "ho".into(),
            },
        );
        error(&out, p)
    };
    let unknown = join(&mut w, 99);
    assert!(
        matches!(&unknown, ServerMsg::Error { code: ErrorCode::QueueRefused, message, .. } if message.starts_with("unknown_queue")),
        "{unknown:?}"
    );
    for q in beyond {
        assert_eq!(join(&mut w, q), unknown, "queue {q}");
    }
    assert_eq!(
        w.hub.queue_book().snapshot(QueueId(1)).map(|s| s.waiting),
        Some(0),
        "nobody got a place"
    );

    // A doctor going available, and transferring to a doctor.
    let doctor = w.connect();
    w.hello(doctor);
    w.handle(Input::Identified(
        doctor,
        StaffInfo {
            staff: StaffRef {
                id: StaffId(42),
                name: "BS. Trực".into(),
                facility: FacilityId(1),
            },
            is_doctor: true,
            on_call: vec![QueueId(1)],
        },
    ));
    let available = |w: &mut World, q: u64| {
        let out = w.frame(doctor, ClientMsg::Available { queues: vec![1, q] });
        error(&out, doctor)
    };
    let transfer = |w: &mut World, d: u64| {
        let out = w.frame(
            doctor,
            ClientMsg::Transfer {
                ticket: "t".into(),
                queue: None,
                doctor: Some(d),
            },
        );
        error(&out, doctor)
    };
    let (not_on_roster, no_doctor) = (available(&mut w, 99), transfer(&mut w, 99));
    for id in beyond {
        let not_on_roster = match &not_on_roster {
            ServerMsg::Error {
                code, in_reply_to, ..
            } => ServerMsg::Error {
                code: *code,
                // The message names the queue asked for.
                message: format!("you are not on the roster of queue {id} now"),
                in_reply_to: in_reply_to.clone(),
            },
            _ => unreachable!(),
        };
        assert_eq!(available(&mut w, id), not_on_roster, "queue {id}");
        assert_eq!(transfer(&mut w, id), no_doctor, "doctor {id}");
    }
}
