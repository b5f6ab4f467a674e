//! `Hub::poll_timeout`: the hub says when it next needs `handle_timeout`, so
//! the server's hub task sleeps until then instead of ticking every second.
//! Each test drives the hub the way that task does — an input, then sleep
//! until `poll_timeout` — and checks that every timer still fires on time
//! (idle timeout, reconnect grace, abandonment, check rooms) with a handful
//! of wake-ups, never one a second. In simulated time.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tuxa_protocol::{
    ClientMsg, ConsultationKind, EndReason, ErrorCode, LeaveReason, ParticipantId, Role, RoomId,
    RoomInfo, ServerMsg,
};
use tuxa_records::StaffId;
use tuxa_signaling::{
    Claims, Hub, HubConfig, Input, Output, RecordEvent, RoomStatus, SessionId, TokenKey,
};

const UNIX_NOW: u64 = 1_750_000_000;
const IDLE: Duration = Duration::from_secs(45);
const GRACE: Duration = Duration::from_secs(20);
const ABANDON: Duration = Duration::from_secs(600);

struct World {
    hub: Hub,
    key: Arc<TokenKey>,
    now: Instant,
    nonce: u64,
    next_sid: u64,
    room: RoomId,
    out: Vec<Output>,
    /// `handle_timeout` calls made so far.
    wakeups: usize,
}

impl World {
    fn new(idle: Duration) -> World {
        let key = Arc::new(TokenKey::new(&[0x42; 32]));
        let config = HubConfig {
            server_name: "tuxa-test".into(),
            max_participants: 16,
            idle_timeout: idle,
            reconnect_grace: GRACE,
            abandon_after: ABANDON,
            recording_available: false,
        };
        let room = RoomId::from_random([9; 10]);
        let mut w = World {
            hub: Hub::new(config, key.clone()),
            key,
            now: Instant::now(),
            nonce: 0,
            next_sid: 1,
            room: room.clone(),
            out: Vec::new(),
            wakeups: 0,
        };
        let info = RoomInfo {
            id: room,
            kind: ConsultationKind::Visit,
            title: "Khám".into(),
        };
        w.handle(Input::RoomOpened(info, RoomStatus::Open));
        w
    }

    fn handle(&mut self, input: Input) -> Vec<Output> {
        self.now += Duration::from_millis(10);
        self.hub.handle(self.now, UNIX_NOW, input);
        self.drain()
    }

    fn drain(&mut self) -> Vec<Output> {
        let new: Vec<Output> = std::iter::from_fn(|| self.hub.poll_output()).collect();
        self.out.extend(new.iter().cloned());
        new
    }

    /// Lets time pass until `end` as the server's hub task does: asleep
    /// until the hub's own deadline, `handle_timeout` then, and again.
    fn run_until(&mut self, end: Instant) {
        while let Some(at) = self.hub.poll_timeout(self.now) {
            if at > end {
                break;
            }
            self.now = self.now.max(at);
            self.hub.handle_timeout(self.now);
            self.drain();
            self.wakeups += 1;
            assert!(self.wakeups < 1000, "the hub asks to be woken in a loop");
        }
        self.now = self.now.max(end);
    }

    fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    fn connect(&mut self) -> SessionId {
        let sid = SessionId(self.next_sid);
        self.next_sid += 1;
        self.handle(Input::Connected(sid, Ipv4Addr::LOCALHOST.into()));
        self.handle(Input::Frame(
            sid,
            Ok(ClientMsg::Hello {
                versions: vec![1],
                client: None,
            }),
        ));
        sid
    }

