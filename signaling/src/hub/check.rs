//! Pre-call check rooms (`/check`, and the join page's "Kiểm tra thiết bị"):
//! a room of one, where a browser publishes a few seconds of audio and video
//! to the SFU to learn whether media gets through, over UDP or TCP.
//!
//! A check room is not a consultation: it is never stored, and nothing that
//! happens in it reaches the record (its `RecordEvent`s are dropped in
//! [`Hub::poll_output`], so no attendance, audit or quality rows). Whoever
//! asks for one is a stranger (the server rate-limits the asking per
//! address), so what one costs is bounded here: at most
//! [`MAX_CHECK_ROOMS`] at once, each closed [`CHECK_ROOM_LIFETIME`] after it
//! opened, or as soon as its one participant is gone, or
//! [`CHECK_JOIN_WINDOW`] after it opened if nobody came.

use std::time::{Duration, Instant};

use tuxa_protocol::{ConsultationKind, EndReason, Role, RoomId, RoomInfo};

use super::{Hub, RecordEvent, Room, RoomStatus};
use crate::token::Claims;

/// Check rooms open at once, server-wide. Each costs one SFU peer for at
/// most [`CHECK_ROOM_LIFETIME`] (a few hundred kbit/s in, nothing out).
pub const MAX_CHECK_ROOMS: usize = 16;

/// How long a check room (and its token) lives: long enough for the
/// browser's few seconds of media and its statistics on a slow phone.
pub const CHECK_ROOM_LIFETIME: Duration = Duration::from_secs(30);

/// A check room nobody entered within this is closed (an unused token must
/// not hold a place for its whole lifetime).
pub const CHECK_JOIN_WINDOW: Duration = Duration::from_secs(10);

/// The name the check participant gets (never shown to anyone else: nobody
/// else is in the room).
const CHECK_NAME: &str = "Kiểm tra kết nối";

#[derive(Debug)]
pub(super) struct CheckRoom {
    opened: Instant,
    /// Someone was in the room at one of the hub's ticks.
    entered: bool,
}

/// What the server hands the browser: the room and its one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckTicket {
    pub room: RoomId,
    pub token: String,
    pub expires_in: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("{MAX_CHECK_ROOMS} connection checks are running; try again in a few seconds")]
    Busy,
    /// The random room id is already a room's (80 random bits: never seen).
    #[error("could not make a check room; try again")]
    IdTaken,
}

impl Hub {
    /// Opens a check room and mints its one link: a guest who enters
    /// without the lobby. `room_random` and `nonce` are fresh random bytes.
    pub fn open_check_room(
        &mut self,
        now: Instant,
        now_unix: u64,
        room_random: [u8; 10],
        nonce: [u8; 12],
    ) -> Result<CheckTicket, CheckError> {
        if self.check_rooms.len() >= MAX_CHECK_ROOMS {
            return Err(CheckError::Busy);
        }
        let id = RoomId::from_random(room_random);
        if self.rooms.contains_key(&id) {
            return Err(CheckError::IdTaken);
        }
        let claims = Claims {
            room: id.clone(),
            role: Role::Guest,
            name: CHECK_NAME.to_owned(),
            facility: None,
            expires_at: now_unix + CHECK_ROOM_LIFETIME.as_secs(),
            not_before: None,
            pre_admitted: true,
            staff_id: None,
            licence_number: None,
            chair: false,
        };
        let token = self.tokens.mint(&claims, nonce);
        let info = RoomInfo {
            id: id.clone(),
            kind: ConsultationKind::Visit,
            title: CHECK_NAME.to_owned(),
        };
        self.rooms
            .insert(id.clone(), Room::new(info, RoomStatus::Open));
        self.check_rooms.insert(
            id.clone(),
            CheckRoom {
                opened: now,
                entered: false,
            },
        );
        Ok(CheckTicket {
            room: id,
            token,
            expires_in: CHECK_ROOM_LIFETIME,
        })
    }

    /// Check rooms open now (for the tests and the server's log).
    pub fn check_room_count(&self) -> usize {
        self.check_rooms.len()
    }

    pub(super) fn is_check_room(&self, room: &RoomId) -> bool {
        self.check_rooms.contains_key(room)
    }

    /// When [`Hub::expire_check_rooms`] next has something to do, for
    /// [`Hub::poll_timeout`]. `entered` is only learnt at a call to it, so a
    /// room whose participant came (or went) since is due at once.
    pub(super) fn check_rooms_deadline(&self, now: Instant) -> Option<Instant> {
        self.check_rooms
            .iter()
            .map(|(id, check)| {
                let present = self.rooms.get(id).is_some_and(|r| {
                    r.status == RoomStatus::Open
                        && r.members.values().any(|m| m.away_since.is_none())
                });
                if present != check.entered {
                    return now;
                }
                check.opened
                    + if present {
                        CHECK_ROOM_LIFETIME
                    } else {
                        CHECK_JOIN_WINDOW
                    }
            })
            .min()
    }

    /// Ends the check rooms whose time is up or whose participant is gone;
    /// returns when the next one is due.
    pub(super) fn expire_check_rooms(&mut self, now: Instant) -> Option<Instant> {
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        for (id, check) in self.check_rooms.iter_mut() {
            let present = self.rooms.get(id).is_some_and(|r| {
                r.status == RoomStatus::Open && r.members.values().any(|m| m.away_since.is_none())
            });
            check.entered |= present;
            let gone = !present && (check.entered || now >= check.opened + CHECK_JOIN_WINDOW);
            if gone || now >= check.opened + CHECK_ROOM_LIFETIME {
                due.push(id.clone());
            } else {
                let at = check.opened
                    + if present {
                        CHECK_ROOM_LIFETIME
                    } else {
                        CHECK_JOIN_WINDOW
                    };
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        for id in due {
            // Its records are dropped in `poll_output`; the room itself
            // goes once they have been (`forget_ended_checks`).
            self.end_room(&id, EndReason::Ended, None);
        }
        next
    }

    /// Forgets the ended check rooms: called once every output has been
    /// polled, so that none of their records is left to recognise.
    pub(super) fn forget_ended_checks(&mut self) {
        let rooms = &mut self.rooms;
        self.check_rooms.retain(|id, _| {
            let ended = rooms.get(id).is_none_or(|r| r.status == RoomStatus::Ended);
            if ended {
                rooms.remove(id);
            }
            !ended
        });
    }

    /// Whether a fact is about a check room (and so not for the record).
    pub(super) fn is_check_record(&self, ev: &RecordEvent) -> bool {
        let room = match ev {
            RecordEvent::Queue(_) => return false,
            RecordEvent::Joined { room, .. }
            | RecordEvent::Left { room, .. }
            | RecordEvent::TokenRefused { room, .. }
            | RecordEvent::Consent { room, .. }
            | RecordEvent::Waiting { room, .. }
            | RecordEvent::Admitted { room, .. }
            | RecordEvent::Refused { room, .. }
            | RecordEvent::Chat { room, .. }
            | RecordEvent::LinkQuality { room, .. }
            | RecordEvent::LinkLost { room, .. }
            | RecordEvent::LinkBack { room, .. }
            | RecordEvent::SecretaryNamed { room, .. }
            | RecordEvent::Removed { room, .. }
            | RecordEvent::Locked { room, .. }
            | RecordEvent::MuteRequested { room, .. }
            | RecordEvent::Recording { room, .. }
            | RecordEvent::Ended { room, .. } => room,
        };
        self.is_check_room(room)
    }
}
