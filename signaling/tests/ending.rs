//! How a room ends (docs/protocol.md, "Ending"): by its doctor or chair with `end_room`, or by
//! itself once no doctor or nurse has been in it for `abandon_after`. Everyone still there, the
//! lobby included, is told with `room_ended` (why, by whom, the facility's contact) and closed;
//! the record gets one `Ended` fact. In simulated time.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tuxa_protocol::{
    ClientMsg, ConsultationKind, EndReason, ErrorCode, FacilityContact, ParticipantId, Role,
    RoomId, RoomInfo, ServerMsg,
};
use tuxa_records::StaffId;
use tuxa_signaling::{
    Claims, Hub, HubConfig, Input, Output, RecordEvent, RoomStatus, SessionId, TokenKey,
};

const UNIX_NOW: u64 = 1_750_000_000;
const ABANDON: Duration = Duration::from_secs(600);
const NAMED_CHAIR: StaffId = StaffId(3);

struct World {
    hub: Hub,
    key: Arc<TokenKey>,
    now: Instant,
    nonce: u64,
    next_sid: u64,
    room: RoomId,
    /// Everything the hub said, in order.
    out: Vec<Output>,
    /// Sessions that keep their WebSocket alive (pinged while time passes).
    live: Vec<SessionId>,
}

fn contact() -> FacilityContact {
    FacilityContact {
        name: "Trạm Y tế xã Tân Lập".into(),
        phone: Some("0210 3812 345".into()),
    }
}

