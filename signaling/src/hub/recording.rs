//! Recording control (issue 13): who may start and stop a room's recording,
//! and the consent rules that pause or stop it.
//!
//! Circular 49/2017/TT-BYT asks for consultations to be recorded; Law
//! 91/2025 asks for the patient's consent, per purpose. So: in a conference
//! the chair (or, with no chair in the room, a doctor) starts and stops it;
//! in a visit its doctor, only with the patient there and consenting. It
//! starts only while every patient in the room has consented to recording;
//! a patient who withdraws stops it (it is not resumed: someone must start
//! it again, and can only once the patient consents again); a patient who
//! enters without consent pauses it for as long as they are in the room.
//! The room ending or the recorder failing stops it.
//!
//! The SFU is told only whether media is actually written
//! ([`MediaCommand::Recording`]: paused is off); everyone in the room and
//! its lobby is told the state ([`ServerMsg::Recording`]); the record gets
//! every change and refusal ([`RecordEvent::Recording`]).

use tuxa_protocol::{
    ConsultationKind, ErrorCode, ParticipantId, RecordingAction, RecordingReason, RecordingState,
    Role, RoomId, ServerMsg,
};

use super::{Hub, MediaCommand, Output, RecordEvent, Room, SessionId};

/// A room's recording, as the hub keeps it.
#[derive(Debug, Clone, Default)]
pub(super) struct RoomRecording {
    status: RecordingStatus,
}

/// A room's recording as the room and its lobby are told (see
/// [`ServerMsg::Recording`]); also what the join preview shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingStatus {
    pub state: RecordingState,
    /// Unix seconds the state began; `None` for a room never recorded.
    pub since: Option<u64>,
    pub reason: Option<RecordingReason>,
    /// The name of who started it (on, paused) or stopped it (off).
    pub by: Option<String>,
}

impl Default for RecordingStatus {
    fn default() -> Self {
        RecordingStatus {
            state: RecordingState::Off,
            since: None,
            reason: None,
            by: None,
        }
    }
}

impl RecordingStatus {
    pub fn to_msg(&self) -> ServerMsg {
        ServerMsg::Recording {
            state: self.state,
            since: self.since,
            reason: self.reason,
            by: self.by.clone(),
        }
    }

    /// Started and not stopped (media may be paused).
    pub fn running(&self) -> bool {
        self.state != RecordingState::Off
    }
}

/// What happened to a room's recording, for the audit chain.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordingChange {
    Started {
        by: ParticipantId,
    },
    /// Stopped by a person (`by`, reason `stopped`), by a patient's
    /// withdrawal (`by`: the patient), by the room ending, or by a fault
    /// (`detail`: what failed).
    Stopped {
        by: Option<ParticipantId>,
        reason: RecordingReason,
        detail: Option<String>,
    },
    /// Paused because these patients, in the room, have not consented.
    Paused {
        patients: Vec<ParticipantId>,
    },
    Resumed,
    /// A `recording` request was answered with this error.
    Refused {
        by: ParticipantId,
        action: RecordingAction,
        code: ErrorCode,
    },
}

impl Room {
    /// Patients in the room (away ones too: they hold their place) who have
    /// not consented to recording.
    fn recording_blockers(&self) -> Vec<ParticipantId> {
        self.members
            .values()
            .filter(|m| m.info.role == Role::Patient && !m.recording_consent)
            .map(|m| m.info.id)
            .collect()
    }

    fn name_of(&self, pid: ParticipantId) -> Option<String> {
        self.members.get(&pid).map(|m| m.info.name.clone())
    }
}

impl Hub {
    /// The recording of a room, for the join preview (`None`: no such room).
    pub fn recording_status(&self, room: &RoomId) -> Option<RecordingStatus> {
        self.rooms.get(room).map(|r| r.recording.status.clone())
    }

    /// Whether this server can record at all (see `HubConfig`).
    pub fn recording_available(&self) -> bool {
        self.config.recording_available
    }

