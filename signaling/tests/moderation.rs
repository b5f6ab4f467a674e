//! The permission matrix of the room: every moderation message, sent by everyone who can be in
//! a conference room, with and without its named chair present (docs/protocol.md, "Chairing").
//!
//! The rule: while the chair the scheduler named is in the room, only they moderate; without
//! them, the room's doctors do (so that a patient is never stranded in the lobby). Nobody else
//! ever does — not a nurse, a patient, a guest, nor a doctor whose link claims the chair
//! without being the named one.
//!
//! Every case runs in a fresh hub (a removal or a lock must not leak into the next case), in
//! simulated time. A new client message must be classified in [`is_moderation`] (the match has
//! no catch-all, so the test does not compile until it is) and, if it moderates, get a column.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tuxa_protocol::{
    ClientMsg, ConsultationKind, ErrorCode, MediaKind, ParticipantId, Role, RoomId, RoomInfo,
    ServerMsg,
};
use tuxa_records::StaffId;
use tuxa_signaling::{Claims, Hub, HubConfig, Input, Output, RoomStatus, SessionId, TokenKey};

const UNIX_NOW: u64 = 1_750_000_000;
/// The staff member the scheduler named to chair.
const NAMED_CHAIR: StaffId = StaffId(3);

/// Whether a client message moderates the room (acts on others or on the room itself).
fn is_moderation(msg: &ClientMsg) -> bool {
    match msg {
        ClientMsg::Admit { .. }
        | ClientMsg::Refuse { .. }
        | ClientMsg::MuteParticipant { .. }
        | ClientMsg::RemoveParticipant { .. }
        | ClientMsg::LockRoom { .. }
        | ClientMsg::SetSecretary { .. }
        | ClientMsg::EndRoom {}
        // Issue 13: its own matrix is in tests/recording.rs.
        | ClientMsg::Recording { .. } => true,
        // One's own session, media and words; the on-call queue (checked by staff identity in
        // tests/queue.rs).
        ClientMsg::Hello { .. }
        | ClientMsg::Join { .. }
        | ClientMsg::Consent { .. }
        | ClientMsg::Offer { .. }
        | ClientMsg::Answer { .. }
        | ClientMsg::Mute { .. }
        | ClientMsg::Leave {}
        | ClientMsg::Ping { .. }
        | ClientMsg::QueueJoin { .. }
        | ClientMsg::QueueResume { .. }
        | ClientMsg::QueueCancel { .. }
        | ClientMsg::Available { .. }
        | ClientMsg::AcceptPatient { .. }
        | ClientMsg::DeclinePatient { .. }
        | ClientMsg::Transfer { .. }
        | ClientMsg::DoctorFree {}
        | ClientMsg::Sources { .. }
        | ClientMsg::Chat { .. }
        | ClientMsg::Stats { .. }
        | ClientMsg::AudioOnly { .. } => false,
    }
}

/// Who sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sender {
    /// The named chair's own link.
    Chair,
    /// A doctor's link that claims the chair for another staff member.
    SelfMadeChair,
    Doctor,
    Nurse,
    Patient,
    Guest,
}

const SENDERS: [Sender; 6] = [
    Sender::Chair,
    Sender::SelfMadeChair,
    Sender::Doctor,
    Sender::Nurse,
    Sender::Patient,
    Sender::Guest,
];

struct World {
    hub: Hub,
    key: Arc<TokenKey>,
    now: Instant,
    nonce: u64,
    next_sid: u64,
    room: RoomId,
}

impl World {
    fn new() -> World {
        let key = Arc::new(TokenKey::new(&[0x42; 32]));
        let config = HubConfig {
            server_name: "tuxa-test".into(),
            max_participants: 16,
            idle_timeout: Duration::from_secs(45),
            reconnect_grace: Duration::ZERO,
            abandon_after: tuxa_signaling::DEFAULT_ABANDON_AFTER,
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
        };
        let info = RoomInfo {
            id: room.clone(),
            kind: ConsultationKind::Conference,
            title: "Hội chẩn".into(),
        };
        w.handle(Input::RoomOpened(info, RoomStatus::Open));
        w.handle(Input::ChairNamed {
            room,
            staff: NAMED_CHAIR,
        });
        w
    }

    fn handle(&mut self, input: Input) -> Vec<Output> {
        self.now += Duration::from_millis(10);
        self.hub.handle(self.now, UNIX_NOW, input);
        std::iter::from_fn(|| self.hub.poll_output()).collect()
    }

    fn frame(&mut self, sid: SessionId, msg: ClientMsg) -> Vec<Output> {
        self.handle(Input::Frame(sid, Ok(msg)))
    }

