//! The hub from fuzzer bytes: each input is read as a sequence of steps
//! (one opcode byte and its argument bytes) from several sessions against
//! one hub, and after every step: nobody outside a room receives room-only
//! messages, room and lobby never share a participant, and a link removed
//! by the chair (for staff: any link of the same account) never gets a
//! `joined` or `waiting` again. The bounded twin with a fuller model is
//! `signaling/tests/prop_hub.rs`.

#![no_main]

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tuxa_protocol::{
    ClientMsg, ConsultationKind, ErrorCode, LinkStats, MediaKind, ParticipantId, ProtocolError,
    RecordingAction, Role, RoomId, RoomInfo, ServerMsg,
};
use tuxa_records::StaffId;
use tuxa_signaling::{
    Claims, Hub, HubConfig, Input, Output, RecordEvent, RoomStatus, SessionId, TokenKey,
};

const UNIX_NOW: u64 = 1_750_000_000;
const CHAIR_STAFF: StaffId = StaffId(100);

/// (role, staff account, chair claim, pre-admitted) of each link, all for
/// the one conference room.
const LINKS: &[(Role, Option<StaffId>, bool, bool)] = &[
    (Role::Doctor, Some(CHAIR_STAFF), true, false),
    (Role::Doctor, Some(CHAIR_STAFF), true, false),
    (Role::Doctor, Some(StaffId(101)), false, false),
    (Role::Nurse, Some(StaffId(102)), false, false),
    (Role::Patient, None, false, false),
    (Role::Guest, None, false, false),
    (Role::Patient, None, false, true),
    (Role::Guest, Some(StaffId(105)), false, false),
];

static KEY: LazyLock<Arc<TokenKey>> = LazyLock::new(|| Arc::new(TokenKey::new(&[0x42; 32])));

fn room() -> RoomId {
    RoomId::from_random([1; 10])
}

static TOKENS: LazyLock<Vec<String>> = LazyLock::new(|| {
    LINKS
        .iter()
        .enumerate()
        .map(|(i, &(role, staff_id, chair, pre_admitted))| {
            let claims = Claims {
                room: room(),
                role,
                name: format!("link {i}"),
                facility: None,
                expires_at: UNIX_NOW + 24 * 3600,
                not_before: None,
                pre_admitted,
                staff_id,
                licence_number: None,
                chair,
            };
            KEY.mint(&claims, [i as u8 + 1; 12])
        })
        .collect()
});

#[derive(Default)]
struct Session {
    link: Option<usize>,
    /// Told `joined` or `waiting`: a later join is refused, the link stays.
    entered: bool,
    member: Option<ParticipantId>,
    gone: bool,
}

fn room_only(msg: &ServerMsg) -> bool {
    matches!(
        msg,
        ServerMsg::Lobby { .. }
            | ServerMsg::ParticipantJoined { .. }
            | ServerMsg::ParticipantLeft { .. }
            | ServerMsg::ParticipantReconnecting { .. }
            | ServerMsg::ParticipantReconnected { .. }
            | ServerMsg::LinkQuality { .. }
            | ServerMsg::TrackPublished { .. }
            | ServerMsg::TrackUnpublished { .. }
            | ServerMsg::MuteChanged { .. }
            | ServerMsg::Offer { .. }
            | ServerMsg::Answer { .. }
            | ServerMsg::Chat { .. }
            | ServerMsg::MuteRequested { .. }
            | ServerMsg::RoomState { .. }
    )
}

struct World {
    hub: Hub,
    now: Instant,
    t0: Instant,
    sessions: Vec<Session>,
    pid_link: HashMap<ParticipantId, usize>,
    barred: HashSet<usize>,
}

impl World {
    fn new(grace: bool) -> World {
        let config = HubConfig {
            server_name: "tuxa-fuzz".into(),
            max_participants: 4,
            idle_timeout: Duration::from_secs(45),
            reconnect_grace: if grace {
                Duration::from_secs(30)
            } else {
                Duration::ZERO
            },
            abandon_after: Duration::from_secs(600),
            recording_available: true,
        };
        let t0 = Instant::now();
        let mut w = World {
            hub: Hub::new(config, KEY.clone()),
            now: t0,
            t0,
            sessions: Vec::new(),
            pid_link: HashMap::new(),
            barred: HashSet::new(),
        };
        let info = RoomInfo {
            id: room(),
            kind: ConsultationKind::Conference,
            title: "fuzz".into(),
        };
        w.input(Input::RoomOpened(info, RoomStatus::Open));
        w.input(Input::ChairNamed {
            room: room(),
            staff: CHAIR_STAFF,
        });
        w
    }

    fn unix(&self) -> u64 {
        UNIX_NOW + (self.now - self.t0).as_secs()
    }

    fn input(&mut self, input: Input) {
        let unix = self.unix();
        self.hub.handle(self.now, unix, input);
        self.check();
    }

    fn frame(&mut self, s: usize, msg: ClientMsg) {
        let Some(session) = self.sessions.get_mut(s).filter(|x| !x.gone) else {
            return;
        };
        if let ClientMsg::Join { token, .. } = &msg
            && !session.entered
        {
            session.link = TOKENS.iter().position(|t| t == token);
        }
        self.input(Input::Frame(SessionId(s as u64), Ok(msg)));
    }

