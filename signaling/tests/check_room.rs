//! Pre-call check rooms (`signaling/src/hub/check.rs`), through the hub's
//! public API in simulated time: a room of one that enters without the
//! lobby, writes nothing to the record, lives at most 30 s (10 s unused),
//! closes when its participant goes, and is refused past the server-wide cap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tuxa_protocol::{
    ClientMsg, ConsultationKind, ErrorCode, LinkStats, Role, RoomId, RoomInfo, ServerMsg,
};
use tuxa_signaling::{
    CHECK_JOIN_WINDOW, CHECK_ROOM_LIFETIME, CheckError, CheckTicket, Claims, Hub, HubConfig, Input,
    MAX_CHECK_ROOMS, MediaCommand, Output, RoomStatus, SessionId, TokenKey,
};

const UNIX_NOW: u64 = 1_750_000_000;

struct World {
    hub: Hub,
    key: Arc<TokenKey>,
    t0: Instant,
    now: Instant,
    unix: u64,
    next_sid: u64,
    rand: u8,
    /// Every output so far: the record must stay empty of check rooms.
    all: Vec<Output>,
}

impl World {
    fn new() -> World {
        let key = Arc::new(TokenKey::new(&[0x42; 32]));
        let t0 = Instant::now();
        World {
            hub: Hub::new(
                HubConfig {
                    server_name: "tuxa-test".into(),
                    max_participants: 16,
                    idle_timeout: Duration::from_secs(45),
                    reconnect_grace: Duration::from_secs(30),
                    abandon_after: tuxa_signaling::DEFAULT_ABANDON_AFTER,
                    recording_available: false,
                },
                key.clone(),
            ),
            key,
            t0,
            now: t0,
            unix: UNIX_NOW,
            next_sid: 1,
            rand: 0,
            all: Vec::new(),
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.unix = UNIX_NOW + (self.now - self.t0).as_secs();
    }

    fn drain(&mut self) -> Vec<Output> {
        let mut v = Vec::new();
        while let Some(o) = self.hub.poll_output() {
            v.push(o);
        }
        self.all.extend(v.iter().cloned());
        v
    }

    fn handle(&mut self, input: Input) -> Vec<Output> {
        self.hub.handle(self.now, self.unix, input);
        self.drain()
    }

    /// One tick of the server's 1 s timer.
    fn tick(&mut self) -> Vec<Output> {
        self.hub.handle_timeout(self.now);
        self.drain()
    }

    fn open_check(&mut self) -> Result<CheckTicket, CheckError> {
        self.rand = self.rand.wrapping_add(1);
        let r = self
            .hub
            .open_check_room(self.now, self.unix, [self.rand; 10], [self.rand; 12]);
        self.drain();
        r
    }

    fn connect(&mut self) -> SessionId {
        let sid = SessionId(self.next_sid);
        self.next_sid += 1;
        self.handle(Input::Connected(sid, std::net::Ipv4Addr::LOCALHOST.into()));
        let out = self.frame(
            sid,
            ClientMsg::Hello {
                versions: vec![1],
                client: None,
            },
        );
        assert!(
            matches!(sends_to(&out, sid).as_slice(), [ServerMsg::Welcome { .. }]),
            "{out:?}"
        );
        sid
    }

    fn frame(&mut self, sid: SessionId, msg: ClientMsg) -> Vec<Output> {
        self.handle(Input::Frame(sid, Ok(msg)))
    }

    fn join(&mut self, sid: SessionId, room: &RoomId, token: &str) -> Vec<Output> {
        self.frame(
            sid,
            ClientMsg::Join {
                room: room.clone(),
                token: token.to_owned(),
            },
        )
    }

    /// Joins the check room on a fresh session: `joined` at once (no lobby,
    /// no consent), as the one participant.
    fn enter(&mut self, ticket: &CheckTicket) -> SessionId {
        let sid = self.connect();
        let out = self.join(sid, &ticket.room, &ticket.token);
        let joined = sends_to(&out, sid).into_iter().find_map(|m| match m {
            ServerMsg::Joined {
                you, participants, ..
            } => Some((you, participants)),
            _ => None,
        });
        let (you, others) = joined.unwrap_or_else(|| panic!("not joined: {out:?}"));
        assert_eq!(you.role, Role::Guest);
        assert!(others.is_empty());
        sid
    }

    fn records(&self) -> Vec<&Output> {
        self.all
            .iter()
            .filter(|o| matches!(o, Output::Record(_)))
            .collect()
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

fn closed(out: &[Output], sid: SessionId) -> bool {
    out.iter()
        .any(|o| matches!(o, Output::Close(s) if *s == sid))
}

fn error_code(out: &[Output], sid: SessionId) -> Option<ErrorCode> {
    sends_to(out, sid).into_iter().find_map(|m| match m {
        ServerMsg::Error { code, .. } => Some(code),
        _ => None,
    })
}

#[test]
fn a_check_call_reaches_the_sfu_and_writes_nothing_to_the_record() {
    let mut w = World::new();
    let ticket = w.open_check().expect("a check room");
    assert_eq!(ticket.expires_in, CHECK_ROOM_LIFETIME);
    assert_eq!(w.hub.check_room_count(), 1);
    let sid = w.enter(&ticket);
    // The offer goes to the SFU like any participant's.
    let out = w.frame(
        sid,
        ClientMsg::Offer {
            sdp: "v=0 (an offer)".into(),
        },
    );
    assert!(
        out.iter().any(
            |o| matches!(o, Output::Media(MediaCommand::Offer { room, .. }) if *room == ticket.room)
        ),
        "{out:?}"
    );
    // Telemetry, a mute, then leave: each of these is recorded in a real room.
    w.advance(Duration::from_secs(5));
    w.frame(
        sid,
        ClientMsg::Stats {
            stats: LinkStats {
                rtt_ms: Some(20),
                loss_pct: None,
                jitter_ms: None,
                frame_height: Some(360),
                audio_only: false,
            },
        },
    );
    w.advance(Duration::from_secs(5));
    w.frame(
        sid,
        ClientMsg::Stats {
            stats: LinkStats {
                rtt_ms: Some(25),
                loss_pct: None,
                jitter_ms: None,
                frame_height: Some(360),
                audio_only: false,
            },
        },
    );
    let out = w.frame(sid, ClientMsg::Leave {});
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Media(MediaCommand::Remove { .. }))),
        "the SFU drops the peer: {out:?}"
    );
    // Gone with its participant, at the next tick.
    w.tick();
    assert_eq!(w.hub.check_room_count(), 0);
    assert!(w.records().is_empty(), "records: {:?}", w.records());

