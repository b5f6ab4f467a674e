//! The signaling task: owns the [`Hub`] and the map from session to its
//! outgoing queue. Sessions, the media task and the HTTP API talk to it by
//! message; it is the only place that state changes.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tuxa_protocol::{ErrorCode, ParticipantInfo, RoomId, RoomInfo};
use tuxa_signaling::{Bar, Claims, Hub, Input, MediaCommand, Output, RecordEvent, SessionId};

use crate::audit::{Action, Entry};
use crate::store::Store;
use tuxa_records::{QueueId, StaffId, UnixTime};
use tuxa_store::live;

/// What a session task is told to do.
#[derive(Debug)]
pub enum SessionCmd {
    Send(String),
    Close,
    /// Close because the server stops (close code 1001, docs/protocol.md).
    GoingAway,
}

/// Frames a slow client may have queued before it is cut off. A phone on
/// 3G that cannot keep up with signaling this small is gone in practice.
pub const SESSION_QUEUE: usize = 256;

/// Messages from sessions and the API waiting for the hub. A session awaits
/// its place here before it reads its next frame, so a full queue stops the
/// reading of every WebSocket (TCP flow control then slows the clients)
/// instead of growing: each session has at most one frame in flight, and
/// 1024 is several times the sessions of a busy province's afternoon, so in
/// ordinary use nobody waits.
pub const HUB_QUEUE: usize = 1024;
/// Events from the media task (SDP answers, ICE state, link stats). The
/// media task awaits its place; the hub takes these before anything else
/// and never waits on the media task itself, so this wait always ends.
pub const MEDIA_EVENTS: usize = 1024;
/// Commands for the media task (offers, answers, removals): one or two per
/// negotiation. Never dropped: over this, the hub keeps them in order in its
/// [`Outbox`] and takes no new session or API message until they are out.
pub const MEDIA_QUEUE: usize = 1024;
/// Accepted queue patients on their way to the pairing task. A pairing is a
/// doctor's click; 64 waiting means the store is stuck, and the rest wait in
/// the hub's [`Outbox`]. Unlike media commands, a pairing backlog does not
/// stop the hub taking messages: the pairing task answers through that very
/// queue (`CallReady`), so gating it would be a cycle of waits. The backlog
/// is bounded anyway: one pairing per doctor who accepted a patient and is
/// not yet in the call, so at most one per signed-in session.
pub const PAIRING_QUEUE: usize = 64;

/// A link's claims and room, and the room's recording (issue 13: the join
/// preview says so before anyone enters).
pub type TokenCheck =
    Result<(Claims, RoomInfo, tuxa_signaling::RecordingStatus), (ErrorCode, String)>;

pub enum HubMsg {
    /// A WebSocket session and the client address it came from.
    Register(SessionId, std::net::IpAddr, mpsc::Sender<SessionCmd>),
    Input(Input),
    CheckToken {
        room: RoomId,
        token: String,
        reply: oneshot::Sender<TokenCheck>,
    },
    Participants {
        room: RoomId,
        reply: oneshot::Sender<Vec<ParticipantInfo>>,
    },
    Live(oneshot::Sender<tuxa_signaling::Live>),
    /// A queue's live tickets, for staff (`None`: no such queue).
    QueueTickets {
        queue: QueueId,
        reply: oneshot::Sender<Option<Vec<tuxa_signaling::StaffTicket>>>,
    },
    /// Staff clear a ticket, named by its handle.
    ClearTicket {
        queue: QueueId,
        handle: String,
        reply: oneshot::Sender<Result<tuxa_signaling::StaffTicket, tuxa_signaling::ClearError>>,
    },
    /// Staff with a signed-in WebSocket open (for the roster refresh).
    StaffOnline(oneshot::Sender<Vec<StaffId>>),
    /// A pre-call check room and its link (check.rs).
    OpenCheck(oneshot::Sender<Result<tuxa_signaling::CheckTicket, tuxa_signaling::CheckError>>),
    Shutdown(oneshot::Sender<()>),
}

pub use crate::clock::unix_now;

