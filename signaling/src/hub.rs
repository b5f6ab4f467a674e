//! The signaling hub: every session, room and participant, owned in one place.
//!
//! The hub is a state machine. The server feeds it [`Input`]s (a frame from a
//! session, a session gone, a room opened or ended, a message from the media
//! side, the passing of time) and drains [`Output`]s (frames to send, sessions
//! to close, commands for the SFU, facts for the record). It never sees a
//! socket or reads a clock, which is what lets the tests below run a whole
//! consultation in simulated time.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tuxa_protocol::{
    ClientMsg, ConsultationKind, EndReason, ErrorCode, FacilityContact, IDLE_TIMEOUT_MS,
    KEEPALIVE_INTERVAL_MS, LeaveReason, LinkStats, MediaKind, ParticipantId, ParticipantInfo,
    ProtocolError, Role, RoomId, RoomInfo, SUPPORTED_VERSIONS, ServerMsg, TrackSource,
};

use crate::hub_queue::{CallLinks, StaffInfo};
use crate::queue::{Pairing, QueueBook, QueueConfig, QueueEvent, QueueId, QueueInput};
use crate::token::{Claims, TokenError, TokenKey};
use tuxa_records::{FacilityId, StaffId};

// Pre-call check rooms: a child module, so that it reaches the rooms.
mod check;
pub use check::{CHECK_JOIN_WINDOW, CHECK_ROOM_LIFETIME, CheckError, CheckTicket, MAX_CHECK_ROOMS};

// Recording control (issue 13): who starts and stops it, consent, pauses.
mod recording;
pub use recording::{RecordingChange, RecordingStatus};

/// One WebSocket connection, numbered by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// Whether a room takes new participants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomStatus {
    Open,
    Ended,
}

#[derive(Debug)]
pub enum Input {
    /// A WebSocket was accepted, from this client address (the TCP peer:
    /// the on-call queues cap what one address may hold).
    Connected(SessionId, std::net::IpAddr),
    /// A text frame from a session, already parsed (or not).
    Frame(SessionId, Result<ClientMsg, ProtocolError>),
    /// The WebSocket is gone (closed by the peer, or broken).
    Disconnected(SessionId),
    /// A room exists (created through the API, or loaded at start).
    RoomOpened(RoomInfo, RoomStatus),
    /// A room was ended through the API (the record is already closed).
    EndRoom(RoomId),
    /// How to reach the facility a room belongs to, for its end screen.
    RoomContact {
        room: RoomId,
        contact: FacilityContact,
    },
    /// A room restored at start had people in it before the restart: with
    /// no doctor or nurse coming back it ends as `abandoned` (see
    /// [`HubConfig::abandon_after`]).
    Attended(RoomId),
    /// The staff member the scheduler named to chair a conference: only a
    /// link minted for that account (`Claims::staff_id`) with the chair's
    /// claim gets the chair's rights in this room. Sent when a conference is
    /// scheduled and, for every open room, at start.
    ChairNamed { room: RoomId, staff: StaffId },
    /// Someone the chair removed earlier (from the store, at start): kept
    /// out as if removed in this run.
    Barred { room: RoomId, bar: Bar },
    /// The media side has something to say to a participant (SDP, tracks).
    FromMedia(ParticipantId, ServerMsg),
    /// The media side lost a participant's transport (ICE/DTLS failed).
    MediaGone(ParticipantId),
    /// The session's WebSocket came with a staff sign-in.
    Identified(SessionId, StaffInfo),
    /// A staff member signed out, was disabled or changed role: their open
    /// WebSockets lose the identity they were opened with (and are closed,
    /// so that a console reconnects and signs in again).
    StaffRevoked(StaffId),
    /// The queues a staff member is on call for now (rosters are re-read by
    /// the server as shifts start and end). Their open sessions take it
    /// over; availability for a queue whose shift ended is withdrawn.
    OnCallChanged {
        staff: StaffId,
        on_call: Vec<QueueId>,
    },
    /// An on-call queue exists (from the store, at start or when created).
    QueueOpened {
        queue: QueueId,
        name: String,
        facility: FacilityId,
    },
    /// The server made the room and links of a pairing.
    CallReady {
        links: CallLinks,
        patient: Option<SessionId>,
        doctor: Option<SessionId>,
    },
    /// The recorder of a room failed (disk full or slow, no key, …): the
    /// recording stops (`recording` off with reason `fault` to everyone, an
    /// alert for the chair or doctor) and the call goes on. `reason` is for
    /// the log and the audit chain, never shown to patients.
    RecordingFailed { room: RoomId, reason: String },
}

/// What the SFU must do for the hub.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaCommand {
    Offer {
        room: RoomId,
        participant: ParticipantId,
        sdp: String,
    },
    Answer {
        participant: ParticipantId,
        sdp: String,
    },
    Remove {
        participant: ParticipantId,
    },
    /// What the participant's sending m-lines carry, by mid.
    Sources {
        participant: ParticipantId,
        sources: BTreeMap<String, TrackSource>,
    },
    /// The participant chose audio only (or video again).
    AudioOnly {
        participant: ParticipantId,
        on: bool,
    },
    /// Record the room's published media (`on`) or not: on when recording
    /// starts or resumes, off when it pauses or stops (`Sfu::set_recording`).
    Recording {
        room: RoomId,
        on: bool,
    },
}

/// Facts for the consultation record.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordEvent {
    Joined {
        room: RoomId,
        participant: ParticipantInfo,
    },
    Left {
        room: RoomId,
        participant: ParticipantId,
        reason: LeaveReason,
    },
    TokenRefused {
        room: RoomId,
        code: ErrorCode,
    },
    /// Something happened in an on-call queue.
    Queue(QueueEvent),
    /// A patient's consent answers, at join or when changed.
    Consent {
        room: RoomId,
        participant: ParticipantId,
        consent: Consent,
    },
    /// Entered the lobby.
    Waiting {
        room: RoomId,
        participant: ParticipantInfo,
    },
    Admitted {
        room: RoomId,
        participant: ParticipantId,
        by: ParticipantId,
    },
    Refused {
        room: RoomId,
        participant: ParticipantId,
        by: ParticipantId,
    },
    /// A chat message, kept with the record of a conference (not of a visit).
    Chat {
        room: RoomId,
        participant: ParticipantId,
        name: String,
        text: String,
        at: u64,
    },
    /// The chair named a secretary (`staff_id` of the account the link was
    /// minted for), or nobody.
    SecretaryNamed {
        room: RoomId,
        participant: Option<ParticipantId>,
        staff_id: Option<StaffId>,
        by: ParticipantId,
    },
    /// The chair removed a participant (or someone waiting); `bar` is who
    /// is kept out of the room from now on (persist it: see [`Input::Barred`]).
    Removed {
        room: RoomId,
        participant: ParticipantId,
        by: ParticipantId,
        bar: Bar,
    },
    /// The chair locked or unlocked the room.
    Locked {
        room: RoomId,
        locked: bool,
        by: ParticipantId,
    },
    /// The hub ended a room (`end_room` from a doctor or the chair, a
    /// doctor's "next patient", or abandonment): close its record. `by` is
    /// who ended it, when a person did.
    Ended {
        room: RoomId,
        reason: EndReason,
        by: Option<ParticipantId>,
    },
    /// The chair asked a participant to mute.
    MuteRequested {
        room: RoomId,
        participant: ParticipantId,
        kind: MediaKind,
        by: ParticipantId,
    },
    /// A participant's connection dropped; their place is kept for the
    /// reconnect grace window. `LinkBack` or `Left` closes the gap.
    LinkLost {
        room: RoomId,
        participant: ParticipantId,
    },
    /// The participant took their place back after `LinkLost` (a new
    /// session with the same link), or a second session replaced a live one
    /// (`replaced`: no gap was open).
    LinkBack {
        room: RoomId,
        participant: ParticipantId,
        replaced: bool,
    },
    /// One window of a participant's link telemetry (see [`QualityWindow`]).
    LinkQuality {
        room: RoomId,
        participant: ParticipantId,
        window: QualityWindow,
    },
    /// Recording started, stopped, paused, resumed, or a request was refused
    /// (for the audit chain).
    Recording {
        room: RoomId,
        change: RecordingChange,
    },
}

/// A participant's `stats` samples over one window of at most
/// [`QUALITY_WINDOW_SECS`], aggregated for the record: the worst figures,
/// and how much of the time the samples covered was audio-only.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct QualityWindow {
    /// Unix seconds of the window's first and last sample.
    pub from: u64,
    pub to: u64,
    pub samples: u32,
    pub rtt_ms_avg: Option<u32>,
    pub rtt_ms_max: Option<u32>,
    pub loss_pct_max: Option<f32>,
    pub jitter_ms_max: Option<u32>,
    pub frame_height_min: Option<u32>,
    /// Time the samples speak for: each covers the time since the one
    /// before it, at most [`STATS_MAX_SPAN`] (a sample after a silence says
    /// nothing about the silence); a participant's first sample covers none.
    pub covered_ms: u64,
    /// The part of `covered_ms` whose sample said audio-only.
    pub audio_only_ms: u64,
    rtt_sum: u64,
    rtt_n: u32,
}