    // The same steps in a real room do write records (the test can fail).
    let room = RoomId::from_random([0xaa; 10]);
    w.handle(Input::RoomOpened(
        RoomInfo {
            id: room.clone(),
            kind: ConsultationKind::Visit,
            title: "Khám".into(),
        },
        RoomStatus::Open,
    ));
    let token = w.key.mint(
        &Claims {
            room: room.clone(),
            role: Role::Nurse,
            name: "YT. Lan".into(),
            facility: None,
            expires_at: w.unix + 600,
            not_before: None,
            pre_admitted: false,
            staff_id: None,
            licence_number: None,
            chair: false,
        },
        [9; 12],
    );
    let sid = w.connect();
    w.join(sid, &room, &token);
    w.frame(sid, ClientMsg::Leave {});
    assert_eq!(w.records().len(), 2, "joined and left: {:?}", w.records());
}

#[test]
fn a_check_room_lives_thirty_seconds_at_most() {
    let mut w = World::new();
    let ticket = w.open_check().unwrap();
    let sid = w.enter(&ticket);
    // Keep the session alive with pings; the room is not ended before its time.
    for _ in 0..29 {
        w.advance(Duration::from_secs(1));
        w.frame(sid, ClientMsg::Ping { seq: 1 });
        let out = w.tick();
        assert!(!closed(&out, sid), "closed early: {out:?}");
    }
    assert_eq!(w.hub.check_room_count(), 1);
    w.advance(Duration::from_secs(1));
    let out = w.tick();
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Send(s, ServerMsg::RoomEnded { .. }) if *s == sid
        )),
        "{out:?}"
    );
    assert!(closed(&out, sid));
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Media(MediaCommand::Remove { .. }))),
        "{out:?}"
    );
    assert_eq!(w.hub.check_room_count(), 0);
    assert!(w.records().is_empty(), "records: {:?}", w.records());
    // Its link is dead with it. (A link replayed after its room is gone is
    // a refused link like any other: the hub no longer knows the room.)
    let sid = w.connect();
    let out = w.join(sid, &ticket.room, &ticket.token);
    assert_eq!(
        error_code(&out, sid),
        Some(ErrorCode::TokenExpired),
        "{out:?}"
    );
}