impl World {
    fn new(kind: ConsultationKind) -> World {
        let key = Arc::new(TokenKey::new(&[0x42; 32]));
        let config = HubConfig {
            server_name: "tuxa-test".into(),
            max_participants: 16,
            idle_timeout: Duration::from_secs(45),
            reconnect_grace: Duration::ZERO,
            abandon_after: ABANDON,
            recording_available: false,
        };
        let room = RoomId::from_random([7; 10]);
        let mut w = World {
            hub: Hub::new(config, key.clone()),
            key,
            now: Instant::now(),
            nonce: 0,
            next_sid: 1,
            room: room.clone(),
            out: Vec::new(),
            live: Vec::new(),
        };
        let info = RoomInfo {
            id: room.clone(),
            kind,
            title: "Khám".into(),
        };
        w.handle(Input::RoomOpened(info, RoomStatus::Open));
        w.handle(Input::RoomContact {
            room: room.clone(),
            contact: contact(),
        });
        if kind == ConsultationKind::Conference {
            w.handle(Input::ChairNamed {
                room,
                staff: NAMED_CHAIR,
            });
        }
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

    /// Lets `d` pass, ticking the hub once a second as the server does;
    /// the clients still connected ping as browsers do.
    fn wait(&mut self, d: Duration) {
        let end = self.now + d;
        let mut n = 0u64;
        while self.now < end {
            self.now = (self.now + Duration::from_secs(1)).min(end);
            n += 1;
            if n.is_multiple_of(15) {
                for sid in self.live.clone() {
                    self.hub.handle(
                        self.now,
                        UNIX_NOW,
                        Input::Frame(sid, Ok(ClientMsg::Ping { seq: n })),
                    );
                }
            }
            self.hub.handle_timeout(self.now);
            self.drain();
        }
    }

    fn frame(&mut self, sid: SessionId, msg: ClientMsg) -> Vec<Output> {
        self.handle(Input::Frame(sid, Ok(msg)))
    }

    /// Connects and joins with a link for `role` (`chair`: the named chair's own); patients and
    /// guests land in the lobby.
    fn join(&mut self, role: Role, chair: bool, name: &str) -> (SessionId, ParticipantId) {
        let sid = SessionId(self.next_sid);
        self.next_sid += 1;
        self.live.push(sid);
        self.handle(Input::Connected(sid, Ipv4Addr::LOCALHOST.into()));
        self.frame(
            sid,
            ClientMsg::Hello {
                versions: vec![1],
                client: None,
            },
        );
        if role == Role::Patient {
            self.frame(
                sid,
                ClientMsg::Consent {
                    text_version: "vi-test-1".into(),
                    remote_examination: true,
                    third_parties: true,
                    recording: false,
                },
            );
        }
        let staff_id = match (role, chair) {
            (_, true) => Some(NAMED_CHAIR),
            (Role::Doctor | Role::Nurse, false) => Some(StaffId(100 + self.next_sid as i64)),
            _ => None,
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
            .unwrap_or_else(|| panic!("{name} did not join: {out:?}"));
        (sid, id)
    }

    fn admit(&mut self, host: SessionId, pid: ParticipantId) {
        self.frame(
            host,
            ClientMsg::Admit {
                participant_id: pid,
            },
        );
    }

    /// The `Ended` facts for the record so far.
    fn ended(&self) -> Vec<(EndReason, Option<ParticipantId>)> {
        self.out
            .iter()
            .filter_map(|o| match o {
                Output::Record(RecordEvent::Ended { reason, by, .. }) => Some((*reason, *by)),
                _ => None,
            })
            .collect()
    }

    /// What `sid` was told about the end, and whether it was closed after.
    fn end_seen(&self, sid: SessionId) -> Option<(EndReason, Option<String>, bool)> {
        let at = self
            .out
            .iter()
            .position(|o| matches!(o, Output::Send(s, ServerMsg::RoomEnded { .. }) if *s == sid))?;
        let Output::Send(
            _,
            ServerMsg::RoomEnded {
                reason,
                by,
                contact: c,
            },
        ) = &self.out[at]
        else {
            unreachable!()
        };
        assert_eq!(c.as_ref(), Some(&contact()), "the end screen's contact");
        let closed = self.out[at..]
            .iter()
            .any(|o| matches!(o, Output::Close(s) if *s == sid));
        Some((*reason, by.clone(), closed))
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

fn refused(out: &[Output], sid: SessionId) -> Option<ErrorCode> {
    sent(out, sid).into_iter().find_map(|m| match m {
        ServerMsg::Error { code, .. } => Some(code),
        _ => None,
    })
}

#[test]
fn the_doctor_ends_a_visit_for_everyone_the_lobby_included() {
    let mut w = World::new(ConsultationKind::Visit);
    let (doctor, doctor_id) = w.join(Role::Doctor, false, "BS. Lan");
    let (nurse, _) = w.join(Role::Nurse, false, "ĐD. Hoa");
    let (patient, patient_id) = w.join(Role::Patient, false, "Bà Tư");
    w.admit(doctor, patient_id);
    let (guest, _) = w.join(Role::Guest, false, "Con gái bà Tư");

    // Nobody but the doctor ends a visit: each refusal changes nothing.
    for (who, sid) in [("patient", patient), ("nurse", nurse)] {
        let out = w.frame(sid, ClientMsg::EndRoom {});
        assert_eq!(refused(&out, sid), Some(ErrorCode::Forbidden), "{who}");
        assert!(w.ended().is_empty(), "{who} ended the visit");
    }
    // A guest in the lobby has not joined: not_joined, nothing ended.
    let out = w.frame(guest, ClientMsg::EndRoom {});
    assert!(refused(&out, guest).is_some(), "{out:?}");
    assert!(w.ended().is_empty());

    w.frame(doctor, ClientMsg::EndRoom {});
    assert_eq!(w.ended(), vec![(EndReason::Ended, Some(doctor_id))]);
    for (who, sid) in [
        ("doctor", doctor),
        ("nurse", nurse),
        ("patient", patient),
        ("guest in the lobby", guest),
    ] {
        assert_eq!(
            w.end_seen(sid),
            Some((EndReason::Ended, Some("BS. Lan".to_owned()), true)),
            "{who}"
        );
    }

    // The room takes nobody now, and cannot end twice.
    let (sid, _) = {
        let sid = SessionId(99);
        w.handle(Input::Connected(sid, Ipv4Addr::LOCALHOST.into()));
        (sid, ())
    };
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
        name: "BS. Lan".into(),
        facility: None,
        expires_at: UNIX_NOW + 3600,
        not_before: None,
        pre_admitted: false,
        staff_id: Some(StaffId(7)),
        licence_number: None,
        chair: false,
    };
    let token = w.key.mint(&claims, [9; 12]);
    let out = w.frame(
        sid,
        ClientMsg::Join {
            room: w.room.clone(),
            token,
        },
    );
    assert_eq!(refused(&out, sid), Some(ErrorCode::RoomEnded));
    w.handle(Input::EndRoom(w.room.clone()));
    assert_eq!(w.ended().len(), 1, "ended once");
}

#[test]
fn in_a_conference_the_chair_ends_it_or_without_a_chair_a_doctor() {
    let mut w = World::new(ConsultationKind::Conference);
    let (chair, chair_id) = w.join(Role::Doctor, true, "BS. Chủ trì");
    let (doctor, doctor_id) = w.join(Role::Doctor, false, "BS. Huyện");
    let out = w.frame(doctor, ClientMsg::EndRoom {});
    assert_eq!(refused(&out, doctor), Some(ErrorCode::Forbidden));
    assert!(w.ended().is_empty());
    // The chair leaves: the doctor in the room may end it now.
    w.frame(chair, ClientMsg::Leave {});
    w.frame(doctor, ClientMsg::EndRoom {});
    assert_eq!(w.ended(), vec![(EndReason::Ended, Some(doctor_id))]);
    assert_ne!(chair_id, doctor_id);
    assert_eq!(
        w.end_seen(doctor),
        Some((EndReason::Ended, Some("BS. Huyện".to_owned()), true))
    );
}

#[test]
fn a_room_left_without_doctor_or_nurse_ends_as_abandoned() {
    let mut w = World::new(ConsultationKind::Visit);
    let (doctor, _) = w.join(Role::Doctor, false, "BS. Lan");
    let (patient, patient_id) = w.join(Role::Patient, false, "Bà Tư");
    w.admit(doctor, patient_id);
    w.frame(doctor, ClientMsg::Leave {});

    w.wait(ABANDON - Duration::from_secs(2));
    assert!(w.ended().is_empty(), "ended before its time");
    assert_eq!(w.end_seen(patient), None);
    // The hub asks to be ticked by then.
    let next = w.hub.handle_timeout(w.now).expect("a deadline");
    assert!(next <= w.now + Duration::from_secs(3), "{:?}", next - w.now);

    w.wait(Duration::from_secs(4));
    assert_eq!(w.ended(), vec![(EndReason::Abandoned, None)]);
    assert_eq!(
        w.end_seen(patient),
        Some((EndReason::Abandoned, None, true))
    );
}

#[test]
fn a_doctor_coming_back_stops_the_clock() {
    let mut w = World::new(ConsultationKind::Visit);
    let (doctor, _) = w.join(Role::Doctor, false, "BS. Lan");
    let (_, patient_id) = w.join(Role::Patient, false, "Bà Tư");
    w.admit(doctor, patient_id);
    w.frame(doctor, ClientMsg::Leave {});
    w.wait(ABANDON / 2);
    let (doctor, _) = w.join(Role::Doctor, false, "BS. Lan");
    w.wait(ABANDON / 2 + Duration::from_secs(5));
    w.frame(doctor, ClientMsg::Leave {});
    w.wait(ABANDON - Duration::from_secs(5));
    assert!(
        w.ended().is_empty(),
        "the clock was not reset: {:?}",
        w.ended()
    );
    w.wait(Duration::from_secs(10));
    assert_eq!(w.ended(), vec![(EndReason::Abandoned, None)]);
}

#[test]
fn a_room_no_doctor_or_nurse_was_in_waits_for_them() {
    // A patient early for a scheduled visit waits in the lobby as long as it takes.
    let mut w = World::new(ConsultationKind::Visit);
    let (patient, _) = w.join(Role::Patient, false, "Bà Tư");
    w.wait(ABANDON * 3);
    assert!(w.ended().is_empty());
    assert_eq!(w.end_seen(patient), None);
}

#[test]
fn a_room_people_were_in_before_a_restart_ends_if_nobody_comes_back() {
    let mut w = World::new(ConsultationKind::Visit);
    w.handle(Input::Attended(w.room.clone()));
    let (patient, _) = w.join(Role::Patient, false, "Bà Tư");
    w.wait(ABANDON + Duration::from_secs(2));
    assert_eq!(w.ended(), vec![(EndReason::Abandoned, None)]);
    assert_eq!(
        w.end_seen(patient),
        Some((EndReason::Abandoned, None, true))
    );
}
