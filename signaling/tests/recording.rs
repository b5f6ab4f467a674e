//! Recording control (issue 13), through the hub's public API in simulated
//! time: who may start and stop, the patients' consent (start, withdrawal,
//! pause while an unconsented patient is in the room), the room ending, a
//! recorder fault, what the room, the lobby and a newcomer are told, what
//! the SFU is told (`MediaCommand::Recording`) and what reaches the record.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tuxa_protocol::{
    ClientMsg, ConsultationKind, ErrorCode, ParticipantId, RecordingAction, RecordingReason,
    RecordingState, Role, RoomId, RoomInfo, ServerMsg,
};
use tuxa_records::StaffId;
use tuxa_signaling::{
    Claims, Hub, HubConfig, Input, MediaCommand, Output, RecordEvent, RecordingChange,
    RecordingStatus, RoomStatus, SessionId, TokenKey,
};

const UNIX_NOW: u64 = 1_750_000_000;
const CHAIR_STAFF: StaffId = StaffId(3);

struct World {
    hub: Hub,
    key: Arc<TokenKey>,
    t0: Instant,
    now: Instant,
    nonce: u64,
    next_sid: u64,
    room: RoomId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// The named chair's own link (conferences).
    Chair,
    Doctor,
    Nurse,
    /// A patient who consented to recording, or not.
    Patient {
        recording: bool,
    },
    Guest,
}

/// Someone in the room (or its lobby).
#[derive(Debug, Clone, Copy)]
struct In {
    sid: SessionId,
    id: ParticipantId,
}

impl World {
    fn new(kind: ConsultationKind) -> World {
        World::with(kind, true)
    }

    fn with(kind: ConsultationKind, available: bool) -> World {
        let key = Arc::new(TokenKey::new(&[0x42; 32]));
        let config = HubConfig {
            server_name: "tuxa-test".into(),
            max_participants: 16,
            idle_timeout: Duration::from_secs(45),
            reconnect_grace: Duration::from_secs(30),
            abandon_after: tuxa_signaling::DEFAULT_ABANDON_AFTER,
            recording_available: available,
        };
        let room = RoomId::from_random([9; 10]);
        let t0 = Instant::now();
        let mut w = World {
            hub: Hub::new(config, key.clone()),
            key,
            t0,
            now: t0,
            nonce: 0,
            next_sid: 1,
            room: room.clone(),
        };
        let info = RoomInfo {
            id: room.clone(),
            kind,
            title: "Ghi hình".into(),
        };
        w.handle(Input::RoomOpened(info, RoomStatus::Open));
        if kind == ConsultationKind::Conference {
            w.handle(Input::ChairNamed {
                room,
                staff: CHAIR_STAFF,
            });
        }
        w
    }