#[test]
fn an_unused_check_room_closes_after_the_join_window() {
    let mut w = World::new();
    w.open_check().unwrap();
    w.advance(CHECK_JOIN_WINDOW - Duration::from_secs(1));
    w.tick();
    assert_eq!(w.hub.check_room_count(), 1);
    w.advance(Duration::from_secs(1));
    w.tick();
    assert_eq!(w.hub.check_room_count(), 0);
}

#[test]
fn a_dropped_connection_ends_the_check_at_once() {
    let mut w = World::new();
    let ticket = w.open_check().unwrap();
    let sid = w.enter(&ticket);
    w.advance(Duration::from_secs(12));
    w.frame(sid, ClientMsg::Ping { seq: 1 });
    w.tick();
    assert_eq!(w.hub.check_room_count(), 1);
    // The WebSocket breaks: a real room keeps the place for the grace
    // window; a check room has nothing to keep.
    w.handle(Input::Disconnected(sid));
    w.advance(Duration::from_secs(1));
    let out = w.tick();
    assert_eq!(w.hub.check_room_count(), 0, "{out:?}");
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Media(MediaCommand::Remove { .. }))),
        "{out:?}"
    );
    assert!(w.records().is_empty(), "records: {:?}", w.records());
}

#[test]
fn check_rooms_are_capped_server_wide() {
    let mut w = World::new();
    for _ in 0..MAX_CHECK_ROOMS {
        w.open_check().expect("under the cap");
    }
    assert_eq!(w.open_check(), Err(CheckError::Busy));
    assert_eq!(w.hub.check_room_count(), MAX_CHECK_ROOMS);
    // None of them is a consultation for the coordinator's live view.
    assert!(w.hub.live(w.now).rooms.is_empty());
    // Freed as they close.
    w.advance(CHECK_JOIN_WINDOW);
    w.tick();
    assert_eq!(w.hub.check_room_count(), 0);
    w.open_check().expect("room again");
}

#[test]
fn bad_input_in_a_check_room_gets_a_clear_error() {
    let mut w = World::new();
    let a = w.open_check().unwrap();
    let b = w.open_check().unwrap();
    // A check link for another room.
    let sid = w.connect();
    let out = w.join(sid, &b.room, &a.token);
    assert_eq!(error_code(&out, sid), Some(ErrorCode::TokenWrongRoom));
    // A tampered link.
    let mut bad = a.token.clone();
    bad.push('A');
    let out = w.join(sid, &a.room, &bad);
    assert!(
        matches!(
            error_code(&out, sid),
            Some(ErrorCode::TokenInvalid | ErrorCode::TokenMalformed)
        ),
        "{out:?}"
    );
    // The one participant may not moderate (it is a guest).
    let sid = w.enter(&a);
    let out = w.frame(sid, ClientMsg::LockRoom { locked: true });
    assert_eq!(error_code(&out, sid), Some(ErrorCode::Forbidden), "{out:?}");
    // Nothing above reached the record (refused links included).
    assert!(w.records().is_empty(), "records: {:?}", w.records());
    // An expired link (the room lives no longer than its link).
    w.advance(CHECK_ROOM_LIFETIME + Duration::from_secs(1));
    let sid = w.connect();
    let out = w.join(sid, &b.room, &b.token);
    assert_eq!(
        error_code(&out, sid),
        Some(ErrorCode::TokenExpired),
        "{out:?}"
    );
}