impl QualityWindow {
    fn add(&mut self, unix: u64, span: Duration, s: &LinkStats) {
        if self.samples == 0 {
            self.from = unix;
        }
        self.to = unix;
        self.samples += 1;
        if let Some(r) = s.rtt_ms {
            self.rtt_sum += u64::from(r);
            self.rtt_n += 1;
            self.rtt_ms_avg = Some((self.rtt_sum / u64::from(self.rtt_n)) as u32);
            self.rtt_ms_max = Some(self.rtt_ms_max.map_or(r, |m| m.max(r)));
        }
        if let Some(l) = s.loss_pct {
            self.loss_pct_max = Some(self.loss_pct_max.map_or(l, |m| m.max(l)));
        }
        if let Some(j) = s.jitter_ms {
            self.jitter_ms_max = Some(self.jitter_ms_max.map_or(j, |m| m.max(j)));
        }
        if let Some(h) = s.frame_height {
            self.frame_height_min = Some(self.frame_height_min.map_or(h, |m| m.min(h)));
        }
        let ms = span.as_millis() as u64;
        self.covered_ms += ms;
        if s.audio_only {
            self.audio_only_ms += ms;
        }
    }
}

/// Telemetry is aggregated into windows of this many seconds for the record.
pub const QUALITY_WINDOW_SECS: u64 = 10;
/// `stats` closer together than this are ignored (not forwarded, not
/// recorded): clients send every 5 s; a faster one must not flood the
/// moderators or the record.
pub const STATS_MIN_INTERVAL: Duration = Duration::from_secs(2);
/// The most time one sample speaks for.
pub const STATS_MAX_SPAN: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Send(SessionId, ServerMsg),
    /// A doctor accepted a patient from a queue: create the room, mint both
    /// links (the patient's pre-admitted) and answer with `Input::CallReady`.
    Paired(Pairing),
    /// Close the session (after the frames queued before this one).
    Close(SessionId),
    Media(MediaCommand),
    Record(RecordEvent),
}

#[derive(Debug, Clone)]
pub struct HubConfig {
    pub server_name: String,
    pub max_participants: usize,
    pub idle_timeout: Duration,
    /// How long a participant whose connection dropped (WebSocket closed or
    /// broken, or silent until `idle_timeout`) keeps their place for a
    /// reconnect with the same link. Zero: they leave at once.
    pub reconnect_grace: Duration,
    /// How long a room that a doctor or nurse was in may go without any
    /// before it ends by itself (`abandoned`): the patient left alone is
    /// told, and the record gets its end time.
    pub abandon_after: Duration,
    /// The server can record (a master key is configured): without it,
    /// `recording start` is answered `recording_unavailable`.
    pub recording_available: bool,
}

/// Long enough for a doctor to step out for a colleague or a file and come
/// back, or to rejoin on another device; short enough that a patient left
/// alone is not waiting for nobody, and the record's end time is near the
/// real end.
pub const DEFAULT_ABANDON_AFTER: Duration = Duration::from_secs(10 * 60);

/// Long enough for a phone to notice a dead link, back off and come back on
/// 3G; short enough that the others do not wait on a tile for long.
pub const DEFAULT_RECONNECT_GRACE: Duration = Duration::from_secs(30);

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            server_name: concat!("tuxa/", env!("CARGO_PKG_VERSION")).to_owned(),
            max_participants: 16,
            idle_timeout: Duration::from_millis(IDLE_TIMEOUT_MS),
            reconnect_grace: DEFAULT_RECONNECT_GRACE,
            abandon_after: DEFAULT_ABANDON_AFTER,
            recording_available: false,
        }
    }
}

#[derive(Debug)]
enum SessionState {
    AwaitingHello,
    Negotiated,
    /// In the lobby, waiting for a host to admit them.
    Waiting {
        room: RoomId,
        participant: ParticipantId,
    },
    Joined {
        room: RoomId,
        participant: ParticipantId,
    },
    /// Left or failed fatally: frames still arriving before the close are ignored.
    Closing,
}

#[derive(Debug)]
struct Session {
    state: SessionState,
    last_heard: Instant,
    /// The patient's latest consent answers on this session.
    consent: Option<Consent>,
    /// Set when the WebSocket came with a staff sign-in.
    staff: Option<StaffInfo>,
    /// The client's address (see `Input::Connected`).
    addr: std::net::IpAddr,
}

/// Who a removal keeps out of a room: the person, as far as the link says
/// who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bar {
    /// A staff account: every link minted for it (`Claims::staff_id`), so a
    /// fresh link from the conference's `join` does not bring them back.
    Staff(StaffId),
    /// One link, by the SHA-256 of its token: a patient or guest, whose link
    /// names no account. (A queue patient has exactly one link per call: a
    /// resumed ticket is handed the same link again.)
    Link([u8; 32]),
}

/// A patient's answers to the consent text, one per purpose (Law 91/2025:
/// consent is per purpose and never implied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub text_version: String,
    pub remote_examination: bool,
    pub third_parties: bool,
    pub recording: bool,
    /// Unix seconds, by the server's clock.
    pub at: u64,
}

#[derive(Debug)]
struct Member {
    info: ParticipantInfo,
    session: SessionId,
    /// Holds the chair's rights: the link's chair claim, minted for the
    /// staff member the room's scheduler named (`Room::named_chair`).
    chair: bool,
    /// The staff account the link was minted for.
    staff_id: Option<StaffId>,
    /// SHA-256 of the link's token: a removed participant's link is barred,
    /// and a join with the same link takes this place back (reconnect).
    token_digest: [u8; 32],
    /// Since when the connection is gone (the place is kept for the grace
    /// window); `session` is then the dead one, and sends to it are dropped.
    away_since: Option<Instant>,
    /// After a reconnect, until the client's first `offer`: what the media
    /// side still says about the old transport (in flight when it was
    /// removed) must not reach the new session.
    awaiting_offer: bool,
    /// The last `stats` accepted, and the window being aggregated.
    last_stats: Option<Instant>,
    quality: QualityWindow,
    /// A patient's latest answer on recording (staff: unused).
    recording_consent: bool,
}

impl Member {
    /// May admit, refuse, mute, remove, lock and name the secretary — when
    /// no chair is in the room (see `Room::moderator`).
    fn may_host(&self) -> bool {
        self.chair || self.info.role.is_host()
    }
}