    fn check(&mut self) {
        while let Some(o) = self.hub.poll_output() {
            match o {
                Output::Send(sid, msg) => {
                    let s = &mut self.sessions[sid.0 as usize];
                    assert!(!s.gone, "a message to a disconnected session: {msg:?}");
                    if room_only(&msg) {
                        assert!(s.member.is_some(), "room-only message to {sid:?}: {msg:?}");
                    }
                    if let ServerMsg::Joined { you, .. } | ServerMsg::Waiting { you, .. } = &msg {
                        let link = s.link.expect("joined or waiting after a join");
                        assert!(!self.barred.contains(&link), "barred link {link} got back");
                        self.pid_link.insert(you.id, link);
                        s.entered = true;
                    }
                    if let ServerMsg::Joined { you, .. } = msg {
                        s.member = Some(you.id);
                    }
                }
                Output::Record(RecordEvent::Removed { participant, .. }) => {
                    let l = self.pid_link[&participant];
                    for (i, other) in LINKS.iter().enumerate() {
                        if i == l || (LINKS[l].1.is_some() && other.1 == LINKS[l].1) {
                            self.barred.insert(i);
                        }
                    }
                }
                Output::Record(RecordEvent::Left { participant, .. }) => {
                    for s in &mut self.sessions {
                        if s.member == Some(participant) {
                            s.member = None;
                        }
                    }
                }
                _ => {}
            }
        }
        let members: HashSet<ParticipantId> = self
            .hub
            .participants_in(&room())
            .iter()
            .map(|p| p.id)
            .collect();
        for w in self.hub.waiting_in(&room()) {
            assert!(
                !members.contains(&w.id),
                "{} in the room and its lobby",
                w.id
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let mut w = World::new(first & 1 == 1);
    let mut next = |n: usize| -> Option<&[u8]> {
        let (a, b) = rest.split_at_checked(n)?;
        rest = b;
        Some(a)
    };
    while let Some(&[op, a, b]) = next(3) {
        let s = usize::from(a) % (w.sessions.len().max(1));
        let p = ParticipantId(u64::from(b % 16));
        match op % 20 {
            0 | 1 => {
                // Connect, hello, consent and join with link `b`.
                let s = w.sessions.len();
                if s >= 32 {
                    continue;
                }
                w.sessions.push(Session::default());
                w.input(Input::Connected(
                    SessionId(s as u64),
                    IpAddr::from([192, 0, 2, 1]),
                ));
                w.frame(
                    s,
                    ClientMsg::Hello {
                        versions: vec![1],
                        client: None,
                    },
                );
                if a & 1 == 0 {
                    w.frame(
                        s,
                        ClientMsg::Consent {
                            text_version: "v1".into(),
                            remote_examination: true,
                            third_parties: false,
                            recording: a & 2 == 2,
                        },
                    );
                }
                let token = TOKENS[usize::from(b) % TOKENS.len()].clone();
                w.frame(
                    s,
                    ClientMsg::Join {
                        room: room(),
                        token,
                    },
                );
            }
            2 => w.frame(s, ClientMsg::Admit { participant_id: p }),
            3 => w.frame(s, ClientMsg::Refuse { participant_id: p }),
            4 => w.frame(s, ClientMsg::RemoveParticipant { participant_id: p }),
            5 => w.frame(
                s,
                ClientMsg::MuteParticipant {
                    participant_id: p,
                    kind: if b & 1 == 0 {
                        MediaKind::Audio
                    } else {
                        MediaKind::Video
                    },
                },
            ),
            6 => w.frame(s, ClientMsg::LockRoom { locked: b & 1 == 1 }),
            7 => w.frame(
                s,
                ClientMsg::SetSecretary {
                    participant_id: (b & 0x80 == 0).then_some(p),
                },
            ),
            8 => w.frame(
                s,
                ClientMsg::Chat {
                    text: "xin chào".into(),
                },
            ),
            9 => w.frame(
                s,
                ClientMsg::Offer {
                    sdp: "v=0\r\n".into(),
                },
            ),
            10 => w.frame(
                s,
                ClientMsg::Stats {
                    stats: LinkStats {
                        rtt_ms: Some(u32::from(b) * 10),
                        ..LinkStats::default()
                    },
                },
            ),
            11 => w.frame(s, ClientMsg::Leave {}),
            12 => {
                if let Some(x) = w.sessions.get_mut(s).filter(|x| !x.gone) {
                    x.gone = true;
                    w.input(Input::Disconnected(SessionId(s as u64)));
                }
            }
            13 => {
                w.now += Duration::from_secs(u64::from(b % 64));
                w.hub.handle_timeout(w.now);
                w.check();
            }
            14 => w.input(Input::FromMedia(
                p,
                ServerMsg::Offer {
                    sdp: "v=0\r\n".into(),
                },
            )),
            15 => w.input(Input::MediaGone(p)),
            16 => w.input(Input::ChairNamed {
                room: room(),
                staff: StaffId(CHAIR_STAFF.0 + i64::from(b & 1)),
            }),
            17 => {
                if s < w.sessions.len() && !w.sessions[s].gone {
                    w.input(Input::Frame(
                        SessionId(s as u64),
                        Err(ProtocolError::new(ErrorCode::BadJson, "fuzz")),
                    ));
                }
            }
            18 if b & 2 == 2 => w.frame(
                s,
                ClientMsg::Recording {
                    action: if b & 1 == 1 {
                        RecordingAction::Start
                    } else {
                        RecordingAction::Stop
                    },
                },
            ),
            18 => w.frame(
                s,
                ClientMsg::Mute {
                    kind: MediaKind::Audio,
                    muted: b & 1 == 1,
                },
            ),
            _ => {
                // A join from an existing session (again, or another link).
                let token = TOKENS[usize::from(b) % TOKENS.len()].clone();
                w.frame(
                    s,
                    ClientMsg::Join {
                        room: room(),
                        token,
                    },
                );
            }
        }
    }
});