/// A bounded channel to a task the hub must not wait on (the media task,
/// the pairing task: both send to the hub in turn, so a hub waiting on a
/// full queue to them while they wait on the hub would be a deadlock). What
/// does not fit waits here, in order, and is sent as room frees up. While
/// media commands wait the hub takes no new message from sessions or the
/// API, which is what bounds that backlog (see [`PAIRING_QUEUE`] for the
/// other).
pub struct Outbox<T> {
    tx: mpsc::Sender<T>,
    backlog: VecDeque<T>,
}

impl<T> Outbox<T> {
    pub fn new(tx: mpsc::Sender<T>) -> Outbox<T> {
        Outbox {
            tx,
            backlog: VecDeque::new(),
        }
    }

    fn push(&mut self, item: T) {
        if !self.backlog.is_empty() {
            self.backlog.push_back(item);
            return;
        }
        match self.tx.try_send(item) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(item)) => self.backlog.push_back(item),
            // The receiving task ended (shutdown): nobody to tell.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn backlogged(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Waits for room and sends what waits (cancel-safe: an item leaves the
    /// backlog only with a permit in hand).
    async fn drain(&mut self) {
        let Ok(permit) = self.tx.reserve().await else {
            self.backlog.clear();
            return;
        };
        if let Some(item) = self.backlog.pop_front() {
            permit.send(item);
        }
        while let Some(item) = self.backlog.pop_front() {
            if let Err(e) = self.tx.try_send(item) {
                if let mpsc::error::TrySendError::Full(item) = e {
                    self.backlog.push_front(item);
                }
                return;
            }
        }
    }
}

pub struct HubTask {
    pub hub: Hub,
    /// Sessions and the API ([`HUB_QUEUE`]).
    pub rx: mpsc::Receiver<HubMsg>,
    /// The media task's events ([`MEDIA_EVENTS`]).
    pub from_media: mpsc::Receiver<Input>,
    pub media: Outbox<MediaCommand>,
    pub store: Store,
    /// Accepted queue patients, for the task that creates their rooms.
    pub pairings: Outbox<tuxa_signaling::queue::Pairing>,
    /// Who is in a recorded room, for the recorder's rows (`None`: no
    /// recorder, e.g. in router tests).
    pub recorder: Option<crate::recorder::RecorderControl>,
}

impl HubTask {
    /// Runs until every sender is gone or the server stops
    /// ([`HubMsg::Shutdown`]): then the rooms are ended and recorded, and
    /// the task returns with the store's jobs queued.
    pub async fn run(mut self) {
        let mut sessions: HashMap<SessionId, mpsc::Sender<SessionCmd>> = HashMap::new();
        let mut media_open = true;
        loop {
            // The hub's own next deadline, not a tick: asleep while nothing
            // is timed.
            let deadline = self.hub.poll_timeout(Instant::now());
            let backlogged = self.media.backlogged();
            let msg = tokio::select! {
                biased;
                // The media task may be waiting for room here: its events go
                // first and are taken whatever else waits (see `Outbox`).
                ev = self.from_media.recv(), if media_open => {
                    match ev {
                        Some(input) => {
                            self.hub.handle(Instant::now(), unix_now(), input);
                            self.flush(&mut sessions, false);
                        }
                        None => media_open = false,
                    }
                    continue;
                }
                _ = self.media.drain(), if self.media.backlogged() => continue,
                _ = self.pairings.drain(), if self.pairings.backlogged() => continue,
                _ = sleep_until(deadline) => {
                    self.hub.handle_timeout(Instant::now());
                    self.flush(&mut sessions, false);
                    continue;
                }
                m = self.rx.recv(), if !backlogged => m,
            };
            let Some(msg) = msg else { break };
            match msg {
                HubMsg::Register(sid, addr, tx) => {
                    sessions.insert(sid, tx);
                    self.hub
                        .handle(Instant::now(), unix_now(), Input::Connected(sid, addr));
                }
                HubMsg::Input(input) => {
                    let gone = match &input {
                        Input::Disconnected(sid) => Some(*sid),
                        _ => None,
                    };
                    self.hub.handle(Instant::now(), unix_now(), input);
                    self.flush(&mut sessions, false);
                    if let Some(sid) = gone {
                        sessions.remove(&sid);
                    }
                }
                HubMsg::CheckToken { room, token, reply } => {
                    let checked = self.hub.check_token(&room, &token, unix_now());
                    let _ = reply.send(checked.map(|(claims, info)| {
                        let rec = self.hub.recording_status(&room).unwrap_or_default();
                        (claims, info, rec)
                    }));
                }
                HubMsg::Participants { room, reply } => {
                    let _ = reply.send(self.hub.participants_in(&room));
                }
                HubMsg::Live(reply) => {
                    let _ = reply.send(self.hub.live(Instant::now()));
                }
                HubMsg::QueueTickets { queue, reply } => {
                    let _ = reply.send(self.hub.queue_tickets(Instant::now(), queue));
                }
                HubMsg::ClearTicket {
                    queue,
                    handle,
                    reply,
                } => {
                    let _ = reply.send(self.hub.clear_ticket(Instant::now(), queue, &handle));
                }
                HubMsg::StaffOnline(reply) => {
                    let _ = reply.send(self.hub.staff_online());
                }
                HubMsg::OpenCheck(reply) => {
                    let _ = reply.send(self.hub.open_check_room(
                        Instant::now(),
                        unix_now(),
                        crate::random_bytes(),
                        crate::random_bytes(),
                    ));
                }
                HubMsg::Shutdown(done) => {
                    self.hub.shutdown();
                    self.flush(&mut sessions, true);
                    // Every session is told; what the media task would still
                    // be asked (removals) does not matter: it stops too.
                    let _ = done.send(());
                    return;
                }
            }
            self.flush(&mut sessions, false);
        }
    }