/// A snapshot for the coordinator's console ([`Hub::live`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Live {
    pub queues: Vec<LiveQueue>,
    /// Open rooms with someone in them or waiting.
    pub rooms: Vec<LiveRoom>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LiveQueue {
    pub id: QueueId,
    pub name: String,
    pub facility: FacilityId,
    pub waiting: u32,
    pub offered: u32,
    pub calls: u32,
    pub doctors_available: u32,
    pub longest_wait: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LiveRoom {
    pub info: RoomInfo,
    pub in_room: usize,
    pub waiting: usize,
    pub locked: bool,
}

/// The longest chat message, in characters.
pub const MAX_CHAT_CHARS: usize = 2000;

#[derive(Debug)]
struct Room {
    info: RoomInfo,
    status: RoomStatus,
    members: BTreeMap<ParticipantId, Member>,
    /// Waiting to be admitted; ids grow, so this is arrival order.
    lobby: BTreeMap<ParticipantId, Member>,
    locked: bool,
    secretary: Option<ParticipantId>,
    /// The staff account the scheduler named to chair (conferences only).
    named_chair: Option<StaffId>,
    /// Who the chair removed: staff accounts, and links of those without one.
    barred: HashSet<Bar>,
    /// The facility's name and phone, for the end screen.
    contact: Option<FacilityContact>,
    /// A doctor or nurse has been in the room (or was before a restart):
    /// from then on, a room without any ends after `abandon_after`.
    staffed_once: bool,
    /// Since when no doctor or nurse is in the room (set by
    /// `handle_timeout`, which `poll_timeout` asks for at once).
    unstaffed_since: Option<Instant>,
    /// Whether (and since when, by whom) the room is recorded.
    recording: recording::RoomRecording,
}

impl Room {
    fn new(info: RoomInfo, status: RoomStatus) -> Room {
        Room {
            info,
            status,
            members: BTreeMap::new(),
            lobby: BTreeMap::new(),
            locked: false,
            secretary: None,
            named_chair: None,
            barred: HashSet::new(),
            contact: None,
            staffed_once: false,
            unstaffed_since: None,
            recording: recording::RoomRecording::default(),
        }
    }

    /// A doctor or nurse holds a place in the room (a dropped connection
    /// within its grace window still counts: they are on their way back).
    fn has_staff(&self) -> bool {
        self.members
            .values()
            .any(|m| matches!(m.info.role, Role::Doctor | Role::Nurse))
    }

    /// Whether `pid` may end the room for everyone: in a conference its
    /// chair, or with no chair in the room a doctor; in a visit its doctor.
    fn may_end(&self, pid: ParticipantId) -> bool {
        match self.chair() {
            Some(chair) => chair == pid,
            None => self
                .members
                .get(&pid)
                .is_some_and(|m| m.info.role == Role::Doctor),
        }
    }

    /// Whether a link with these claims carries the chair's rights here: the
    /// claim alone is not enough, the link must be the named chair's own.
    fn grants_chair(&self, claims: &Claims) -> bool {
        claims.chair && claims.staff_id.is_some() && claims.staff_id == self.named_chair
    }

    /// Whether the holder of a link (its claims, its token's digest) was
    /// removed from this room.
    fn bars(&self, claims: &Claims, token_digest: &[u8; 32]) -> bool {
        self.barred.contains(&Bar::Link(*token_digest))
            || claims
                .staff_id
                .is_some_and(|s| self.barred.contains(&Bar::Staff(s)))
    }

    /// The chair, when one is in the room.
    fn chair(&self) -> Option<ParticipantId> {
        self.members.values().find(|m| m.chair).map(|m| m.info.id)
    }

    /// Whether `pid` may moderate: the chair when present, otherwise any
    /// doctor (so that a visit, or a conference whose chair dropped, can
    /// still admit the patient).
    fn may_moderate(&self, pid: ParticipantId) -> bool {
        match self.chair() {
            Some(chair) => chair == pid,
            None => self.members.get(&pid).is_some_and(Member::may_host),
        }
    }

    fn state_msg(&self) -> ServerMsg {
        ServerMsg::RoomState {
            locked: self.locked,
            chair: self.chair(),
            secretary: self.secretary,
        }
    }
}

pub struct Hub {
    config: HubConfig,
    tokens: Arc<TokenKey>,
    sessions: HashMap<SessionId, Session>,
    rooms: HashMap<RoomId, Room>,
    /// Where each participant is, for messages from the media side.
    participants: HashMap<ParticipantId, RoomId>,
    next_participant: u64,
    out: VecDeque<Output>,
    /// The on-call queues (see `hub_queue.rs`).
    pub(crate) queues: QueueBook,
    /// Queue calls whose room exists, by ticket, and the ticket of each room.
    pub(crate) calls: HashMap<String, CallLinks>,
    pub(crate) room_calls: HashMap<RoomId, String>,
    pub(crate) ticket_key: aws_lc_rs::hmac::Key,
    pub(crate) ticket_counter: u64,
    /// Pre-call check rooms (`hub/check.rs`): also in `rooms`, never recorded.
    check_rooms: HashMap<RoomId, check::CheckRoom>,
    /// The Unix time (seconds) of the latest input or timeout, for what is
    /// stamped from paths that only get an `Instant` (recording's `since`).
    unix_now: u64,
    /// The `Instant` that went with `unix_now`.
    unix_at: Option<Instant>,
}

impl Hub {
    pub fn new(config: HubConfig, tokens: Arc<TokenKey>) -> Hub {
        Hub {
            config,
            tokens,
            sessions: HashMap::new(),
            rooms: HashMap::new(),
            participants: HashMap::new(),
            next_participant: 1,
            out: VecDeque::new(),
            queues: QueueBook::new(QueueConfig::default()),
            calls: HashMap::new(),
            room_calls: HashMap::new(),
            ticket_key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &[0; 32]),
            ticket_counter: 0,
            check_rooms: HashMap::new(),
            unix_now: 0,
            unix_at: None,
        }
    }

    /// Sets the key queue tickets are derived from. The server passes fresh
    /// random bytes; without it tickets are predictable (fine in tests only).
    pub fn with_ticket_key(mut self, key: [u8; 32]) -> Hub {
        self.ticket_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);
        self
    }

    pub(crate) fn session_addr(&self, sid: SessionId) -> Option<std::net::IpAddr> {
        self.sessions.get(&sid).map(|s| s.addr)
    }

    pub(crate) fn session_consents(&self, sid: SessionId) -> bool {
        self.sessions
            .get(&sid)
            .and_then(|s| s.consent.as_ref())
            .is_some_and(|c| c.remote_examination)
    }

    /// Sets `on_call` on every session of `staff`; returns those sessions.
    pub(crate) fn set_on_call(&mut self, staff: StaffId, on_call: &[QueueId]) -> Vec<SessionId> {
        let mut sids = Vec::new();
        for (sid, s) in self.sessions.iter_mut() {
            if let Some(info) = s.staff.as_mut().filter(|i| i.staff.id == staff) {
                info.on_call = on_call.to_vec();
                sids.push(*sid);
            }
        }
        sids
    }

    /// Sessions opened with a staff sign-in.
    pub(crate) fn staff_sessions(&self) -> impl Iterator<Item = (SessionId, &StaffInfo)> {
        self.sessions
            .iter()
            .filter_map(|(sid, s)| s.staff.as_ref().map(|i| (*sid, i)))
    }

    pub(crate) fn session_staff(&self, sid: SessionId) -> Option<StaffInfo> {
        self.sessions.get(&sid).and_then(|s| s.staff.clone())
    }

    pub(crate) fn reply(&mut self, sid: SessionId, code: ErrorCode, message: &str, ty: &str) {
        self.reply_error(sid, code, message.to_owned(), Some(ty));
    }

    pub(crate) fn push_send(&mut self, sid: SessionId, msg: ServerMsg) {
        self.out.push_back(Output::Send(sid, msg));
    }

    pub(crate) fn push_output(&mut self, o: Output) {
        self.out.push_back(o);
    }

    /// The on-call queues, for the API and the tests.
    pub fn queue_book(&self) -> &QueueBook {
        &self.queues
    }

    /// Feeds one input. `now` drives timeouts; `now_unix` (seconds) is
    /// compared with token expiry.
    pub fn handle(&mut self, now: Instant, now_unix: u64, input: Input) {
        self.unix_now = now_unix;
        self.unix_at = Some(now);
        match input {
            Input::Connected(sid, addr) => {
                self.sessions.insert(
                    sid,
                    Session {
                        state: SessionState::AwaitingHello,
                        last_heard: now,
                        consent: None,
                        staff: None,
                        addr,
                    },
                );
            }
            Input::Frame(sid, frame) => self.on_frame(now, now_unix, sid, frame),
            Input::Disconnected(sid) => {
                self.queues
                    .handle(now, QueueInput::SessionClosed { session: sid });
                self.pump_queues(now);
                if let Some(session) = self.sessions.remove(&sid) {
                    match session.state {
                        SessionState::Joined { room, participant } => {
                            self.hold_place(now, &room, participant)
                        }
                        SessionState::Waiting { room, participant } => {
                            self.remove_waiting(&room, participant)
                        }
                        _ => {}
                    }
                }
            }
            Input::RoomOpened(info, status) => {
                self.rooms
                    .entry(info.id.clone())
                    .or_insert_with(|| Room::new(info, status));
            }
            Input::EndRoom(room_id) => {
                self.end_room(&room_id, EndReason::Ended, None);
                self.queue_room_ended(now, &room_id);
            }
            Input::RoomContact { room, contact } => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.contact = Some(contact);
                }
            }
            Input::Attended(room) => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.staffed_once = true;
                }
            }
            Input::ChairNamed { room, staff } => self.name_chair(&room, staff),
            Input::Barred { room, bar } => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.barred.insert(bar);
                }
            }
            Input::StaffRevoked(staff_id) => {
                let sids: Vec<SessionId> = self
                    .sessions
                    .iter()
                    .filter(|(_, s)| s.staff.as_ref().is_some_and(|i| i.staff.id == staff_id))
                    .map(|(sid, _)| *sid)
                    .collect();
                for sid in sids {
                    if let Some(s) = self.sessions.get_mut(&sid) {
                        s.staff = None;
                    }
                    self.queues
                        .handle(now, QueueInput::SessionClosed { session: sid });
                    self.reply_error(
                        sid,
                        ErrorCode::Unauthorized,
                        "signed out: sign in again".into(),
                        None,
                    );
                    self.out.push_back(Output::Close(sid));
                }
                self.pump_queues(now);
            }
            Input::OnCallChanged { staff, on_call } => self.on_call_changed(now, staff, on_call),
            Input::Identified(sid, staff) => {
                if let Some(s) = self.sessions.get_mut(&sid) {
                    s.staff = Some(staff);
                }
            }
            Input::QueueOpened {
                queue,
                name,
                facility,
            } => {
                self.queues.handle(
                    now,
                    QueueInput::OpenQueue {
                        queue,
                        name,
                        facility,
                    },
                );
                self.pump_queues(now);
            }
            Input::CallReady {
                links,
                patient,
                doctor,
            } => self.on_call_ready(now, links, patient, doctor),
            Input::FromMedia(pid, msg) => {
                if let Some(sid) = self.media_session_of(pid) {
                    self.out.push_back(Output::Send(sid, msg));
                }
            }
            Input::RecordingFailed { room, reason } => self.recording_failed(&room, reason),
            Input::MediaGone(pid) => {
                // The transport died (the SFU has dropped it) but the WebSocket
                // lives on: the client rejoins (a new session with its link
                // takes its place back, with a fresh transport).
                if let Some(sid) = self.media_session_of(pid) {
                    self.out.push_back(Output::Send(
                        sid,
                        ServerMsg::error(ErrorCode::MediaFailed, "media transport failed"),
                    ));
                }
            }
        }
    }

    /// Closes sessions that have been silent too long. Call at least once a
    /// second; returns when it next needs calling.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Instant> {
        if let Some(at) = self.unix_at.filter(|at| now > *at) {
            self.unix_now += (now - at).as_secs();
            // Keep the fraction of a second for next time.
            self.unix_at = Some(at + Duration::from_secs((now - at).as_secs()));
        }
        let idle = self.config.idle_timeout;
        let stale: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| !matches!(s.state, SessionState::Closing))
            .filter(|(_, s)| now.saturating_duration_since(s.last_heard) >= idle)
            .map(|(sid, _)| *sid)
            .collect();
        for sid in stale {
            self.fail(
                sid,
                ErrorCode::IdleTimeout,
                format!("nothing heard for {} s", idle.as_secs()),
                None,
            );
            // The client never said goodbye: its place is kept for a
            // reconnect, then it is "disconnected", not "left".
            let old = self
                .sessions
                .get_mut(&sid)
                .map(|s| std::mem::replace(&mut s.state, SessionState::Closing));
            match old {
                Some(SessionState::Joined { room, participant }) => {
                    self.hold_place(now, &room, participant)
                }
                Some(SessionState::Waiting { room, participant }) => {
                    self.remove_waiting(&room, participant)
                }
                _ => {}
            }
        }
        let grace = self.config.reconnect_grace;
        let expired: Vec<(RoomId, ParticipantId)> = self
            .rooms
            .iter()
            .flat_map(|(id, r)| {
                r.members
                    .values()
                    .filter(|m| m.away_since.is_some_and(|t| now >= t + grace))
                    .map(move |m| (id.clone(), m.info.id))
            })
            .collect();
        for (room, pid) in expired {
            self.remove_member(&room, pid, LeaveReason::Disconnected);
        }
        let abandon_after = self.config.abandon_after;
        let mut abandoned = Vec::new();
        for (id, r) in self.rooms.iter_mut() {
            if r.status == RoomStatus::Ended || !r.staffed_once || r.has_staff() {
                r.unstaffed_since = None;
                continue;
            }
            let since = *r.unstaffed_since.get_or_insert(now);
            if now >= since + abandon_after {
                abandoned.push(id.clone());
            }
        }
        for room in abandoned {
            self.out.push_back(Output::Record(RecordEvent::Ended {
                room: room.clone(),
                reason: EndReason::Abandoned,
                by: None,
            }));
            self.end_room(&room, EndReason::Abandoned, None);
            self.queue_room_ended(now, &room);
        }
        let abandon_deadline = self
            .rooms
            .values()
            .filter_map(|r| r.unstaffed_since.map(|t| t + abandon_after))
            .min();
        let queue_deadline = self.queues.handle_timeout(now);
        self.pump_queues(now);
        let check_deadline = self.expire_check_rooms(now);
        let away_deadline = self
            .rooms
            .values()
            .flat_map(|r| r.members.values())
            .filter_map(|m| m.away_since.map(|t| t + grace))
            .min();
        self.sessions
            .values()
            .filter(|s| !matches!(s.state, SessionState::Closing))
            .map(|s| s.last_heard + idle)
            .chain(queue_deadline)
            .chain(away_deadline)
            .chain(abandon_deadline)
            .chain(check_deadline)
            .min()
    }

    /// When [`Hub::handle_timeout`] must next be called, from the state as it
    /// is now (after any [`Hub::handle`]): a session's idle timeout, a kept
    /// place's reconnect grace, a room's abandonment, a queue timer, a check
    /// room. `None`: nothing is timed. A time at or before `now` means at
    /// once: some clocks (a room that just lost its last doctor, a check
    /// room just entered) start at the next `handle_timeout`, which is how
    /// they keep one definition of "since".
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        let idle = self.config.idle_timeout;
        let grace = self.config.reconnect_grace;
        let abandon_after = self.config.abandon_after;
        let sessions = self
            .sessions
            .values()
            .filter(|s| !matches!(s.state, SessionState::Closing))
            .map(|s| s.last_heard + idle);
        let away = self
            .rooms
            .values()
            .flat_map(|r| r.members.values())
            .filter_map(|m| m.away_since.map(|t| t + grace));
        let abandon = self.rooms.values().filter_map(|r| {
            let unstaffed = r.status != RoomStatus::Ended && r.staffed_once && !r.has_staff();
            match (unstaffed, r.unstaffed_since) {
                (true, Some(since)) => Some(since + abandon_after),
                // The clock is started, or stopped, by `handle_timeout`.
                (true, None) | (false, Some(_)) => Some(now),
                (false, None) => None,
            }
        });
        sessions
            .chain(away)
            .chain(abandon)
            .chain(self.queues.next_deadline(now))
            .chain(self.check_rooms_deadline(now))
            .min()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        loop {
            match self.out.pop_front() {
                // A check room is not a consultation: nothing for the record.
                Some(Output::Record(ev)) if self.is_check_record(&ev) => continue,
                Some(o) => return Some(o),
                None => {
                    self.forget_ended_checks();
                    return None;
                }
            }
        }
    }

    /// Whether a token would be accepted for `room` now (for the join page's
    /// HTTP check): the same checks, in the same order, as `join`.
    pub fn check_token(
        &self,
        room: &RoomId,
        token: &str,
        now_unix: u64,
    ) -> Result<(crate::token::Claims, RoomInfo), (ErrorCode, String)> {
        let claims = self
            .tokens
            .open_for_room(token, room, now_unix)
            .map_err(|e| (e.code(), e.to_string()))?;
        let Some(r) = self.rooms.get(room) else {
            return Err((ErrorCode::RoomNotFound, "no such consultation".into()));
        };
        if r.status == RoomStatus::Ended {
            return Err((ErrorCode::RoomEnded, "the consultation has ended".into()));
        }
        if r.bars(&claims, &sha256(token.as_bytes())) {
            return Err((
                ErrorCode::Removed,
                "the chair removed you from this consultation".into(),
            ));
        }
        Ok((claims, r.info.clone()))
    }

    /// The staff members with a signed-in WebSocket open, for the server's
    /// roster refresh.
    pub fn staff_online(&self) -> Vec<StaffId> {
        let mut ids: Vec<StaffId> = self
            .sessions
            .values()
            .filter_map(|s| s.staff.as_ref().map(|i| i.staff.id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Who is in each open room, for the API.
    pub fn rooms(&self) -> impl Iterator<Item = (&RoomInfo, RoomStatus, Vec<ParticipantInfo>)> {
        self.rooms.values().map(|r| {
            (
                &r.info,
                r.status,
                r.members.values().map(|m| m.info.clone()).collect(),
            )
        })
    }

    /// What a coordinator's console shows: every queue's line and every
    /// open room's occupancy, without names.
    pub fn live(&self, now: Instant) -> Live {
        let queues = self
            .queues
            .snapshots()
            .into_iter()
            .map(|s| {
                let longest = self
                    .queues
                    .line(s.queue)
                    .iter()
                    .filter_map(|t| self.queues.patient(t))
                    .map(|p| now.saturating_duration_since(p.joined_at))
                    .max()
                    .unwrap_or_default();
                LiveQueue {
                    id: s.queue,
                    name: s.name,
                    facility: s.facility,
                    waiting: s.waiting,
                    offered: s.offered,
                    calls: s.calls,
                    doctors_available: s.doctors_available,
                    longest_wait: longest,
                }
            })
            .collect();
        let rooms = self
            .rooms
            .values()
            .filter(|r| {
                r.status == RoomStatus::Open
                    && !(r.members.is_empty() && r.lobby.is_empty())
                    && !self.is_check_room(&r.info.id)
            })
            .map(|r| LiveRoom {
                info: r.info.clone(),
                in_room: r.members.len(),
                waiting: r.lobby.len(),
                locked: r.locked,
            })
            .collect();
        Live { queues, rooms }
    }

    pub fn participants_in(&self, room: &RoomId) -> Vec<ParticipantInfo> {
        self.rooms
            .get(room)
            .map(|r| r.members.values().map(|m| m.info.clone()).collect())
            .unwrap_or_default()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Ends every session, for a clean shutdown. Places kept for a
    /// reconnect go too: their presence ends now, so that the record is
    /// closed by a clean stop (a restart then finds no attendance open and
    /// does not take the rooms for crashed).
    pub fn shutdown(&mut self) {
        self.recording_shutdown();
        let sids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for sid in sids {
            self.fail(
                sid,
                ErrorCode::ServerShutdown,
                "the server is stopping".into(),
                None,
            );
            self.drop_session(sid, LeaveReason::Disconnected);
        }
        let away: Vec<(RoomId, ParticipantId)> = self
            .rooms
            .iter()
            .flat_map(|(id, r)| {
                r.members
                    .values()
                    .filter(|m| m.away_since.is_some())
                    .map(move |m| (id.clone(), m.info.id))
            })
            .collect();
        for (room, pid) in away {
            self.remove_member(&room, pid, LeaveReason::Disconnected);
        }
    }

    /// Who is waiting to be admitted to a room, oldest first.
    pub fn waiting_in(&self, room: &RoomId) -> Vec<ParticipantInfo> {
        self.rooms
            .get(room)
            .map(|r| r.lobby.values().map(|m| m.info.clone()).collect())
            .unwrap_or_default()
    }

    /// The session that should hear what the media side says about `pid`:
    /// none while the participant is away or, after a reconnect, before
    /// their new transport exists.
    fn media_session_of(&self, pid: ParticipantId) -> Option<SessionId> {
        let room = self.participants.get(&pid)?;
        let m = self.rooms.get(room)?.members.get(&pid)?;
        (m.away_since.is_none() && !m.awaiting_offer).then_some(m.session)
    }

    /// Whether a participant is in a room but their connection is gone.
    pub fn is_reconnecting(&self, pid: ParticipantId) -> bool {
        self.participants
            .get(&pid)
            .and_then(|room| self.rooms.get(room))
            .and_then(|r| r.members.get(&pid))
            .is_some_and(|m| m.away_since.is_some())
    }

    /// A joined participant's connection is gone without a `leave`: keep
    /// their place for the grace window (tell the others they are
    /// reconnecting), or, with no grace, take them out now.
    fn hold_place(&mut self, now: Instant, room_id: &RoomId, pid: ParticipantId) {
        let grace = !self.config.reconnect_grace.is_zero();
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let open = room.status == RoomStatus::Open;
        let Some(member) = room.members.get_mut(&pid) else {
            return;
        };
        if !grace || !open {
            self.remove_member(room_id, pid, LeaveReason::Disconnected);
            return;
        }
        if member.away_since.is_some() {
            return;
        }
        member.away_since = Some(now);
        // The transport is left to the SFU: if only the WebSocket broke, the
        // others keep hearing them until the reconnect replaces it; if the
        // network is gone, ICE times out there on its own.
        let others: Vec<SessionId> = room
            .members
            .values()
            .filter(|m| m.info.id != pid)
            .map(|m| m.session)
            .collect();
        for other in others {
            self.send(
                other,
                ServerMsg::ParticipantReconnecting {
                    participant_id: pid,
                },
            );
        }
        self.out.push_back(Output::Record(RecordEvent::LinkLost {
            room: room_id.clone(),
            participant: pid,
        }));
    }

    /// A join whose link is that of someone in the room: the new session
    /// takes the place back (same id, role, chair, mute state). A live old
    /// session is told `replaced` and closed.
    fn resume(&mut self, sid: SessionId, room_id: &RoomId, pid: ParticipantId) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(member) = room.members.get_mut(&pid) else {
            return;
        };
        let old_sid = std::mem::replace(&mut member.session, sid);
        let was_away = member.away_since.take().is_some();
        member.awaiting_offer = true;
        let info = member.info.clone();
        let is_host = member.may_host();
        let others: Vec<ParticipantInfo> = room
            .members
            .values()
            .filter(|m| m.info.id != pid)
            .map(|m| m.info.clone())
            .collect();
        let others_sids: Vec<SessionId> = room
            .members
            .values()
            .filter(|m| m.info.id != pid)
            .map(|m| m.session)
            .collect();
        let still_away: Vec<ParticipantId> = room
            .members
            .values()
            .filter(|m| m.away_since.is_some())
            .map(|m| m.info.id)
            .collect();
        let state = room.state_msg();
        let room_info = room.info.clone();
        let waiting: Vec<ParticipantInfo> = room.lobby.values().map(|m| m.info.clone()).collect();
        if !was_away && old_sid != sid {
            self.close_replaced(old_sid);
        }
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.state = SessionState::Joined {
                room: room_id.clone(),
                participant: pid,
            };
        }
        // The old transport goes; the client's first offer makes a new one.
        self.out
            .push_back(Output::Media(MediaCommand::Remove { participant: pid }));
        self.send(
            sid,
            ServerMsg::Joined {
                room: room_info,
                you: info,
                participants: others,
                resumed: true,
            },
        );
        if state
            != (ServerMsg::RoomState {
                locked: false,
                chair: None,
                secretary: None,
            })
        {
            self.send(sid, state);
        }
        for away in still_away {
            self.send(
                sid,
                ServerMsg::ParticipantReconnecting {
                    participant_id: away,
                },
            );
        }
        if is_host {
            self.send(sid, ServerMsg::Lobby { waiting });
        }
        if was_away {
            for other in others_sids {
                self.send(
                    other,
                    ServerMsg::ParticipantReconnected {
                        participant_id: pid,
                    },
                );
            }
        }
        self.out.push_back(Output::Record(RecordEvent::LinkBack {
            room: room_id.clone(),
            participant: pid,
            replaced: !was_away,
        }));
        self.tell_recording(room_id, sid);
    }

    /// A second session with the link of someone waiting in the lobby takes
    /// their place in the line; the first is told `replaced`.
    fn resume_waiting(&mut self, sid: SessionId, room_id: &RoomId, pid: ParticipantId) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(member) = room.lobby.get_mut(&pid) else {
            return;
        };
        let old_sid = std::mem::replace(&mut member.session, sid);
        let (info, room_info) = (member.info.clone(), room.info.clone());
        self.close_replaced(old_sid);
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.state = SessionState::Waiting {
                room: room_id.clone(),
                participant: pid,
            };
        }
        self.send(
            sid,
            ServerMsg::Waiting {
                room: room_info,
                you: info,
            },
        );
        self.tell_recording(room_id, sid);
    }

    /// A participant's `stats`: checked, forwarded to the room's moderators
    /// (the chair and doctors) with a grade, and aggregated for the record.
    fn on_stats(
        &mut self,
        now: Instant,
        now_unix: u64,
        sid: SessionId,
        room_id: &RoomId,
        pid: ParticipantId,
        stats: LinkStats,
    ) {
        if let Err(why) = stats.validate() {
            self.reply(sid, ErrorCode::InvalidMessage, why, "stats");
            return;
        }
        let Some(r) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(m) = r.members.get_mut(&pid) else {
            return;
        };
        if m.last_stats
            .is_some_and(|t| now.saturating_duration_since(t) < STATS_MIN_INTERVAL)
        {
            return;
        }
        let span = m
            .last_stats
            .map(|t| now.saturating_duration_since(t).min(STATS_MAX_SPAN))
            .unwrap_or_default();
        m.last_stats = Some(now);
        let mut flushed = None;
        if m.quality.samples > 0 && now_unix >= m.quality.from + QUALITY_WINDOW_SECS {
            flushed = Some(std::mem::take(&mut m.quality));
        }
        m.quality.add(now_unix, span, &stats);
        let hosts: Vec<SessionId> = r
            .members
            .values()
            .filter(|m| m.may_host() && m.away_since.is_none())
            .map(|m| m.session)
            .collect();
        let msg = ServerMsg::LinkQuality {
            participant_id: pid,
            stats,
            grade: stats.grade(),
        };
        for h in hosts {
            self.send(h, msg.clone());
        }
        if let Some(window) = flushed {
            self.out.push_back(Output::Record(RecordEvent::LinkQuality {
                room: room_id.clone(),
                participant: pid,
                window,
            }));
        }
    }

    fn on_frame(
        &mut self,
        now: Instant,
        now_unix: u64,
        sid: SessionId,
        frame: Result<ClientMsg, ProtocolError>,
    ) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        session.last_heard = now;
        let msg = match frame {
            Ok(msg) => msg,
            Err(e) => {
                self.reply_error(sid, e.code, e.detail, None);
                return;
            }
        };
        let ty = msg.type_name();
        match (&session.state, msg) {
            (SessionState::Closing, _) => {}
            (SessionState::AwaitingHello, ClientMsg::Hello { versions, .. }) => {
                let chosen = versions
                    .iter()
                    .filter(|v| SUPPORTED_VERSIONS.contains(v))
                    .max()
                    .copied();
                match chosen {
                    Some(version) => {
                        session.state = SessionState::Negotiated;
                        self.send(
                            sid,
                            ServerMsg::Welcome {
                                version,
                                server: self.config.server_name.clone(),
                                keepalive_interval_ms: KEEPALIVE_INTERVAL_MS,
                                idle_timeout_ms: self.config.idle_timeout.as_millis() as u64,
                            },
                        );
                        self.send_queue_counts(sid);
                    }
                    None => self.fail(
                        sid,
                        ErrorCode::UnsupportedVersion,
                        format!("this server speaks protocol versions {SUPPORTED_VERSIONS:?}"),
                        Some(ty),
                    ),
                }
            }
            (SessionState::AwaitingHello, _) => self.reply_error(
                sid,
                ErrorCode::HelloRequired,
                "the first message must be hello".into(),
                Some(ty),
            ),
            (_, ClientMsg::Hello { .. }) => self.reply_error(
                sid,
                ErrorCode::AlreadyNegotiated,
                "hello was already sent".into(),
                Some(ty),
            ),
            (_, ClientMsg::Ping { seq }) => self.send(sid, ServerMsg::Pong { seq }),
            (_, msg) if msg.is_queue() => self.on_queue_msg(now, sid, msg),
            (
                _,
                ClientMsg::Consent {
                    text_version,
                    remote_examination,
                    third_parties,
                    recording,
                },
            ) => {
                if text_version.is_empty() || text_version.len() > 64 {
                    self.reply_error(
                        sid,
                        ErrorCode::InvalidMessage,
                        "text_version must be 1 to 64 characters".into(),
                        Some(ty),
                    );
                    return;
                }
                let consent = Consent {
                    text_version: text_version.clone(),
                    remote_examination,
                    third_parties,
                    recording,
                    at: now_unix,
                };
                session.consent = Some(consent.clone());
                // Already in a room (or its lobby): a patient's change of
                // mind is recorded now. Staff have no consent to give.
                if let SessionState::Waiting { room, participant }
                | SessionState::Joined { room, participant } = &session.state
                {
                    let (room, participant) = (room.clone(), *participant);
                    let is_patient = self.rooms.get(&room).is_some_and(|r| {
                        r.members
                            .get(&participant)
                            .or_else(|| r.lobby.get(&participant))
                            .is_some_and(|m| m.info.role == Role::Patient)
                    });
                    if is_patient {
                        self.out.push_back(Output::Record(RecordEvent::Consent {
                            room: room.clone(),
                            participant,
                            consent,
                        }));
                        self.recording_consent_changed(&room, participant, recording);
                    }
                }
                self.send(
                    sid,
                    ServerMsg::ConsentRecorded {
                        text_version,
                        at: now_unix,
                    },
                );
            }
            (SessionState::Negotiated, ClientMsg::Join { room, token }) => {
                self.join(now_unix, sid, room, &token)
            }
            (
                SessionState::Joined { .. } | SessionState::Waiting { .. },
                ClientMsg::Join { .. },
            ) => self.reply_error(
                sid,
                ErrorCode::AlreadyJoined,
                "this session has already joined a room".into(),
                Some(ty),
            ),
            (SessionState::Negotiated, _) => self.reply_error(
                sid,
                ErrorCode::NotJoined,
                "join a room first".into(),
                Some(ty),
            ),
            (SessionState::Waiting { room, participant }, ClientMsg::Leave {}) => {
                let (room, pid) = (room.clone(), *participant);
                self.remove_waiting(&room, pid);
                if let Some(s) = self.sessions.get_mut(&sid) {
                    s.state = SessionState::Closing;
                }
                self.out.push_back(Output::Close(sid));
            }
            (SessionState::Waiting { .. }, _) => self.reply_error(
                sid,
                ErrorCode::NotJoined,
                "you are waiting to be admitted".into(),
                Some(ty),
            ),
            (SessionState::Joined { room, participant }, msg) => {
                let (room, pid) = (room.clone(), *participant);
                self.in_room(now, now_unix, sid, room, pid, msg);
            }
        }
    }

    fn join(&mut self, now_unix: u64, sid: SessionId, room_id: RoomId, token: &str) {
        let claims = match self.tokens.open_for_room(token, &room_id, now_unix) {
            Ok(c) => c,
            Err(e) => {
                let code = e.code();
                if !matches!(e, TokenError::Malformed) {
                    self.out
                        .push_back(Output::Record(RecordEvent::TokenRefused {
                            room: room_id.clone(),
                            code,
                        }));
                }
                self.reply_error(sid, code, e.to_string(), Some("join"));
                return;
            }
        };
        let Some(room) = self.rooms.get_mut(&room_id) else {
            self.reply_error(
                sid,
                ErrorCode::RoomNotFound,
                "no such consultation".into(),
                Some("join"),
            );
            return;
        };
        if room.status == RoomStatus::Ended {
            // room_ended is fatal (ErrorCode::is_fatal): the close follows.
            self.fail(
                sid,
                ErrorCode::RoomEnded,
                "the consultation has ended".into(),
                Some("join"),
            );
            return;
        }
        let token_digest = sha256(token.as_bytes());
        if room.bars(&claims, &token_digest) {
            self.fail(
                sid,
                ErrorCode::Removed,
                "the chair removed you from this consultation".into(),
                Some("join"),
            );
            return;
        }
        // The same link as someone in the room (or its lobby): a reconnect,
        // or the link opened a second time. Their place is theirs: neither a
        // lock nor a full room keeps them out.
        let returning = room
            .members
            .values()
            .find(|m| m.token_digest == token_digest)
            .map(|m| (m.info.id, true))
            .or_else(|| {
                room.lobby
                    .values()
                    .find(|m| m.token_digest == token_digest)
                    .map(|m| (m.info.id, false))
            });
        let chair = room.grants_chair(&claims);
        if room.locked && !chair && returning.is_none() {
            self.reply_error(
                sid,
                ErrorCode::RoomLocked,
                "the chair has locked the room; try again later".into(),
                Some("join"),
            );
            return;
        }
        if room.members.len() >= self.config.max_participants && returning.is_none() {
            let max = self.config.max_participants;
            self.reply_error(
                sid,
                ErrorCode::RoomFull,
                format!("the room has its maximum of {max} participants"),
                Some("join"),
            );
            return;
        }
        if room.members.len() + room.lobby.len() >= self.config.max_participants * 2
            && returning.is_none()
        {
            // The lobby is bounded too: a leaked patient link must not let
            // anyone fill the server's memory with waiting sessions.
            self.reply_error(
                sid,
                ErrorCode::RoomFull,
                "too many people are waiting for this room".into(),
                Some("join"),
            );
            return;
        }
        let consent = self.sessions.get(&sid).and_then(|s| s.consent.clone());
        if claims.role == Role::Patient && !consent.as_ref().is_some_and(|c| c.remote_examination) {
            self.reply_error(
                sid,
                ErrorCode::ConsentRequired,
                "remote examination needs the patient's consent: send consent first".into(),
                Some("join"),
            );
            return;
        }
        if let Some((pid, in_room)) = returning {
            if let Some(consent) = consent.clone().filter(|_| claims.role == Role::Patient) {
                self.out.push_back(Output::Record(RecordEvent::Consent {
                    room: room_id.clone(),
                    participant: pid,
                    consent,
                }));
            }
            if in_room {
                self.resume(sid, &room_id, pid);
            } else {
                self.resume_waiting(sid, &room_id, pid);
            }
            if claims.role == Role::Patient {
                let recording = consent.as_ref().is_some_and(|c| c.recording);
                self.recording_consent_changed(&room_id, pid, recording);
            }
            return;
        }
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        let pid = ParticipantId(self.next_participant);
        self.next_participant += 1;
        let recording_consent = consent.as_ref().is_some_and(|c| c.recording);
        if let Some(consent) = consent.filter(|_| claims.role == Role::Patient) {
            self.out.push_back(Output::Record(RecordEvent::Consent {
                room: room_id.clone(),
                participant: pid,
                consent,
            }));
        }
        let pre_admitted = claims.pre_admitted;
        let info = ParticipantInfo {
            id: pid,
            name: claims.name,
            role: claims.role,
            facility: claims.facility,
            licence_number: claims.licence_number,
            audio_muted: false,
            video_muted: false,
        };
        let member = Member {
            info: info.clone(),
            session: sid,
            chair,
            staff_id: claims.staff_id,
            token_digest,
            away_since: None,
            awaiting_offer: false,
            last_stats: None,
            quality: QualityWindow::default(),
            recording_consent,
        };
        self.participants.insert(pid, room_id.clone());
        if info.role.waits_in_lobby() && !pre_admitted && !chair {
            room.lobby.insert(pid, member);
            let room_info = room.info.clone();
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.state = SessionState::Waiting {
                    room: room_id.clone(),
                    participant: pid,
                };
            }
            self.send(
                sid,
                ServerMsg::Waiting {
                    room: room_info,
                    you: info.clone(),
                },
            );
            self.out.push_back(Output::Record(RecordEvent::Waiting {
                room: room_id.clone(),
                participant: info,
            }));
            self.announce_lobby(&room_id);
            // Told before they enter.
            self.tell_recording(&room_id, sid);
        } else {
            self.enter(&room_id, member);
        }
    }

    /// Puts a participant into the room proper: `joined` to them,
    /// `participant_joined` to the others, and the lobby to a new host.
    fn enter(&mut self, room_id: &RoomId, member: Member) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let (sid, info) = (member.session, member.info.clone());
        let pid = info.id;
        let chair_before = room.chair();
        let others: Vec<ParticipantInfo> = room.members.values().map(|m| m.info.clone()).collect();
        let others_sids: Vec<SessionId> = room.members.values().map(|m| m.session).collect();
        let away_ids: Vec<ParticipantId> = room
            .members
            .values()
            .filter(|m| m.away_since.is_some())
            .map(|m| m.info.id)
            .collect();
        let is_host = member.may_host();
        if matches!(member.info.role, Role::Doctor | Role::Nurse) {
            room.staffed_once = true;
            room.unstaffed_since = None;
        }
        room.members.insert(pid, member);
        let state = room.state_msg();
        let chair_changed = room.chair() != chair_before;
        let room_info = room.info.clone();
        let waiting: Vec<ParticipantInfo> = room.lobby.values().map(|m| m.info.clone()).collect();
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.state = SessionState::Joined {
                room: room_id.clone(),
                participant: pid,
            };
        }
        self.send(
            sid,
            ServerMsg::Joined {
                room: room_info,
                you: info.clone(),
                participants: others,
                resumed: false,
            },
        );
        // Clients start from "unlocked, no chair, no secretary": only a
        // room that differs says so.
        if state
            != (ServerMsg::RoomState {
                locked: false,
                chair: None,
                secretary: None,
            })
        {
            self.send(sid, state.clone());
        }
        for away in away_ids {
            self.send(
                sid,
                ServerMsg::ParticipantReconnecting {
                    participant_id: away,
                },
            );
        }
        if is_host {
            self.send(sid, ServerMsg::Lobby { waiting });
        }
        for other in others_sids {
            self.send(
                other,
                ServerMsg::ParticipantJoined {
                    participant: info.clone(),
                },
            );
            if chair_changed {
                self.send(other, state.clone());
            }
        }
        self.out.push_back(Output::Record(RecordEvent::Joined {
            room: room_id.clone(),
            participant: info,
        }));
        self.recording_entered(room_id, sid);
    }

    /// Sends the lobby list to every host in the room.
    fn announce_lobby(&mut self, room_id: &RoomId) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        let waiting: Vec<ParticipantInfo> = room.lobby.values().map(|m| m.info.clone()).collect();
        let hosts: Vec<SessionId> = room
            .members
            .values()
            .filter(|m| m.may_host())
            .map(|m| m.session)
            .collect();
        for h in hosts {
            self.send(
                h,
                ServerMsg::Lobby {
                    waiting: waiting.clone(),
                },
            );
        }
    }

    fn remove_waiting(&mut self, room_id: &RoomId, pid: ParticipantId) {
        self.participants.remove(&pid);
        let removed = self
            .rooms
            .get_mut(room_id)
            .and_then(|r| r.lobby.remove(&pid))
            .is_some();
        if removed {
            self.announce_lobby(room_id);
        }
    }

    /// A host's `admit` or `refuse`.
    fn decide(
        &mut self,
        sid: SessionId,
        room_id: &RoomId,
        host: ParticipantId,
        target: ParticipantId,
        admit: bool,
    ) {
        let ty = if admit { "admit" } else { "refuse" };
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        if !room.may_moderate(host) {
            self.reply_error(
                sid,
                ErrorCode::Forbidden,
                "only the chair, or a doctor when no chair is present, can admit or refuse".into(),
                Some(ty),
            );
            return;
        }
        if admit && room.members.len() >= self.config.max_participants {
            let max = self.config.max_participants;
            self.reply_error(
                sid,
                ErrorCode::RoomFull,
                format!("the room has its maximum of {max} participants"),
                Some(ty),
            );
            return;
        }
        let Some(waiting) = room.lobby.remove(&target) else {
            self.reply_error(
                sid,
                ErrorCode::NotWaiting,
                format!("participant {target} is not waiting"),
                Some(ty),
            );
            return;
        };
        if admit {
            self.out.push_back(Output::Record(RecordEvent::Admitted {
                room: room_id.clone(),
                participant: target,
                by: host,
            }));
            self.enter(room_id, waiting);
        } else {
            self.participants.remove(&target);
            self.out.push_back(Output::Record(RecordEvent::Refused {
                room: room_id.clone(),
                participant: target,
                by: host,
            }));
            self.fail(
                waiting.session,
                ErrorCode::Refused,
                "the doctor did not admit you".into(),
                None,
            );
            if let Some(s) = self.sessions.get_mut(&waiting.session) {
                s.state = SessionState::Closing;
            }
        }
        self.announce_lobby(room_id);
    }

    fn in_room(
        &mut self,
        now: Instant,
        now_unix: u64,
        sid: SessionId,
        room: RoomId,
        pid: ParticipantId,
        msg: ClientMsg,
    ) {
        match msg {
            ClientMsg::Offer { sdp } => {
                // The client's transport after a reconnect is this offer's.
                if let Some(m) = self
                    .rooms
                    .get_mut(&room)
                    .and_then(|r| r.members.get_mut(&pid))
                {
                    m.awaiting_offer = false;
                }
                self.out.push_back(Output::Media(MediaCommand::Offer {
                    room,
                    participant: pid,
                    sdp,
                }))
            }
            ClientMsg::Stats { stats } => self.on_stats(now, now_unix, sid, &room, pid, stats),
            ClientMsg::AudioOnly { on } => {
                self.out.push_back(Output::Media(MediaCommand::AudioOnly {
                    participant: pid,
                    on,
                }))
            }
            ClientMsg::Answer { sdp } => self.out.push_back(Output::Media(MediaCommand::Answer {
                participant: pid,
                sdp,
            })),
            ClientMsg::Mute { kind, muted } => {
                let Some(r) = self.rooms.get_mut(&room) else {
                    return;
                };
                if let Some(m) = r.members.get_mut(&pid) {
                    match kind {
                        MediaKind::Audio => m.info.audio_muted = muted,
                        MediaKind::Video => m.info.video_muted = muted,
                    }
                }
                let sids: Vec<SessionId> = r
                    .members
                    .iter()
                    .filter(|(p, _)| **p != pid)
                    .map(|(_, m)| m.session)
                    .collect();
                for other in sids {
                    self.send(
                        other,
                        ServerMsg::MuteChanged {
                            participant_id: pid,
                            kind,
                            muted,
                        },
                    );
                }
            }
            ClientMsg::Leave {} => {
                self.drop_session(sid, LeaveReason::Left);
                self.out.push_back(Output::Close(sid));
            }
            ClientMsg::Admit { participant_id } => {
                self.decide(sid, &room, pid, participant_id, true)
            }
            ClientMsg::Refuse { participant_id } => {
                self.decide(sid, &room, pid, participant_id, false)
            }
            ClientMsg::Sources { sources } => {
                let bad =
                    sources.len() > 16 || sources.keys().any(|m| m.is_empty() || m.len() > 32);
                if bad {
                    self.reply_error(
                        sid,
                        ErrorCode::InvalidMessage,
                        "at most 16 sources, each mid 1 to 32 characters".into(),
                        Some("sources"),
                    );
                    return;
                }
                self.out.push_back(Output::Media(MediaCommand::Sources {
                    participant: pid,
                    sources,
                }));
            }
            ClientMsg::Chat { text } => self.chat(now_unix, sid, &room, pid, text),
            ClientMsg::MuteParticipant {
                participant_id,
                kind,
            } => self.mute_other(sid, &room, pid, participant_id, kind),
            ClientMsg::RemoveParticipant { participant_id } => {
                self.remove_other(sid, &room, pid, participant_id)
            }
            ClientMsg::LockRoom { locked } => {
                let Some(r) = self.rooms.get_mut(&room) else {
                    return;
                };
                if !r.may_moderate(pid) {
                    self.reply_error(
                        sid,
                        ErrorCode::Forbidden,
                        "only the chair can lock the room".into(),
                        Some("lock_room"),
                    );
                    return;
                }
                if r.locked != locked {
                    r.locked = locked;
                    self.out.push_back(Output::Record(RecordEvent::Locked {
                        room: room.clone(),
                        locked,
                        by: pid,
                    }));
                }
                self.broadcast_state(&room);
            }
            ClientMsg::SetSecretary { participant_id } => {
                self.set_secretary(sid, &room, pid, participant_id)
            }
            ClientMsg::Recording { action } => self.recording_request(sid, &room, pid, action),
            ClientMsg::EndRoom {} => {
                let Some(r) = self.rooms.get(&room) else {
                    return;
                };
                if !r.may_end(pid) {
                    let why = if r.info.kind == ConsultationKind::Conference {
                        "only the chair ends a conference (or, with no chair in the room, a doctor)"
                    } else {
                        "only the doctor ends a visit"
                    };
                    self.reply(sid, ErrorCode::Forbidden, why, "end_room");
                    return;
                }
                self.out.push_back(Output::Record(RecordEvent::Ended {
                    room: room.clone(),
                    reason: EndReason::Ended,
                    by: Some(pid),
                }));
                self.end_room(&room, EndReason::Ended, Some(pid));
                self.queue_room_ended(now, &room);
            }
            // Answered in `on_frame` whatever the session's state.
            ClientMsg::Hello { .. } | ClientMsg::Ping { .. } | ClientMsg::Consent { .. } => {}
            ClientMsg::Join { .. } => self.reply_error(
                sid,
                ErrorCode::AlreadyJoined,
                "this session has already joined a room".into(),
                Some("join"),
            ),
            ClientMsg::QueueJoin { .. }
            | ClientMsg::QueueResume { .. }
            | ClientMsg::QueueCancel { .. }
            | ClientMsg::Available { .. }
            | ClientMsg::AcceptPatient { .. }
            | ClientMsg::DeclinePatient { .. }
            | ClientMsg::Transfer { .. }
            | ClientMsg::DoctorFree {} => {}
        }
    }

    /// Sends the room's state (chair, secretary, lock) to everyone in it.
    fn broadcast_state(&mut self, room_id: &RoomId) {
        let Some(r) = self.rooms.get(room_id) else {
            return;
        };
        let msg = r.state_msg();
        let sids: Vec<SessionId> = r.members.values().map(|m| m.session).collect();
        for other in sids {
            self.send(other, msg.clone());
        }
    }

    fn chat(
        &mut self,
        now_unix: u64,
        sid: SessionId,
        room_id: &RoomId,
        pid: ParticipantId,
        text: String,
    ) {
        let text = text.trim().to_owned();
        let chars = text.chars().count();
        if chars == 0 || chars > MAX_CHAT_CHARS {
            self.reply_error(
                sid,
                ErrorCode::InvalidMessage,
                format!("a chat message is 1 to {MAX_CHAT_CHARS} characters"),
                Some("chat"),
            );
            return;
        }
        let Some(r) = self.rooms.get(room_id) else {
            return;
        };
        let Some(me) = r.members.get(&pid) else {
            return;
        };
        let name = me.info.name.clone();
        let kept = r.info.kind == ConsultationKind::Conference;
        let sids: Vec<SessionId> = r.members.values().map(|m| m.session).collect();
        let msg = ServerMsg::Chat {
            from: pid,
            name: name.clone(),
            text: text.clone(),
            at: now_unix,
        };
        for other in sids {
            self.send(other, msg.clone());
        }
        if kept {
            self.out.push_back(Output::Record(RecordEvent::Chat {
                room: room_id.clone(),
                participant: pid,
                name,
                text,
                at: now_unix,
            }));
        }
    }

    /// Checks that `by` may moderate and `target` is someone else in the
    /// room; answers the error otherwise.
    fn check_moderation(
        &mut self,
        sid: SessionId,
        room_id: &RoomId,
        by: ParticipantId,
        target: ParticipantId,
        ty: &str,
        in_lobby_too: bool,
    ) -> bool {
        let Some(r) = self.rooms.get(room_id) else {
            return false;
        };
        if !r.may_moderate(by) {
            self.reply(sid, ErrorCode::Forbidden, "only the chair can do this", ty);
            return false;
        }
        if target == by {
            self.reply(sid, ErrorCode::InvalidMessage, "not to yourself", ty);
            return false;
        }
        let present =
            r.members.contains_key(&target) || (in_lobby_too && r.lobby.contains_key(&target));
        if !present {
            self.reply(
                sid,
                ErrorCode::NotFound,
                "no such participant in the room",
                ty,
            );
            return false;
        }
        true
    }

    fn mute_other(
        &mut self,
        sid: SessionId,
        room_id: &RoomId,
        by: ParticipantId,
        target: ParticipantId,
        kind: MediaKind,
    ) {
        if !self.check_moderation(sid, room_id, by, target, "mute_participant", false) {
            return;
        }
        let Some(r) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(m) = r.members.get_mut(&target) else {
            return;
        };
        match kind {
            MediaKind::Audio => m.info.audio_muted = true,
            MediaKind::Video => m.info.video_muted = true,
        }
        let target_sid = m.session;
        let sids: Vec<SessionId> = r.members.values().map(|m| m.session).collect();
        self.send(target_sid, ServerMsg::MuteRequested { kind, by });
        for other in sids.into_iter().filter(|s| *s != target_sid) {
            self.send(
                other,
                ServerMsg::MuteChanged {
                    participant_id: target,
                    kind,
                    muted: true,
                },
            );
        }
        self.out
            .push_back(Output::Record(RecordEvent::MuteRequested {
                room: room_id.clone(),
                participant: target,
                kind,
                by,
            }));
    }

    fn remove_other(
        &mut self,
        sid: SessionId,
        room_id: &RoomId,
        by: ParticipantId,
        target: ParticipantId,
    ) {
        if !self.check_moderation(sid, room_id, by, target, "remove_participant", true) {
            return;
        }
        let Some(r) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(m) = r.members.get(&target).or_else(|| r.lobby.get(&target)) else {
            return;
        };
        // The person, not just this link: a staff member would otherwise
        // come straight back with a fresh link from the conference's join.
        let bar = match m.staff_id {
            Some(staff) => Bar::Staff(staff),
            None => Bar::Link(m.token_digest),
        };
        // Barring an account reaches every device it is in the room with
        // (a phone and a laptop): all of them go, or the bar would be a
        // fiction for the one left. So a moderator cannot remove another
        // device of their own account: that would bar themselves.
        let same_person: Vec<ParticipantId> = match bar {
            Bar::Staff(staff) => r
                .members
                .values()
                .chain(r.lobby.values())
                .filter(|x| x.staff_id == Some(staff))
                .map(|x| x.info.id)
                .collect(),
            Bar::Link(_) => vec![target],
        };
        if same_person.contains(&by) {
            self.reply(
                sid,
                ErrorCode::InvalidMessage,
                "that is another device of your own account: leave from it instead",
                "remove_participant",
            );
            return;
        }
        r.barred.insert(bar);
        for pid in same_person {
            let Some(gone) = self.rooms.get(room_id).and_then(|r| {
                r.members
                    .get(&pid)
                    .or_else(|| r.lobby.get(&pid))
                    .map(|m| m.session)
            }) else {
                continue;
            };
            self.out.push_back(Output::Record(RecordEvent::Removed {
                room: room_id.clone(),
                participant: pid,
                by,
                bar,
            }));
            self.fail(
                gone,
                ErrorCode::Removed,
                "the chair removed you from this consultation".into(),
                None,
            );
            self.drop_session(gone, LeaveReason::Removed);
            // Someone away has no live session for `drop_session` to act on.
            self.remove_member(room_id, pid, LeaveReason::Removed);
        }
    }

    /// Names the chair of a room. A member holding the chair's rights for
    /// another account (the chair was changed) loses them.
    fn name_chair(&mut self, room_id: &RoomId, staff: StaffId) {
        let Some(r) = self.rooms.get_mut(room_id) else {
            return;
        };
        r.named_chair = Some(staff);
        let mut changed = false;
        for m in r.members.values_mut() {
            if m.chair && m.staff_id != Some(staff) {
                m.chair = false;
                changed = true;
            }
        }
        if changed {
            self.broadcast_state(room_id);
            self.announce_lobby(room_id);
        }
    }

    fn set_secretary(
        &mut self,
        sid: SessionId,
        room_id: &RoomId,
        by: ParticipantId,
        target: Option<ParticipantId>,
    ) {
        let ty = "set_secretary";
        if let Some(t) = target {
            // Naming oneself is allowed: a chair may keep the minutes.
            let ok = self.rooms.get(room_id).is_some_and(|r| {
                r.members
                    .get(&t)
                    .is_some_and(|m| matches!(m.info.role, Role::Doctor | Role::Nurse))
            });
            if !ok {
                self.reply(
                    sid,
                    ErrorCode::InvalidMessage,
                    "the secretary must be a doctor or nurse in the room",
                    ty,
                );
                return;
            }
        }
        let Some(r) = self.rooms.get_mut(room_id) else {
            return;
        };
        // The secretary writes the conclusion into the record: in a room
        // whose scheduler named a chair, only that chair names them, even
        // while the chair is away (a doctor who came early must not name
        // themselves and so write the conclusion). Elsewhere the moderators.
        let may = match r.named_chair {
            Some(_) => r.chair() == Some(by),
            None => r.may_moderate(by),
        };
        if !may {
            self.reply(
                sid,
                ErrorCode::Forbidden,
                "only the chair names the secretary",
                ty,
            );
            return;
        }
        r.secretary = target;
        let staff_id = target
            .and_then(|t| r.members.get(&t))
            .and_then(|m| m.staff_id);
        self.out
            .push_back(Output::Record(RecordEvent::SecretaryNamed {
                room: room_id.clone(),
                participant: target,
                staff_id,
                by,
            }));
        self.broadcast_state(room_id);
    }

    /// Ends a queue call's room when its doctor takes the next patient.
    pub(crate) fn end_visit(&mut self, now: Instant, room: &RoomId, doctor: Option<StaffId>) {
        let Some(r) = self.rooms.get(room) else {
            return;
        };
        if r.status == RoomStatus::Ended {
            return;
        }
        let by = r
            .members
            .values()
            .find(|m| doctor.is_some() && m.staff_id == doctor)
            .map(|m| m.info.id);
        self.out.push_back(Output::Record(RecordEvent::Ended {
            room: room.clone(),
            reason: EndReason::Ended,
            by,
        }));
        self.end_room(room, EndReason::Ended, by);
        self.queue_room_ended(now, room);
    }

    /// Ends a room for everyone in it and in its lobby: each is told why
    /// (and who to call), then closed; the away lose their places.
    fn end_room(&mut self, room_id: &RoomId, reason: EndReason, by: Option<ParticipantId>) {
        // Before anyone is taken out: a stop, not a resume as they leave.
        self.recording_room_ended(room_id);
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        room.status = RoomStatus::Ended;
        room.unstaffed_since = None;
        let by = by
            .and_then(|p| room.members.get(&p))
            .map(|m| m.info.name.clone());
        let msg = ServerMsg::RoomEnded {
            reason,
            by,
            contact: room.contact.clone(),
        };
        let sids: Vec<SessionId> = room
            .members
            .values()
            .chain(room.lobby.values())
            .map(|m| m.session)
            .collect();
        for sid in sids {
            self.send(sid, msg.clone());
            if let Some(s) = self.sessions.get_mut(&sid)
                && !matches!(
                    s.state,
                    SessionState::Joined { .. } | SessionState::Waiting { .. }
                )
            {
                s.state = SessionState::Closing;
            }
            self.out.push_back(Output::Close(sid));
            self.drop_session(sid, LeaveReason::Ended);
        }
        // Those away have no session to drop.
        let away: Vec<ParticipantId> = self
            .rooms
            .get(room_id)
            .map(|r| r.members.keys().copied().collect())
            .unwrap_or_default();
        for pid in away {
            self.remove_member(room_id, pid, LeaveReason::Ended);
        }
    }

    /// Takes a session out of its room (if any) and marks it closing.
    fn drop_session(&mut self, sid: SessionId, reason: LeaveReason) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        let old = std::mem::replace(&mut session.state, SessionState::Closing);
        match old {
            SessionState::Joined { room, participant } => {
                self.remove_member(&room, participant, reason)
            }
            SessionState::Waiting { room, participant } => self.remove_waiting(&room, participant),
            _ => {}
        }
    }

    fn remove_member(&mut self, room_id: &RoomId, pid: ParticipantId, reason: LeaveReason) {
        self.participants.remove(&pid);
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(gone) = room.members.remove(&pid) else {
            return;
        };
        if gone.quality.samples > 0 {
            self.out.push_back(Output::Record(RecordEvent::LinkQuality {
                room: room_id.clone(),
                participant: pid,
                window: gone.quality,
            }));
        }
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let mut state_changed = gone.chair;
        if room.secretary == Some(pid) {
            room.secretary = None;
            state_changed = true;
        }
        let sids: Vec<SessionId> = room.members.values().map(|m| m.session).collect();
        for other in sids {
            self.send(
                other,
                ServerMsg::ParticipantLeft {
                    participant_id: pid,
                    reason,
                },
            );
        }
        self.out
            .push_back(Output::Media(MediaCommand::Remove { participant: pid }));
        self.out.push_back(Output::Record(RecordEvent::Left {
            room: room_id.clone(),
            participant: pid,
            reason,
        }));
        if state_changed {
            self.broadcast_state(room_id);
            // Without its chair the room's doctors moderate: they need the lobby.
            self.announce_lobby(room_id);
        }
        // A patient without consent who leaves may let recording resume.
        self.recording_reconcile(room_id);
    }

    fn send(&mut self, sid: SessionId, msg: ServerMsg) {
        // A session already gone (an away member's old one) hears nothing.
        if self.sessions.contains_key(&sid) {
            self.out.push_back(Output::Send(sid, msg));
        }
    }

    fn reply_error(
        &mut self,
        sid: SessionId,
        code: ErrorCode,
        message: String,
        in_reply_to: Option<&str>,
    ) {
        self.send(
            sid,
            ServerMsg::Error {
                code,
                message,
                in_reply_to: in_reply_to.map(str::to_owned),
            },
        );
    }

    /// Closes a session whose link was opened again elsewhere: the new
    /// session holds the place now, so the old one leaves nothing behind.
    fn close_replaced(&mut self, old_sid: SessionId) {
        self.fail(
            old_sid,
            ErrorCode::Replaced,
            "this link was opened in another session".into(),
            None,
        );
        if let Some(s) = self.sessions.get_mut(&old_sid) {
            s.state = SessionState::Closing;
        }
    }

    /// Sends a fatal error and closes the session.
    fn fail(
        &mut self,
        sid: SessionId,
        code: ErrorCode,
        message: String,
        in_reply_to: Option<&str>,
    ) {
        self.reply_error(sid, code, message, in_reply_to);
        // Joined and waiting sessions keep their state so that
        // `drop_session` can still take them out of the room or lobby.
        if let Some(s) = self.sessions.get_mut(&sid)
            && !matches!(
                s.state,
                SessionState::Joined { .. } | SessionState::Waiting { .. }
            )
        {
            s.state = SessionState::Closing;
        }
        self.out.push_back(Output::Close(sid));
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}