    /// A `recording` request from `pid`, in the room.
    pub(super) fn recording_request(
        &mut self,
        sid: SessionId,
        room_id: &RoomId,
        pid: ParticipantId,
        action: RecordingAction,
    ) {
        let ty = "recording";
        let check = self.is_check_room(room_id);
        let Some(r) = self.rooms.get(room_id) else {
            return;
        };
        let refusal: Option<(ErrorCode, &str)> = if check || !r.may_end(pid) {
            Some((
                ErrorCode::Forbidden,
                if r.info.kind == ConsultationKind::Conference {
                    "only the chair starts or stops recording (or, with no chair in the room, a doctor)"
                } else {
                    "only the doctor starts or stops recording"
                },
            ))
        } else {
            match action {
                RecordingAction::Start if !self.config.recording_available => Some((
                    ErrorCode::RecordingUnavailable,
                    "this server is not set up to record (no master key)",
                )),
                RecordingAction::Start if r.recording.status.running() => {
                    Some((ErrorCode::AlreadyRecording, "the room is already recording"))
                }
                RecordingAction::Start if !r.recording_blockers().is_empty() => Some((
                    ErrorCode::RecordingConsentMissing,
                    "a patient in the room has not consented to recording",
                )),
                RecordingAction::Start
                    if r.info.kind == ConsultationKind::Visit
                        && !r
                            .members
                            .values()
                            .any(|m| m.info.role == Role::Patient && m.recording_consent) =>
                {
                    Some((
                        ErrorCode::RecordingConsentMissing,
                        "a visit is recorded only with the patient in the room and consenting",
                    ))
                }
                RecordingAction::Stop if !r.recording.status.running() => {
                    Some((ErrorCode::NotRecording, "the room is not recording"))
                }
                _ => None,
            }
        };
        if let Some((code, why)) = refusal {
            self.reply(sid, code, why, ty);
            self.recording_event(
                room_id,
                RecordingChange::Refused {
                    by: pid,
                    action,
                    code,
                },
            );
            return;
        }
        match action {
            RecordingAction::Start => {
                let by = r.name_of(pid);
                self.set_recording(room_id, RecordingState::On, None, by, true);
                self.recording_event(room_id, RecordingChange::Started { by: pid });
            }
            RecordingAction::Stop => {
                let by = r.name_of(pid);
                self.stop_recording(room_id, RecordingReason::Stopped, by, Some(pid), None);
            }
        }
    }

    /// A patient's answer on recording, at a rejoin or a new `consent`:
    /// a withdrawal stops a running recording; otherwise it may pause or
    /// resume.
    pub(super) fn recording_consent_changed(
        &mut self,
        room_id: &RoomId,
        pid: ParticipantId,
        consents: bool,
    ) {
        let Some(r) = self.rooms.get_mut(room_id) else {
            return;
        };
        let in_room = r.members.contains_key(&pid);
        let Some(m) = r.members.get_mut(&pid).or_else(|| r.lobby.get_mut(&pid)) else {
            return;
        };
        let withdrew = m.recording_consent && !consents;
        m.recording_consent = consents;
        if !in_room {
            return;
        }
        if withdrew && r.recording.status.running() {
            let by = r.name_of(pid);
            self.stop_recording(
                room_id,
                RecordingReason::ConsentWithdrawn,
                by,
                Some(pid),
                None,
            );
        } else {
            self.recording_reconcile(room_id);
        }
    }

    /// Pauses a running recording while a patient without consent is in the
    /// room, and resumes it once none is.
    pub(super) fn recording_reconcile(&mut self, room_id: &RoomId) {
        let Some(r) = self.rooms.get(room_id) else {
            return;
        };
        let blockers = r.recording_blockers();
        let by = r.recording.status.by.clone();
        match r.recording.status.state {
            RecordingState::On if !blockers.is_empty() => {
                self.set_recording(
                    room_id,
                    RecordingState::Paused,
                    Some(RecordingReason::PatientWithoutConsent),
                    by,
                    false,
                );
                self.recording_event(room_id, RecordingChange::Paused { patients: blockers });
            }
            RecordingState::Paused if blockers.is_empty() => {
                self.set_recording(room_id, RecordingState::On, None, by, true);
                self.recording_event(room_id, RecordingChange::Resumed);
            }
            _ => {}
        }
    }

    /// After `enter`: the room's recording may pause for the newcomer; if
    /// nothing changed they are told how it stands.
    pub(super) fn recording_entered(&mut self, room_id: &RoomId, sid: SessionId) {
        let before = self.rooms.get(room_id).map(|r| r.recording.status.state);
        self.recording_reconcile(room_id);
        let after = self.rooms.get(room_id).map(|r| r.recording.status.state);
        if before == after {
            self.tell_recording(room_id, sid);
        }
    }