    /// Hands out what the hub said; `stopping`: the server stops, and the
    /// sessions closed now are closed with 1001.
    fn flush(
        &mut self,
        sessions: &mut HashMap<SessionId, mpsc::Sender<SessionCmd>>,
        stopping: bool,
    ) {
        while let Some(out) = self.hub.poll_output() {
            match out {
                Output::Send(sid, msg) => {
                    let Some(tx) = sessions.get(&sid) else {
                        continue;
                    };
                    if tx.try_send(SessionCmd::Send(msg.to_json())).is_err() {
                        // Full or gone: the session task notices the dropped
                        // sender and reports the disconnect itself.
                        tracing::info!(session = sid.0, "signaling queue full; closing");
                        sessions.remove(&sid);
                    }
                }
                Output::Close(sid) => {
                    if let Some(tx) = sessions.remove(&sid) {
                        // Full: the session notices the dropped sender.
                        let _ = tx.try_send(if stopping {
                            SessionCmd::GoingAway
                        } else {
                            SessionCmd::Close
                        });
                    }
                }
                Output::Media(cmd) => self.media.push(cmd),
                Output::Record(ev) => {
                    if let Some(rc) = &self.recorder {
                        describe_for_recorder(&self.hub, &self.store, rc, &ev);
                    }
                    record(&self.store, ev)
                }
                Output::Paired(p) => self.pairings.push(p),
            }
        }
    }
}