    /// Connects and joins as `who`; their session and participant id (in the room, or in the
    /// lobby for patients and guests).
    fn join(&mut self, who: Sender, name: &str) -> (SessionId, ParticipantId) {
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
            Sender::Chair => (Role::Doctor, true, Some(NAMED_CHAIR)),
            Sender::SelfMadeChair => (Role::Doctor, true, Some(StaffId(40))),
            Sender::Doctor => (
                Role::Doctor,
                false,
                Some(StaffId(41 + self.next_sid as i64)),
            ),
            Sender::Nurse => (Role::Nurse, false, Some(StaffId(60 + self.next_sid as i64))),
            Sender::Patient => (Role::Patient, false, None),
            Sender::Guest => (Role::Guest, false, None),
        };
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
        (sid, id)
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

/// What the case's sender is refused with, if anything.
fn refusal(out: &[Output], sid: SessionId) -> Option<ErrorCode> {
    sent(out, sid).into_iter().find_map(|m| match m {
        ServerMsg::Error { code, .. } => Some(code),
        _ => None,
    })
}

/// One case: a room with a doctor who keeps it (so the room never empties), a target doctor
/// in the room, a patient and a guest waiting in the lobby, the chair if `chair_present`, and
/// the sender (admitted from the lobby first when they are a patient or guest). Returns
/// whether the sender was refused with `forbidden`, and panics on any other refusal.
fn case(sender: Sender, chair_present: bool, msg: MakeMsg) -> bool {
    let mut w = World::new();
    let (keeper, _) = w.join(Sender::Doctor, "BS. Trực");
    let (_, target) = w.join(Sender::Doctor, "BS. Đích");
    let (_, waiting_patient) = w.join(Sender::Patient, "Bệnh nhân chờ");
    let (_, waiting_guest) = w.join(Sender::Guest, "Khách chờ");
    let chair = if chair_present || sender == Sender::Chair {
        Some(w.join(Sender::Chair, "BS. Chủ trì"))
    } else {
        None
    };
    let (sid, _) = match sender {
        Sender::Chair => chair.expect("joined above"),
        Sender::Patient | Sender::Guest => {
            let (sid, id) = w.join(sender, "Người gửi");
            let admitter = chair.map_or(keeper, |(s, _)| s);
            let out = w.frame(admitter, ClientMsg::Admit { participant_id: id });
            assert!(
                sent(&out, sid)
                    .iter()
                    .any(|m| matches!(m, ServerMsg::Joined { .. })),
                "{sender:?} was not admitted: {out:?}"
            );
            (sid, id)
        }
        other => w.join(other, "Người gửi"),
    };
    let targets = Targets {
        member: target,
        waiting_patient,
        waiting_guest,
    };
    let m = msg(&targets);
    assert!(is_moderation(&m));
    let out = w.frame(sid, m);
    match refusal(&out, sid) {
        None => false,
        Some(ErrorCode::Forbidden) => true,
        Some(other) => panic!("{sender:?}: refused with {other}, not forbidden: {out:?}"),
    }
}

/// A moderation message aimed at the case's targets.
type MakeMsg = fn(&Targets) -> ClientMsg;

struct Targets {
    member: ParticipantId,
    waiting_patient: ParticipantId,
    waiting_guest: ParticipantId,
}

#[test]
fn each_moderation_message_is_the_named_chairs_or_without_them_a_doctors() {
    let messages: [(&str, MakeMsg); 7] = [
        ("admit", |t| ClientMsg::Admit {
            participant_id: t.waiting_patient,
        }),
        ("refuse", |t| ClientMsg::Refuse {
            participant_id: t.waiting_guest,
        }),
        ("mute_participant", |t| ClientMsg::MuteParticipant {
            participant_id: t.member,
            kind: MediaKind::Audio,
        }),
        ("remove_participant", |t| ClientMsg::RemoveParticipant {
            participant_id: t.member,
        }),
        ("lock_room", |_| ClientMsg::LockRoom { locked: true }),
        ("set_secretary", |t| ClientMsg::SetSecretary {
            participant_id: Some(t.member),
        }),
        ("end_room", |_| ClientMsg::EndRoom {}),
    ];
    let mut wrong = Vec::new();
    for (name, msg) in messages {
        for chair_present in [true, false] {
            for sender in SENDERS {
                // The named chair is present whenever they send.
                if sender == Sender::Chair && !chair_present {
                    continue;
                }
                let allowed = match sender {
                    Sender::Chair => true,
                    // A doctor moderates only while no chair is in the room; naming the
                    // secretary (who writes the conclusion) is the named chair's alone.
                    Sender::Doctor | Sender::SelfMadeChair => {
                        !chair_present && name != "set_secretary"
                    }
                    Sender::Nurse | Sender::Patient | Sender::Guest => false,
                };
                let refused = case(sender, chair_present, msg);
                if refused == allowed {
                    wrong.push(format!(
                        "{name} by {sender:?} (chair {}): {}",
                        if chair_present { "present" } else { "absent" },
                        if refused { "refused" } else { "let through" }
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "differs from the matrix:\n{}",
        wrong.join("\n")
    );
}