    fn unix(&self) -> u64 {
        UNIX_NOW + (self.now - self.t0).as_secs()
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    fn handle(&mut self, input: Input) -> Vec<Output> {
        let unix = self.unix();
        self.hub.handle(self.now, unix, input);
        std::iter::from_fn(|| self.hub.poll_output()).collect()
    }

    fn frame(&mut self, sid: SessionId, msg: ClientMsg) -> Vec<Output> {
        self.handle(Input::Frame(sid, Ok(msg)))
    }

    fn rec(&mut self, who: In, action: RecordingAction) -> Vec<Output> {
        self.frame(who.sid, ClientMsg::Recording { action })
    }

    fn consent(&mut self, who: In, recording: bool) -> Vec<Output> {
        self.frame(who.sid, consent(recording))
    }

    /// Connects and joins as `who`: into the room for staff, into the lobby
    /// for patients and guests (see [`World::admit`]).
    fn arrive(&mut self, who: Who, name: &str) -> (In, Vec<Output>) {
        let sid = SessionId(self.next_sid);
        self.next_sid += 1;
        self.handle(Input::Connected(sid, Ipv4Addr::LOCALHOST.into()));
        self.frame(
            sid,
            ClientMsg::Hello {
                versions: vec![1],
                client: None,
            },
        );
        let (role, chair, staff_id) = match who {
            Who::Chair => (Role::Doctor, true, Some(CHAIR_STAFF)),
            Who::Doctor => (Role::Doctor, false, Some(StaffId(40 + sid.0 as i64))),
            Who::Nurse => (Role::Nurse, false, Some(StaffId(60 + sid.0 as i64))),
            Who::Patient { recording } => {
                self.frame(sid, consent(recording));
                (Role::Patient, false, None)
            }
            Who::Guest => (Role::Guest, false, None),
        };
        let claims = Claims {
            room: self.room.clone(),
            role,
            name: name.into(),
            facility: None,
            expires_at: UNIX_NOW + 3600,
            not_before: None,
            pre_admitted: false,
            staff_id,
            licence_number: None,
            chair,
        };
        self.nonce += 1;
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&self.nonce.to_be_bytes());
        let token = self.key.mint(&claims, nonce);
        let out = self.frame(
            sid,
            ClientMsg::Join {
                room: self.room.clone(),
                token,
            },
        );
        let id = sent(&out, sid)
            .into_iter()
            .find_map(|m| match m {
                ServerMsg::Joined { you, .. } | ServerMsg::Waiting { you, .. } => Some(you.id),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{who:?} did not join: {out:?}"));
        (In { sid, id }, out)
    }

    /// Joins as staff (straight into the room).
    fn staff(&mut self, who: Who, name: &str) -> In {
        self.arrive(who, name).0
    }

    /// A patient or guest who waits, admitted by `host`: the admission's outputs.
    fn admitted(&mut self, who: Who, name: &str, host: In) -> (In, Vec<Output>) {
        let (p, _) = self.arrive(who, name);
        let out = self.frame(
            host.sid,
            ClientMsg::Admit {
                participant_id: p.id,
            },
        );
        assert!(
            sent(&out, p.sid)
                .iter()
                .any(|m| matches!(m, ServerMsg::Joined { .. })),
            "{name} was not admitted: {out:?}"
        );
        (p, out)
    }

    fn status(&self) -> RecordingStatus {
        self.hub.recording_status(&self.room).expect("the room")
    }
}

fn consent(recording: bool) -> ClientMsg {
    ClientMsg::Consent {
        text_version: "vi-test-1".into(),
        remote_examination: true,
        third_parties: false,
        recording,
    }
}

fn sent(out: &[Output], sid: SessionId) -> Vec<ServerMsg> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(s, m) if *s == sid => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// The `recording` messages `sid` got, as (state, reason, by).
fn told(
    out: &[Output],
    sid: SessionId,
) -> Vec<(RecordingState, Option<RecordingReason>, Option<String>)> {
    sent(out, sid)
        .into_iter()
        .filter_map(|m| match m {
            ServerMsg::Recording {
                state, reason, by, ..
            } => Some((state, reason, by)),
            _ => None,
        })
        .collect()
}

fn error(out: &[Output], sid: SessionId) -> Option<(ErrorCode, Option<String>)> {
    sent(out, sid).into_iter().find_map(|m| match m {
        ServerMsg::Error {
            code, in_reply_to, ..
        } => Some((code, in_reply_to)),
        _ => None,
    })
}

/// What the SFU was told about recording, in order.
fn media(out: &[Output]) -> Vec<bool> {
    out.iter()
        .filter_map(|o| match o {
            Output::Media(MediaCommand::Recording { on, .. }) => Some(*on),
            _ => None,
        })
        .collect()
}

fn changes(out: &[Output]) -> Vec<RecordingChange> {
    out.iter()
        .filter_map(|o| match o {
            Output::Record(RecordEvent::Recording { change, .. }) => Some(change.clone()),
            _ => None,
        })
        .collect()
}

/// Asserts a refusal: the sender gets `code` (in reply to `recording`),
/// nobody else hears of it, the SFU is told nothing, the state stays and
/// the refusal is recorded.
fn assert_refused(w: &World, out: &[Output], who: In, code: ErrorCode, before: &RecordingStatus) {
    assert_eq!(
        error(out, who.sid),
        Some((code, Some("recording".into()))),
        "{out:?}"
    );
    assert!(media(out).is_empty(), "{out:?}");
    assert_eq!(&w.status(), before);
    assert!(
        out.iter()
            .all(|o| !matches!(o, Output::Send(_, ServerMsg::Recording { .. }))),
        "{out:?}"
    );
    match changes(out).as_slice() {
        [RecordingChange::Refused { by, code: c, .. }] if *by == who.id && *c == code => {}
        other => panic!("expected one refusal in the record, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Starting and stopping

#[test]
fn the_chair_starts_and_stops_and_everyone_in_the_room_and_lobby_is_told() {
    let mut w = World::new(ConsultationKind::Conference);
    let chair = w.staff(Who::Chair, "BS. Chủ trì");
    let doctor = w.staff(Who::Doctor, "BS. Khách");
    let (patient, _) = w.admitted(Who::Patient { recording: true }, "Bệnh nhân", chair);
    let (waiting, _) = w.arrive(Who::Guest, "Khách chờ");
    assert_eq!(w.status().state, RecordingState::Off);

    w.advance(Duration::from_secs(5));
    let out = w.rec(chair, RecordingAction::Start);
    let on = (RecordingState::On, None, Some("BS. Chủ trì".to_owned()));
    for who in [chair, doctor, patient, waiting] {
        assert_eq!(told(&out, who.sid), vec![on.clone()], "{who:?}: {out:?}");
    }
    assert_eq!(media(&out), vec![true]);
    assert_eq!(
        changes(&out),
        vec![RecordingChange::Started { by: chair.id }]
    );
    let s = w.status();
    assert_eq!((s.state, s.since), (RecordingState::On, Some(UNIX_NOW + 5)));
    assert!(
        out.iter().any(|o| matches!(o, Output::Media(MediaCommand::Recording { room, on: true }) if *room == w.room)),
        "the command names the room: {out:?}"
    );

    w.advance(Duration::from_secs(60));
    let out = w.rec(chair, RecordingAction::Stop);
    let off = (
        RecordingState::Off,
        Some(RecordingReason::Stopped),
        Some("BS. Chủ trì".to_owned()),
    );
    for who in [chair, doctor, patient, waiting] {
        assert_eq!(told(&out, who.sid), vec![off.clone()], "{who:?}");
    }
    assert_eq!(media(&out), vec![false]);
    assert!(matches!(
        changes(&out).as_slice(),
        [RecordingChange::Stopped { by: Some(by), reason: RecordingReason::Stopped, detail: None }] if *by == chair.id
    ));
    assert_eq!(w.status().since, Some(UNIX_NOW + 65));
}

#[test]
fn only_the_chair_or_without_one_a_doctor_may_start_or_stop() {
    for chair_present in [true, false] {
        for sender in [
            Who::Chair,
            Who::Doctor,
            Who::Nurse,
            Who::Patient { recording: true },
            Who::Guest,
        ] {
            if sender == Who::Chair && !chair_present {
                continue;
            }
            let mut w = World::new(ConsultationKind::Conference);
            let keeper = w.staff(Who::Doctor, "BS. Trực");
            let chair = chair_present.then(|| w.staff(Who::Chair, "BS. Chủ trì"));
            let admitter = chair.unwrap_or(keeper);
            let me = match sender {
                Who::Chair => chair.expect("present"),
                Who::Patient { .. } | Who::Guest => w.admitted(sender, "Người gửi", admitter).0,
                _ => w.staff(sender, "Người gửi"),
            };
            let allowed = match sender {
                Who::Chair => true,
                Who::Doctor => !chair_present,
                _ => false,
            };
            let before = w.status();
            let out = w.rec(me, RecordingAction::Start);
            if allowed {
                assert_eq!(error(&out, me.sid), None, "{sender:?}: {out:?}");
                assert_eq!(w.status().state, RecordingState::On);
                let out = w.rec(me, RecordingAction::Stop);
                assert_eq!(error(&out, me.sid), None, "{sender:?}: {out:?}");
                assert_eq!(w.status().state, RecordingState::Off);
            } else {
                assert_refused(&w, &out, me, ErrorCode::Forbidden, &before);
                // Nor may they stop what someone else started.
                let out = w.rec(admitter, RecordingAction::Start);
                assert_eq!(error(&out, admitter.sid), None, "{out:?}");
                let before = w.status();
                let out = w.rec(me, RecordingAction::Stop);
                assert_refused(&w, &out, me, ErrorCode::Forbidden, &before);
                assert_eq!(w.status().state, RecordingState::On);
            }
        }
    }
}

#[test]
fn starting_twice_and_stopping_what_is_off_are_refused() {
    let mut w = World::new(ConsultationKind::Conference);
    let chair = w.staff(Who::Chair, "BS. Chủ trì");
    let before = w.status();
    let out = w.rec(chair, RecordingAction::Stop);
    assert_refused(&w, &out, chair, ErrorCode::NotRecording, &before);

    w.rec(chair, RecordingAction::Start);
    let before = w.status();
    let out = w.rec(chair, RecordingAction::Start);
    assert_refused(&w, &out, chair, ErrorCode::AlreadyRecording, &before);

    w.rec(chair, RecordingAction::Stop);
    let before = w.status();
    let out = w.rec(chair, RecordingAction::Stop);
    assert_refused(&w, &out, chair, ErrorCode::NotRecording, &before);
}

#[test]
fn a_server_that_cannot_record_says_so() {
    let mut w = World::with(ConsultationKind::Conference, false);
    let chair = w.staff(Who::Chair, "BS. Chủ trì");
    let before = w.status();
    let out = w.rec(chair, RecordingAction::Start);
    assert_refused(&w, &out, chair, ErrorCode::RecordingUnavailable, &before);
    assert!(!w.hub.recording_available());
    // Who may not start is told that first: the server's set-up is not
    // theirs to learn.
    let nurse = w.staff(Who::Nurse, "ĐD. Hoa");
    let out = w.rec(nurse, RecordingAction::Start);
    assert_refused(&w, &out, nurse, ErrorCode::Forbidden, &before);
}

// ---------------------------------------------------------------------------
// Consent

#[test]
fn start_needs_every_patient_in_the_room_to_have_consented() {
    let mut w = World::new(ConsultationKind::Conference);
    let chair = w.staff(Who::Chair, "BS. Chủ trì");
    w.admitted(Who::Patient { recording: true }, "Đồng ý", chair);
    let (no, _) = w.admitted(Who::Patient { recording: false }, "Chưa đồng ý", chair);
    let before = w.status();
    let out = w.rec(chair, RecordingAction::Start);
    assert_refused(&w, &out, chair, ErrorCode::RecordingConsentMissing, &before);

    // Once they consent, it may start.
    let out = w.consent(no, true);
    assert!(told(&out, chair.sid).is_empty(), "nothing ran: {out:?}");
    let out = w.rec(chair, RecordingAction::Start);
    assert_eq!(error(&out, chair.sid), None, "{out:?}");
    assert_eq!(media(&out), vec![true]);
}

#[test]
fn a_patient_waiting_in_the_lobby_does_not_block_but_pauses_it_on_entering() {
    let mut w = World::new(ConsultationKind::Conference);
    let chair = w.staff(Who::Chair, "BS. Chủ trì");
    let (waiting, _) = w.arrive(Who::Patient { recording: false }, "Chờ");
    let out = w.rec(chair, RecordingAction::Start);
    assert_eq!(error(&out, chair.sid), None, "{out:?}");
    // Told before they enter.
    assert_eq!(
        told(&out, waiting.sid),
        vec![(RecordingState::On, None, Some("BS. Chủ trì".into()))]
    );
    let out = w.frame(
        chair.sid,
        ClientMsg::Admit {
            participant_id: waiting.id,
        },
    );
    let paused = (
        RecordingState::Paused,
        Some(RecordingReason::PatientWithoutConsent),
        Some("BS. Chủ trì".to_owned()),
    );
    assert_eq!(told(&out, chair.sid), vec![paused.clone()]);
    assert_eq!(told(&out, waiting.sid), vec![paused]);
    assert_eq!(media(&out), vec![false]);
    assert_eq!(
        changes(&out),
        vec![RecordingChange::Paused {
            patients: vec![waiting.id]
        }]
    );
}

#[test]
fn a_withdrawal_stops_it_at_once_and_it_stays_off() {
    let mut w = World::new(ConsultationKind::Conference);
    let chair = w.staff(Who::Chair, "BS. Chủ trì");
    let doctor = w.staff(Who::Doctor, "BS. Khách");
    let (patient, _) = w.admitted(Who::Patient { recording: true }, "Nguyễn Văn A", chair);
    w.rec(chair, RecordingAction::Start);

    w.advance(Duration::from_secs(30));
    // The same input that carries the withdrawal stops the recording: no
    // timer, no round trip (well within the 1 s the issue asks).
    let out = w.consent(patient, false);
    let off = (
        RecordingState::Off,
        Some(RecordingReason::ConsentWithdrawn),
        Some("Nguyễn Văn A".to_owned()),
    );
    for who in [chair, doctor, patient] {
        assert_eq!(told(&out, who.sid), vec![off.clone()], "{who:?}");
    }
    assert_eq!(media(&out), vec![false]);
    assert!(matches!(
        changes(&out).as_slice(),
        [RecordingChange::Stopped { by: Some(by), reason: RecordingReason::ConsentWithdrawn, .. }] if *by == patient.id
    ));
    // The new answer is in the record as well.
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Record(RecordEvent::Consent { consent, .. }) if !consent.recording
    )));
    assert_eq!(w.status().since, Some(UNIX_NOW + 30));

    // It is not resumed by itself, and cannot be started without consent.
    let before = w.status();
    let out = w.rec(chair, RecordingAction::Start);
    assert_refused(&w, &out, chair, ErrorCode::RecordingConsentMissing, &before);
    // Consenting again does not restart it either: someone must.
    let out = w.consent(patient, true);
    assert!(media(&out).is_empty() && told(&out, chair.sid).is_empty());
    let out = w.rec(chair, RecordingAction::Start);
    assert_eq!(media(&out), vec![true]);
}

#[test]
fn a_withdrawal_while_paused_stops_it_without_a_second_media_command() {
    let mut w = World::new(ConsultationKind::Conference);
    let chair = w.staff(Who::Chair, "BS. Chủ trì");
    let (yes, _) = w.admitted(Who::Patient { recording: true }, "Đồng ý", chair);
    w.rec(chair, RecordingAction::Start);
    let (_, out) = w.admitted(Who::Patient { recording: false }, "Chưa", chair);
    assert_eq!(media(&out), vec![false]);
    let out = w.consent(yes, false);
    assert!(media(&out).is_empty(), "nothing was being written: {out:?}");
    assert_eq!(
        told(&out, chair.sid),
        vec![(
            RecordingState::Off,
            Some(RecordingReason::ConsentWithdrawn),
            Some("Đồng ý".into())
        )]
    );
    // And the unconsented patient leaving does not bring it back.
    assert_eq!(w.status().state, RecordingState::Off);
}

#[test]
fn an_unconsented_patient_pauses_it_while_in_the_room() {
    let mut w = World::new(ConsultationKind::Conference);
    let chair = w.staff(Who::Chair, "BS. Chủ trì");
    w.rec(chair, RecordingAction::Start);
    let (late, out) = w.admitted(Who::Patient { recording: false }, "Đến muộn", chair);
    assert_eq!(media(&out), vec![false]);
    assert_eq!(
        told(&out, late.sid),
        vec![(
            RecordingState::Paused,
            Some(RecordingReason::PatientWithoutConsent),
            Some("BS. Chủ trì".into())
        )],
        "the newcomer hears it once: {out:?}"
    );
    // Stopping a paused recording is allowed; starting it again is not (it runs).
    let before = w.status();
    let out = w.rec(chair, RecordingAction::Start);
    assert_refused(&w, &out, chair, ErrorCode::AlreadyRecording, &before);

    // They leave: it goes on by itself.
    w.advance(Duration::from_secs(10));
    let out = w.frame(late.sid, ClientMsg::Leave {});
    assert_eq!(media(&out), vec![true]);
    assert_eq!(
        told(&out, chair.sid),
        vec![(RecordingState::On, None, Some("BS. Chủ trì".into()))]
    );
    assert_eq!(changes(&out), vec![RecordingChange::Resumed]);
    assert_eq!(w.status().since, Some(UNIX_NOW + 10));
}

#[test]
fn a_paused_recording_resumes_when_the_patient_consents_and_can_be_stopped() {
    let mut w = World::new(ConsultationKind::Conference);
    let chair = w.staff(Who::Chair, "BS. Chủ trì");
    w.rec(chair, RecordingAction::Start);
    let (p, _) = w.admitted(Who::Patient { recording: false }, "Chưa", chair);
    let out = w.consent(p, true);
    assert_eq!(media(&out), vec![true]);
    assert_eq!(changes(&out), vec![RecordingChange::Resumed]);
    let out = w.consent(p, false);
    assert_eq!(media(&out), vec![false]);
    assert_eq!(w.status().state, RecordingState::Off);
    assert_eq!(w.status().reason, Some(RecordingReason::ConsentWithdrawn));

    // Paused, then stopped by the chair: off, and the SFU was already off.
    let out = w.consent(p, true);
    assert!(media(&out).is_empty());
    w.rec(chair, RecordingAction::Start);
    let (_, out) = w.admitted(Who::Patient { recording: false }, "Chưa 2", chair);
    assert_eq!(media(&out), vec![false]);
    let out = w.rec(chair, RecordingAction::Stop);
    assert_eq!(error(&out, chair.sid), None);
    assert!(media(&out).is_empty(), "{out:?}");
    assert_eq!(w.status().state, RecordingState::Off);
}

#[test]
fn an_unconsented_patient_who_drops_still_holds_the_pause_until_their_place_goes() {
    let mut w = World::new(ConsultationKind::Conference);
    let chair = w.staff(Who::Chair, "BS. Chủ trì");
    w.rec(chair, RecordingAction::Start);
    let (p, _) = w.admitted(Who::Patient { recording: false }, "Mạng yếu", chair);
    let out = w.handle(Input::Disconnected(p.sid));
    assert!(media(&out).is_empty(), "their place is kept: {out:?}");
    assert_eq!(w.status().state, RecordingState::Paused);
    w.advance(Duration::from_secs(31));
    w.hub.handle_timeout(w.now);
    let out: Vec<Output> = std::iter::from_fn(|| w.hub.poll_output()).collect();
    assert_eq!(media(&out), vec![true], "{out:?}");
    let s = w.status();
    assert_eq!(s.state, RecordingState::On);
    // Stamped with the time the timeout ran, not the last input's.
    assert_eq!(s.since, Some(UNIX_NOW + 31));
}

// ---------------------------------------------------------------------------
// Visits

#[test]
fn a_visit_is_recorded_by_its_doctor_only_with_the_patient_there_and_consenting() {
    let mut w = World::new(ConsultationKind::Visit);
    let doctor = w.staff(Who::Doctor, "BS. Lan");
    let nurse = w.staff(Who::Nurse, "ĐD. Hoa");
    let before = w.status();
    let out = w.rec(doctor, RecordingAction::Start);
    assert_refused(
        &w,
        &out,
        doctor,
        ErrorCode::RecordingConsentMissing,
        &before,
    );
    let out = w.rec(nurse, RecordingAction::Start);
    assert_refused(&w, &out, nurse, ErrorCode::Forbidden, &before);

    let (patient, _) = w.admitted(Who::Patient { recording: false }, "Bệnh nhân", doctor);
    let out = w.rec(doctor, RecordingAction::Start);
    assert_refused(
        &w,
        &out,
        doctor,
        ErrorCode::RecordingConsentMissing,
        &before,
    );
    let out = w.rec(patient, RecordingAction::Start);
    assert_refused(&w, &out, patient, ErrorCode::Forbidden, &before);

    w.consent(patient, true);
    let out = w.rec(doctor, RecordingAction::Start);
    assert_eq!(media(&out), vec![true]);
    assert_eq!(told(&out, patient.sid).len(), 1);
}

// ---------------------------------------------------------------------------
// Newcomers, the end, faults

#[test]
fn newcomers_are_told_after_joined_or_waiting_and_only_when_it_is_not_off() {
    let mut w = World::new(ConsultationKind::Conference);
    let chair = w.staff(Who::Chair, "BS. Chủ trì");
    let (_, out) = w.arrive(Who::Doctor, "BS. A");
    assert!(
        out.iter()
            .all(|o| !matches!(o, Output::Send(_, ServerMsg::Recording { .. }))),
        "off is the default: {out:?}"
    );
    w.rec(chair, RecordingAction::Start);
    let (b, out) = w.arrive(Who::Doctor, "BS. B");
    let msgs = sent(&out, b.sid);
    let joined = msgs
        .iter()
        .position(|m| matches!(m, ServerMsg::Joined { .. }))
        .expect("joined");
    let rec = msgs
        .iter()
        .position(|m| matches!(m, ServerMsg::Recording { .. }))
        .expect("recording");
    assert!(joined < rec, "{msgs:?}");
    assert_eq!(
        told(&out, b.sid),
        vec![(RecordingState::On, None, Some("BS. Chủ trì".into()))]
    );
    assert!(
        told(&out, chair.sid).is_empty(),
        "nothing changed for the others"
    );
    let (g, out) = w.arrive(Who::Guest, "Khách");
    assert_eq!(told(&out, g.sid).len(), 1, "the lobby is told: {out:?}");
    // The preview's view of it.
    let s = w.status();
    assert_eq!(s.state, RecordingState::On);
    assert_eq!(s.by.as_deref(), Some("BS. Chủ trì"));
}

#[test]
fn a_reconnecting_participant_is_told_again() {
    let mut w = World::new(ConsultationKind::Conference);
    let chair = w.staff(Who::Chair, "BS. Chủ trì");
    w.rec(chair, RecordingAction::Start);
    // The chair's link opened again (a reload): the new session hears it.
    let sid = SessionId(100);
    w.handle(Input::Connected(sid, Ipv4Addr::LOCALHOST.into()));
    w.frame(
        sid,
        ClientMsg::Hello {
            versions: vec![1],
            client: None,
        },
    );
    let claims = Claims {
        room: w.room.clone(),
        role: Role::Doctor,
        name: "BS. Chủ trì".into(),
        facility: None,
        expires_at: UNIX_NOW + 3600,
        not_before: None,
        pre_admitted: false,
        staff_id: Some(CHAIR_STAFF),
        licence_number: None,
        chair: true,
    };
    // Same link as the chair's first session (nonce 1).
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&1u64.to_be_bytes());
    let token = w.key.mint(&claims, nonce);
    let out = w.frame(
        sid,
        ClientMsg::Join {
            room: w.room.clone(),
            token,
        },
    );
    assert!(
        sent(&out, sid)
            .iter()
            .any(|m| matches!(m, ServerMsg::Joined { resumed: true, .. })),
        "{out:?}"
    );
    assert_eq!(told(&out, sid).len(), 1, "{out:?}");
    assert!(media(&out).is_empty());
}

#[test]
fn the_room_ending_stops_it() {
    let mut w = World::new(ConsultationKind::Conference);
    let chair = w.staff(Who::Chair, "BS. Chủ trì");
    w.rec(chair, RecordingAction::Start);
    let out = w.frame(chair.sid, ClientMsg::EndRoom {});
    assert_eq!(media(&out), vec![false]);
    assert!(matches!(
        changes(&out).as_slice(),
        [RecordingChange::Stopped {
            by: None,
            reason: RecordingReason::RoomEnded,
            ..
        }]
    ));
    // The SFU hears it before it loses the room's participants.
    let stop = out
        .iter()
        .position(|o| matches!(o, Output::Media(MediaCommand::Recording { .. })))
        .expect("stop");
    let removed = out
        .iter()
        .position(|o| matches!(o, Output::Media(MediaCommand::Remove { .. })))
        .expect("removal");
    assert!(stop < removed, "{out:?}");
    assert_eq!(w.status().state, RecordingState::Off);
}

#[test]
fn the_room_ending_through_the_api_stops_it_too() {
    let mut w = World::new(ConsultationKind::Conference);
    let chair = w.staff(Who::Chair, "BS. Chủ trì");
    w.rec(chair, RecordingAction::Start);
    let room = w.room.clone();
    let out = w.handle(Input::EndRoom(room));
    assert_eq!(media(&out), vec![false]);
}

#[test]
fn a_recorder_fault_stops_it_and_everyone_is_told_why() {
    let mut w = World::new(ConsultationKind::Conference);
    let chair = w.staff(Who::Chair, "BS. Chủ trì");
    let (p, _) = w.admitted(Who::Patient { recording: true }, "Bệnh nhân", chair);
    w.rec(chair, RecordingAction::Start);
    let room = w.room.clone();
    let out = w.handle(Input::RecordingFailed {
        room: room.clone(),
        reason: "disk full: /var/lib/tuxa".into(),
    });
    let fault = (RecordingState::Off, Some(RecordingReason::Fault), None);
    assert_eq!(told(&out, chair.sid), vec![fault.clone()]);
    assert_eq!(told(&out, p.sid), vec![fault]);
    // The patient is never shown the technical reason.
    assert!(
        !format!("{:?}", sent(&out, p.sid)).contains("disk"),
        "{out:?}"
    );
    assert_eq!(media(&out), vec![false]);
    assert!(matches!(
        changes(&out).as_slice(),
        [RecordingChange::Stopped { by: None, reason: RecordingReason::Fault, detail: Some(d) }] if d.contains("disk full")
    ));
    // A late second report changes nothing and alarms nobody.
    let out = w.handle(Input::RecordingFailed {
        room,
        reason: "again".into(),
    });
    assert!(out.is_empty(), "{out:?}");
    // The chair may start again (e.g. once space is freed).
    let out = w.rec(chair, RecordingAction::Start);
    assert_eq!(media(&out), vec![true]);
}

#[test]
fn a_fault_for_an_unknown_room_is_ignored() {
    let mut w = World::new(ConsultationKind::Conference);
    let out = w.handle(Input::RecordingFailed {
        room: RoomId::from_random([1; 10]),
        reason: "x".into(),
    });
    assert!(out.is_empty());
}

#[test]
fn waiting_patients_and_guests_cannot_ask() {
    let mut w = World::new(ConsultationKind::Conference);
    w.staff(Who::Chair, "BS. Chủ trì");
    let (waiting, _) = w.arrive(Who::Patient { recording: true }, "Chờ");
    let out = w.rec(waiting, RecordingAction::Start);
    assert_eq!(
        error(&out, waiting.sid).map(|e| e.0),
        Some(ErrorCode::NotJoined)
    );
    assert!(media(&out).is_empty() && changes(&out).is_empty());
}

#[test]
fn the_server_stopping_stops_it_for_the_record() {
    let mut w = World::new(ConsultationKind::Conference);
    let chair = w.staff(Who::Chair, "BS. Chủ trì");
    w.rec(chair, RecordingAction::Start);
    w.hub.shutdown();
    let out: Vec<Output> = std::iter::from_fn(|| w.hub.poll_output()).collect();
    assert_eq!(media(&out), vec![false]);
    assert!(matches!(
        changes(&out).as_slice(),
        [RecordingChange::Stopped {
            by: None,
            reason: RecordingReason::ServerShutdown,
            ..
        }]
    ));
    // Nobody is sent a `recording`: their sessions close (server_shutdown).
    assert!(told(&out, chair.sid).is_empty(), "{out:?}");
    assert_eq!(w.status().state, RecordingState::Off);
}