/// Sleeps until `deadline`, or for ever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// What the recorder needs beside the media: the recording's row (made
/// when it starts, ended when it stops for good) and who is in the room (at
/// the start and as people join while it runs), for its files' rows. The
/// row is made on the store thread and reaches the recorder after it; a
/// file opened before that gets its row then (recorder.rs, `Describe`).
fn describe_for_recorder(
    hub: &Hub,
    store: &Store,
    rc: &crate::recorder::RecorderControl,
    ev: &RecordEvent,
) {
    use tuxa_protocol::RecordingReason as Why;
    use tuxa_records::recording::{NewRecording, RecordingState, StartedBy, StopReason};
    use tuxa_signaling::RecordingChange as C;
    let person = |p: &ParticipantInfo| {
        (
            p.id,
            crate::recorder::Person {
                role: p.role,
                name: p.name.clone(),
                facility: p.facility.clone(),
            },
        )
    };
    match ev {
        RecordEvent::Recording {
            room,
            change: C::Started { by },
        } => {
            let people: Vec<_> = hub.participants_in(room).iter().map(person).collect();
            let name = people
                .iter()
                .find(|(id, _)| id == by)
                .map(|(_, p)| p.name.clone())
                .unwrap_or_default();
            let new = NewRecording {
                consultation: room.to_string(),
                started_by: StartedBy {
                    participant: *by,
                    name,
                    staff: None,
                },
                started_at: UnixTime(unix_now() as i64),
            };
            let (rc, room) = (rc.clone(), room.clone());
            store.spawn("recording start", move |c| {
                let id = tuxa_store::recordings::start(c, &new)?;
                if !rc.describe(room.clone(), Some(id), people) {
                    tracing::warn!(%room, "recorder queue full: this recording's files get no rows");
                }
                Ok(())
            });
        }
        RecordEvent::Recording {
            room,
            change: C::Stopped { reason, .. },
        } => {
            let (state, why) = match reason {
                Why::Fault => (RecordingState::Incomplete, StopReason::WriteFailed),
                Why::ConsentWithdrawn => (RecordingState::Complete, StopReason::ConsentWithdrawn),
                Why::RoomEnded => (RecordingState::Complete, StopReason::RoomEnded),
                Why::ServerShutdown => (RecordingState::Complete, StopReason::ServerRestart),
                Why::Stopped | Why::PatientWithoutConsent => {
                    (RecordingState::Complete, StopReason::Stopped)
                }
            };
            let _ = rc.forget(room.clone());
            let room = room.clone();
            let at = UnixTime(unix_now() as i64);
            store.spawn("recording end", move |c| {
                tuxa_store::recordings::end_open(c, room.as_str(), at, state, why).map(|_| ())
            });
        }
        RecordEvent::Joined { room, participant }
            if hub.recording_status(room).is_some_and(|s| s.running()) =>
        {
            let _ = rc.describe(room.clone(), None, vec![person(participant)]);
        }
        _ => {}
    }
}