    /// Tells one session (a newcomer, in the room or its lobby) how the
    /// room's recording stands, unless it is simply off.
    pub(super) fn tell_recording(&mut self, room_id: &RoomId, sid: SessionId) {
        let Some(r) = self.rooms.get(room_id) else {
            return;
        };
        if r.recording.status.running() {
            let msg = r.recording.status.to_msg();
            self.send(sid, msg);
        }
    }

    /// The recorder failed: stop, and tell everyone (the chair or doctor is
    /// alerted by their client on reason `fault`).
    pub(super) fn recording_failed(&mut self, room_id: &RoomId, reason: String) {
        let running = self
            .rooms
            .get(room_id)
            .is_some_and(|r| r.recording.status.running());
        if !running {
            // A late report after a stop: nothing to stop, nobody to alarm.
            return;
        }
        let detail: String = reason.chars().take(500).collect();
        self.stop_recording(room_id, RecordingReason::Fault, None, None, Some(detail));
    }

    /// The room ends: its recording stops (nobody is told: `room_ended`
    /// follows for everyone).
    pub(super) fn recording_room_ended(&mut self, room_id: &RoomId) {
        self.recording_halt(room_id, RecordingReason::RoomEnded);
    }

    /// The server stops: every running recording stops, for the record (the
    /// sessions are closed; a restart does not resume it).
    pub(super) fn recording_shutdown(&mut self) {
        let mut running: Vec<RoomId> = self
            .rooms
            .iter()
            .filter(|(_, r)| r.recording.status.running())
            .map(|(id, _)| id.clone())
            .collect();
        running.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        for room in running {
            self.recording_halt(&room, RecordingReason::ServerShutdown);
        }
    }

    /// Stops a running recording without telling the room (it is ending).
    fn recording_halt(&mut self, room_id: &RoomId, reason: RecordingReason) {
        let Some(r) = self.rooms.get_mut(room_id) else {
            return;
        };
        if !r.recording.status.running() {
            return;
        }
        let was_on = r.recording.status.state == RecordingState::On;
        r.recording.status = RecordingStatus {
            state: RecordingState::Off,
            since: Some(self.unix_now),
            reason: Some(reason),
            by: None,
        };
        if was_on {
            self.out.push_back(Output::Media(MediaCommand::Recording {
                room: room_id.clone(),
                on: false,
            }));
        }
        self.recording_event(
            room_id,
            RecordingChange::Stopped {
                by: None,
                reason,
                detail: None,
            },
        );
    }

    fn stop_recording(
        &mut self,
        room_id: &RoomId,
        reason: RecordingReason,
        by_name: Option<String>,
        by: Option<ParticipantId>,
        detail: Option<String>,
    ) {
        self.set_recording(room_id, RecordingState::Off, Some(reason), by_name, false);
        self.recording_event(room_id, RecordingChange::Stopped { by, reason, detail });
    }

    /// Moves a room's recording to `state`, tells the SFU when what it
    /// writes changes, and tells the room and its lobby.
    fn set_recording(
        &mut self,
        room_id: &RoomId,
        state: RecordingState,
        reason: Option<RecordingReason>,
        by: Option<String>,
        media_on: bool,
    ) {
        let now = self.unix_now;
        let Some(r) = self.rooms.get_mut(room_id) else {
            return;
        };
        let was_on = r.recording.status.state == RecordingState::On;
        r.recording.status = RecordingStatus {
            state,
            since: Some(now),
            reason,
            by,
        };
        let msg = r.recording.status.to_msg();
        let sids: Vec<SessionId> = r
            .members
            .values()
            .chain(r.lobby.values())
            .map(|m| m.session)
            .collect();
        if was_on != media_on {
            self.out.push_back(Output::Media(MediaCommand::Recording {
                room: room_id.clone(),
                on: media_on,
            }));
        }
        for sid in sids {
            self.send(sid, msg.clone());
        }
    }

    fn recording_event(&mut self, room_id: &RoomId, change: RecordingChange) {
        self.out.push_back(Output::Record(RecordEvent::Recording {
            room: room_id.clone(),
            change,
        }));
    }
}