    fn join(&mut self, role: Role, name: &str) -> (SessionId, ParticipantId) {
        let sid = self.connect();
        if role == Role::Patient {
            self.handle(Input::Frame(
                sid,
                Ok(ClientMsg::Consent {
                    text_version: "vi-test-1".into(),
                    remote_examination: true,
                    third_parties: true,
                    recording: false,
                }),
            ));
        }
        let claims = Claims {
            room: self.room.clone(),
            role,
            name: name.into(),
            facility: None,
            expires_at: UNIX_NOW + 3600,
            not_before: None,
            pre_admitted: role == Role::Patient,
            staff_id: (role == Role::Doctor).then_some(StaffId(100 + sid.0 as i64)),
            licence_number: None,
            chair: false,
        };
        self.nonce += 1;
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&self.nonce.to_be_bytes());
        let token = self.key.mint(&claims, nonce);
        let out = self.handle(Input::Frame(
            sid,
            Ok(ClientMsg::Join {
                room: self.room.clone(),
                token,
            }),
        ));
        let id = out
            .iter()
            .find_map(|o| match o {
                Output::Send(s, ServerMsg::Joined { you, .. }) if *s == sid => Some(you.id),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{name} did not join: {out:?}"));
        (sid, id)
    }

    fn closed(&self, sid: SessionId) -> bool {
        self.out
            .iter()
            .any(|o| matches!(o, Output::Close(s) if *s == sid))
    }

    fn ended(&self) -> Vec<EndReason> {
        self.out
            .iter()
            .filter_map(|o| match o {
                Output::Record(RecordEvent::Ended { reason, .. }) => Some(*reason),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn a_hub_with_nothing_timed_sleeps_until_an_input() {
    let w = World::new(IDLE);
    assert_eq!(w.hub.poll_timeout(w.now), None);
}

#[test]
fn a_silent_session_is_closed_at_its_idle_timeout_without_ticks() {
    let mut w = World::new(IDLE);
    let sid = w.connect();
    let heard = w.now;
    assert_eq!(w.hub.poll_timeout(w.now), Some(heard + IDLE));

    w.run_for(IDLE - Duration::from_secs(1));
    assert!(!w.closed(sid), "closed before its time");
    assert_eq!(w.wakeups, 0, "woken with nothing due");

    // A ping moves the deadline.
    w.handle(Input::Frame(sid, Ok(ClientMsg::Ping { seq: 1 })));
    let heard = w.now;
    assert_eq!(w.hub.poll_timeout(w.now), Some(heard + IDLE));
    w.run_for(IDLE - Duration::from_secs(1));
    assert!(!w.closed(sid));

    w.run_for(Duration::from_secs(2));
    assert!(w.closed(sid), "not closed after {IDLE:?} of silence");
    assert!(w.out.iter().any(|o| matches!(
        o,
        Output::Send(s, ServerMsg::Error { code: ErrorCode::IdleTimeout, .. }) if *s == sid
    )));
    assert_eq!(w.wakeups, 1, "one wake-up, at the deadline");
    // `handle_timeout` and `poll_timeout` agree once nothing is pending.
    assert_eq!(w.hub.handle_timeout(w.now), w.hub.poll_timeout(w.now));
}

#[test]
fn a_dropped_participant_leaves_when_the_grace_is_over() {
    let mut w = World::new(Duration::from_secs(3600));
    let (doctor, doctor_pid) = w.join(Role::Doctor, "BS. Lan");
    w.handle(Input::Disconnected(doctor));
    let away = w.now;
    assert!(w.hub.poll_timeout(w.now).is_some_and(|t| t <= away + GRACE));

    w.run_until(away + GRACE - Duration::from_millis(1));
    let left = |w: &World| {
        w.out.iter().any(|o| {
            matches!(
                o,
                Output::Record(RecordEvent::Left {
                    participant,
                    reason: LeaveReason::Disconnected,
                    ..
                }) if *participant == doctor_pid
            )
        })
    };
    assert!(!left(&w), "left within the grace");
    w.run_until(away + GRACE);
    assert!(left(&w), "still kept after the grace");
    assert!(w.wakeups <= 3, "{} wake-ups", w.wakeups);
}

#[test]
fn a_room_without_its_doctor_ends_as_abandoned_on_time() {
    let mut w = World::new(Duration::from_secs(3600));
    let (doctor, _) = w.join(Role::Doctor, "BS. Lan");
    let (patient, _) = w.join(Role::Patient, "Bà Tư");
    w.handle(Input::Frame(doctor, Ok(ClientMsg::Leave {})));
    // The room's clock starts at the next `handle_timeout`: due at once.
    assert!(w.hub.poll_timeout(w.now).is_some_and(|t| t <= w.now));
    let left = w.now;

    w.run_until(left + ABANDON - Duration::from_secs(1));
    assert!(w.ended().is_empty(), "ended before its time");
    w.run_until(left + ABANDON);
    assert_eq!(w.ended(), vec![EndReason::Abandoned]);
    assert!(w.closed(patient));
    assert!(w.wakeups <= 3, "{} wake-ups for one timer", w.wakeups);
}

#[test]
fn a_doctor_coming_back_stops_the_abandonment_clock() {
    let mut w = World::new(Duration::from_secs(3600));
    let (doctor, _) = w.join(Role::Doctor, "BS. Lan");
    w.join(Role::Patient, "Bà Tư");
    w.handle(Input::Frame(doctor, Ok(ClientMsg::Leave {})));
    let left = w.now;
    w.run_for(ABANDON / 2);
    w.join(Role::Doctor, "BS. Lan");
    w.run_until(left + ABANDON + Duration::from_secs(60));
    assert!(w.ended().is_empty(), "ended with a doctor in the room");
    // Nothing but the sessions' idle timeouts is timed now.
    let idle_end = w.hub.poll_timeout(w.now).expect("idle timeouts");
    assert!(idle_end > left + ABANDON + Duration::from_secs(60));
}

#[test]
fn an_unused_check_room_closes_after_its_join_window() {
    let mut w = World::new(IDLE);
    let opened = w.now;
    w.hub
        .open_check_room(w.now, UNIX_NOW, [3; 10], [4; 12])
        .expect("a check room");
    assert_eq!(w.hub.check_room_count(), 1);
    assert_eq!(
        w.hub.poll_timeout(w.now),
        Some(opened + tuxa_signaling::CHECK_JOIN_WINDOW)
    );
    w.run_for(tuxa_signaling::CHECK_JOIN_WINDOW);
    assert_eq!(w.hub.check_room_count(), 0);
    assert_eq!(w.hub.poll_timeout(w.now), None);
}