fn record(store: &Store, ev: RecordEvent) {
    let now = unix_now() as i64;
    if let Some(entry) = audit_entry(now, &ev) {
        store.audit(entry);
    }
    match ev {
        RecordEvent::Queue(ev) => {
            // Operational, not security-relevant: the log and the activity
            // report, not the audit chain.
            tracing::info!(?ev, "queue");
            if let Some(stored) = to_stored(&ev) {
                store.spawn("queue event", move |c| {
                    tuxa_store::reports::insert(c, now, &stored)
                });
            }
        }
        RecordEvent::Joined { room, participant } => {
            tracing::info!(room = %room, participant = %participant.id, role = participant.role.as_str(), "joined");
            store.spawn("attendance", move |c| {
                let j = live::Joined {
                    room: room.as_str(),
                    participant: participant.id.0,
                    name: &participant.name,
                    role: participant.role.as_str(),
                    facility: participant.facility.as_deref(),
                    licence_number: participant.licence_number.as_deref(),
                };
                live::joined(c, &j, UnixTime(now))
            });
        }
        RecordEvent::Left {
            room,
            participant,
            reason,
        } => {
            tracing::info!(room = %room, participant = %participant, ?reason, "left");
            // Gone while away (grace over, room ended, removed): the gap ends here.
            close_gap(store, room.clone(), participant, now, "left");
            store.spawn("attendance", move |c| {
                live::left(
                    c,
                    room.as_str(),
                    participant.0,
                    reason.as_str(),
                    UnixTime(now),
                )
            });
        }
        RecordEvent::TokenRefused { room, code } => {
            tracing::info!(room = %room, code = code.as_str(), "join refused");
        }
        RecordEvent::Consent {
            room,
            participant,
            consent,
        } => {
            store.spawn("consent", move |c| {
                let k = live::Consent {
                    room: room.as_str(),
                    participant: participant.0,
                    text_version: &consent.text_version,
                    remote_examination: consent.remote_examination,
                    third_parties: consent.third_parties,
                    recording: consent.recording,
                    at: UnixTime(consent.at as i64),
                };
                live::consent(c, &k)
            });
        }
        RecordEvent::Waiting { room, participant } => {
            tracing::info!(room = %room, participant = %participant.id, role = participant.role.as_str(), "waiting in the lobby");
        }
        RecordEvent::Admitted {
            room,
            participant,
            by,
        } => {
            tracing::info!(room = %room, participant = %participant, by = %by, "admitted");
        }
        RecordEvent::Refused {
            room,
            participant,
            by,
        } => {
            tracing::info!(room = %room, participant = %participant, by = %by, "refused");
        }
        RecordEvent::Chat {
            room,
            participant,
            name,
            text,
            at,
        } => {
            store.spawn("chat", move |c| {
                live::chat(
                    c,
                    room.as_str(),
                    participant.0,
                    &name,
                    &text,
                    UnixTime(at as i64),
                )
            });
        }
        RecordEvent::SecretaryNamed { room, staff_id, .. } => {
            // The secretary may enter the conclusion after the call.
            store.spawn("secretary", move |c| {
                live::secretary(c, room.as_str(), staff_id)
            });
        }
        RecordEvent::LinkLost { room, participant } => {
            tracing::info!(room = %room, participant = %participant, "connection lost; place kept");
            store.spawn("link gap", move |c| {
                live::gap_started(c, room.as_str(), participant.0, UnixTime(now))
            });
        }
        RecordEvent::LinkBack {
            room,
            participant,
            replaced,
        } => {
            tracing::info!(room = %room, participant = %participant, replaced, "reconnected");
            close_gap(store, room, participant, now, "resumed");
        }
        RecordEvent::LinkQuality {
            room,
            participant,
            window: w,
        } => {
            store.spawn("link quality", move |c| {
                let q = live::Quality {
                    from: w.from,
                    to: w.to,
                    samples: w.samples,
                    rtt_ms_avg: w.rtt_ms_avg,
                    rtt_ms_max: w.rtt_ms_max,
                    loss_pct_max: w.loss_pct_max,
                    jitter_ms_max: w.jitter_ms_max,
                    frame_height_min: w.frame_height_min,
                    covered_ms: w.covered_ms,
                    audio_only_ms: w.audio_only_ms,
                };
                live::quality(c, room.as_str(), participant.0, &q)
            });
        }
        RecordEvent::Removed { room, bar, .. } => {
            // Kept with the room, so that a restart does not let them back.
            let who = match bar {
                Bar::Staff(id) => live::Barred::Staff(id),
                Bar::Link(digest) => live::Barred::Link(digest),
            };
            store.spawn("room bar", move |c| {
                live::bar(c, room.as_str(), who, UnixTime(now))
            });
        }
        RecordEvent::Ended { room, reason, .. } => {
            // Ended through the API, the row is closed already: the first
            // end time stands.
            store.spawn("consultation end", move |c| {
                live::ended(c, room.as_str(), reason.as_str(), UnixTime(now))
            });
        }
        RecordEvent::Locked { .. } | RecordEvent::MuteRequested { .. } => {}
        RecordEvent::Recording { room, change } => {
            // The audit chain is the record of it (see `audit_entry`).
            tracing::info!(room = %room, ?change, "recording");
        }
    }
}

/// Who was removed from each open room, by consultation id, for the hub at
/// start (`Input::Barred`).
pub fn room_bars(c: &rusqlite::Connection) -> rusqlite::Result<Vec<(String, Bar)>> {
    Ok(live::bars(c)?
        .into_iter()
        .map(|(room, who)| {
            let bar = match who {
                live::Barred::Staff(id) => Bar::Staff(id),
                live::Barred::Link(digest) => Bar::Link(digest),
            };
            (room, bar)
        })
        .collect())
}

/// Ends a participant's open connection gap, if any.
fn close_gap(
    store: &Store,
    room: tuxa_protocol::RoomId,
    participant: tuxa_protocol::ParticipantId,
    now: i64,
    outcome: &'static str,
) {
    store.spawn("link gap", move |c| {
        live::gap_ended(c, room.as_str(), participant.0, outcome, UnixTime(now))
    });
}

fn audit_entry(now: i64, ev: &RecordEvent) -> Option<Entry> {
    Some(match ev {
        RecordEvent::Queue(_) => return None,
        RecordEvent::Joined { room, participant } => Entry {
            at: now,
            action: Action::Joined,
            consultation: Some(room.to_string()),
            actor: format!("participant:{}", participant.id),
            detail: serde_json::json!({
                "role": participant.role,
                "facility": participant.facility,
                "licence_number": participant.licence_number,
            }),
        },
        RecordEvent::Left {
            room,
            participant,
            reason,
        } => Entry {
            at: now,
            action: Action::Left,
            consultation: Some(room.to_string()),
            actor: format!("participant:{participant}"),
            detail: serde_json::json!({ "reason": reason }),
        },
        RecordEvent::TokenRefused { room, code } => Entry {
            at: now,
            action: Action::LinkRefused,
            consultation: Some(room.to_string()),
            actor: "unknown".into(),
            detail: serde_json::json!({ "code": code, "via": "websocket" }),
        },
        RecordEvent::Consent {
            room,
            participant,
            consent,
        } => Entry {
            at: now,
            action: Action::ConsentRecorded,
            consultation: Some(room.to_string()),
            actor: format!("participant:{participant}"),
            detail: serde_json::json!({
                "text_version": consent.text_version,
                "remote_examination": consent.remote_examination,
                "third_parties": consent.third_parties,
                "recording": consent.recording,
            }),
        },
        RecordEvent::Waiting { room, participant } => Entry {
            at: now,
            action: Action::LobbyEntered,
            consultation: Some(room.to_string()),
            actor: format!("participant:{}", participant.id),
            detail: serde_json::json!({ "role": participant.role }),
        },
        RecordEvent::Admitted {
            room,
            participant,
            by,
        } => Entry {
            at: now,
            action: Action::Admitted,
            consultation: Some(room.to_string()),
            actor: format!("participant:{by}"),
            detail: serde_json::json!({ "participant": participant }),
        },
        RecordEvent::Refused {
            room,
            participant,
            by,
        } => Entry {
            at: now,
            action: Action::Refused,
            consultation: Some(room.to_string()),
            actor: format!("participant:{by}"),
            detail: serde_json::json!({ "participant": participant }),
        },
        // Chat is kept in its own table (conferences only), not the audit log.
        RecordEvent::Chat { .. } => return None,
        // Telemetry is evidence of quality, not of who did what.
        RecordEvent::LinkQuality { .. } => return None,
        RecordEvent::LinkLost { room, participant } => Entry {
            at: now,
            action: Action::ConnectionLost,
            consultation: Some(room.to_string()),
            actor: format!("participant:{participant}"),
            detail: serde_json::json!({}),
        },
        RecordEvent::LinkBack {
            room,
            participant,
            replaced,
        } => Entry {
            at: now,
            action: Action::Reconnected,
            consultation: Some(room.to_string()),
            actor: format!("participant:{participant}"),
            detail: serde_json::json!({ "replaced": replaced }),
        },
        RecordEvent::SecretaryNamed {
            room,
            participant,
            staff_id,
            by,
        } => Entry {
            at: now,
            action: Action::SecretaryNamed,
            consultation: Some(room.to_string()),
            actor: format!("participant:{by}"),
            detail: serde_json::json!({ "participant": participant, "staff_id": staff_id }),
        },
        RecordEvent::Removed {
            room,
            participant,
            by,
            bar,
        } => Entry {
            at: now,
            action: Action::ParticipantRemoved,
            consultation: Some(room.to_string()),
            actor: format!("participant:{by}"),
            detail: match bar {
                Bar::Staff(id) => {
                    serde_json::json!({ "participant": participant, "barred": "staff", "staff_id": id })
                }
                Bar::Link(_) => {
                    serde_json::json!({ "participant": participant, "barred": "link" })
                }
            },
        },
        RecordEvent::Ended { room, reason, by } => Entry {
            at: now,
            action: Action::ConsultationEnded,
            consultation: Some(room.to_string()),
            actor: by.map_or_else(|| "system".to_owned(), |p| format!("participant:{p}")),
            detail: serde_json::json!({ "reason": reason.as_str() }),
        },
        RecordEvent::Locked { room, locked, by } => Entry {
            at: now,
            action: if *locked {
                Action::RoomLocked
            } else {
                Action::RoomUnlocked
            },
            consultation: Some(room.to_string()),
            actor: format!("participant:{by}"),
            detail: serde_json::json!({}),
        },
        RecordEvent::MuteRequested {
            room,
            participant,
            kind,
            by,
        } => Entry {
            at: now,
            action: Action::MuteRequested,
            consultation: Some(room.to_string()),
            actor: format!("participant:{by}"),
            detail: serde_json::json!({ "participant": participant, "kind": kind }),
        },
        RecordEvent::Recording { room, change } => recording_entry(now, room, change),
    })
}

/// A recording change (issue 13) as an audit entry.
fn recording_entry(
    now: i64,
    room: &tuxa_protocol::RoomId,
    change: &tuxa_signaling::RecordingChange,
) -> Entry {
    use tuxa_signaling::RecordingChange as C;
    let who = |p: &Option<tuxa_protocol::ParticipantId>| {
        p.map_or_else(|| "system".to_owned(), |p| format!("participant:{p}"))
    };
    let (action, actor, detail) = match change {
        C::Started { by } => (
            Action::RecordingStarted,
            format!("participant:{by}"),
            serde_json::json!({}),
        ),
        C::Stopped { by, reason, detail } => (
            Action::RecordingStopped,
            who(by),
            serde_json::json!({ "reason": reason, "detail": detail }),
        ),
        C::Paused { patients } => (
            Action::RecordingPaused,
            "system".to_owned(),
            serde_json::json!({ "reason": "patient_without_consent", "patients": patients }),
        ),
        C::Resumed => (
            Action::RecordingResumed,
            "system".to_owned(),
            serde_json::json!({}),
        ),
        C::Refused { by, action, code } => (
            Action::RecordingRefused,
            format!("participant:{by}"),
            serde_json::json!({ "action": action, "code": code }),
        ),
    };
    Entry {
        at: now,
        action,
        consultation: Some(room.to_string()),
        actor,
        detail,
    }
}

/// What of a queue event the report needs (None: not counted).
pub fn to_stored(
    ev: &tuxa_signaling::queue::QueueEvent,
) -> Option<tuxa_records::reports::StoredEvent> {
    use tuxa_records::reports::{EventKind, StoredEvent};
    use tuxa_signaling::queue::{DropStage, QueueEvent};
    let hash = |t: &tuxa_signaling::queue::Ticket| crate::hex(&crate::sha256(t.0.as_bytes())[..8]);
    let (kind, queue, ticket, waited) = match ev {
        QueueEvent::Joined { queue, ticket, .. } => (EventKind::Joined, queue, ticket, None),
        QueueEvent::Accepted {
            queue,
            ticket,
            waited,
            ..
        } => (EventKind::Accepted, queue, ticket, Some(waited)),
        QueueEvent::Dropped {
            queue,
            ticket,
            stage: s,
            waited,
            ..
        } if *s != DropStage::InCall => (EventKind::Dropped, queue, ticket, Some(waited)),
        QueueEvent::Cancelled {
            queue,
            ticket,
            waited,
            ..
        } => (EventKind::Cancelled, queue, ticket, Some(waited)),
        QueueEvent::CallEnded {
            queue,
            ticket,
            duration,
            ..
        } => (EventKind::CallEnded, queue, ticket, Some(duration)),
        _ => return None,
    };
    Some(StoredEvent {
        kind,
        queue: *queue,
        ticket_hash: hash(ticket),
        waited_secs: waited.map(|d| d.as_secs() as i64),
    })
}

#[cfg(test)]
mod outbox_tests {
    use super::*;

    #[tokio::test]
    async fn an_outbox_keeps_what_does_not_fit_in_order_and_loses_nothing() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut out = Outbox::new(tx);
        for i in 0..5 {
            out.push(i);
        }
        assert!(out.backlogged());
        // Once anything waits, later items queue behind it, even with room.
        assert_eq!(rx.recv().await, Some(0));
        out.push(5);
        assert_eq!(out.backlog.len(), 4);
        let mut got = vec![0];
        while out.backlogged() {
            out.drain().await;
            while let Ok(i) = rx.try_recv() {
                got.push(i);
            }
        }
        while let Ok(i) = rx.try_recv() {
            got.push(i);
        }
        assert_eq!(got, vec![0, 1, 2, 3, 4, 5]);
        // A receiver gone (shutdown): nothing waits for it.
        out.push(6);
        out.push(7);
        out.push(8);
        drop(rx);
        out.drain().await;
        assert!(!out.backlogged());
    }
}
