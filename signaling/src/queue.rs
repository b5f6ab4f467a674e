//! On-call queues and pairing, sans IO: who is waiting for which queue, which
//! doctor is free, who is offered to whom, and what everyone must be told.
//!
//! # Shape
//!
//! [`QueueBook`] is a state machine in the style of [`crate::Hub`]: the server
//! feeds it [`QueueInput`]s with the current `Instant`, calls
//! [`QueueBook::handle_timeout`] when [`QueueBook::next_deadline`] (or its own
//! once-a-second tick) says so, and drains [`QueueOutput`]s with
//! [`QueueBook::poll_output`]. `handle` also fires timers already due, so a
//! driver that only ticks once a second still never lets a late `Accept`
//! beat an expired offer. It never reads a clock, opens a socket or draws
//! a random number: tickets are made (random) by the caller, time is an
//! argument. It knows nothing of JSON; the hub maps frames to inputs and
//! outputs to frames.
//!
//! # Entities
//!
//! - **Queues** ([`QueueId`]): a specialty at a facility, opened and closed by
//!   the server ([`QueueInput::OpenQueue`], [`QueueInput::CloseQueue`]). A
//!   closed queue takes no new patients or transfers but still serves those
//!   already in it (unless closed with `dismiss_waiting`). Queues are never
//!   forgotten.
//! - **Patients**, named by their [`Ticket`] (an unguessable string: whoever
//!   holds it may resume or cancel). A patient is in exactly one *stage*:
//!   in a queue's **line**, **offered** to one doctor, **waiting for a doctor**
//!   they were transferred to, or **in a call**. The patient's WebSocket
//!   session is optional: when it drops the patient keeps their stage for a
//!   grace period (see *Disconnects and resume*). Each patient is joined
//!   from a client address (the server's peer address of the WebSocket).
//! - **Doctors**, named by staff id ([`StaffRef::id`]), bound to at most one
//!   session. A doctor is *available* for a list of queues (their own
//!   facility's only) or not, and independently has at most one pending
//!   offer and at most one call. *Offerable* = available, connected, no offer,
//!   no call.
//!
//! # Order and fairness
//!
//! Each line is ordered by a key `(class, seq)`: `seq` grows with every
//! arrival, `class` is 0 for transferred patients and 1 for ordinary
//! arrivals, so a transferred patient goes ahead of every ordinary arrival
//! (and behind patients transferred before them). A patient whose offer comes
//! back (declined, expired, withdrawn) is put back under their old key, i.e.
//! at the head: nobody who arrived after them is ahead.
//!
//! Pairing runs after every input and timer: repeatedly, across all queues,
//! take the patient with the smallest key who is connected and has an
//! eligible offerable doctor, and offer them to the eligible doctor idle
//! longest (`idle_since`: when they last became available or ended a call;
//! ties by staff id). A doctor who declined a ticket is not eligible for it
//! while any other offerable doctor of the queue is, and not at all until
//! [`QueueConfig::decline_cooldown`] (60 s) after declining. Disconnected
//! patients keep their place but are skipped (a doctor is not offered an
//! empty chair); they are offered once they resume. Offers are exclusive:
//! one ticket, one doctor, for [`QueueConfig::offer_timeout`] (30 s). On
//! timeout the patient goes back to the head and the doctor is made
//! unavailable (they probably walked away) and told so.
//!
//! **Positions** are the order pairing will follow, not the raw keys: a
//! patient whom every on-duty doctor of the queue declined within the
//! cooldown is skipped by pairing, so they are placed (and told they are)
//! behind the patients who can be offered now, and move back to their
//! place when the first of those cooldowns lapses. Without that, a lone
//! doctor's declined patient would read "position 1" while the next
//! patient is offered first. [`QueueBook::line`], [`QueueBook::patient`]
//! and the status outputs all use this order.
//!
//! # Transfers
//!
//! A doctor on a call transfers the patient (by ticket) to a queue or to a
//! doctor; the call ends for the doctor (they become free, the call's length
//! feeds the average, and the record gets `CallEnded` then `Transferred`). To a queue: the patient enters its line with
//! class 0 (at the head, behind earlier transfers). To a doctor: the patient
//! waits for that doctor ([`PatientStatus::WaitingForDoctor`]) and is offered
//! to them as soon as they are offerable; if that does not happen within
//! [`QueueConfig::transfer_wait`] (60 s), or the doctor declines or lets the
//! offer expire, the patient falls back to the head (class 0) of the queue
//! chosen at transfer time: the target doctor's first queue if the book knows
//! them, else the queue of the call. The transferring doctor counts as having
//! declined the ticket (not offered it back unless nobody else is there).
//!
//! # Disconnects and resume
//!
//! [`QueueInput::SessionClosed`] for a patient unbinds the session and starts
//! the grace period. The grace is earned: as long as the patient's sessions
//! have been connected in all, at least [`QueueConfig::min_resume_grace`]
//! (30 s) and at most [`QueueConfig::resume_grace`] (2 min). A patient who
//! waited a while keeps their place through a phone's network change or a
//! page reload; a ticket whose session closed right after joining (a script
//! filling the line) is gone after 30 s. [`QueueInput::Resume`] within it
//! binds the new session,
//! sends the current status, and if the patient is in a call re-emits
//! [`QueueOutput::Paired`] (with `resumed: true`) so the server can send the
//! room link again. After the grace period the patient is dropped
//! ([`QueueEvent::Dropped`], with the stage they were in); a pending offer is
//! withdrawn. A patient in a call who is dropped only loses the right to
//! resume: the call itself lasts until [`QueueInput::CallEnded`] or
//! [`QueueInput::DoctorFree`]. (If the server moves the patient to a
//! different session for the room, it should `Resume` on that session, or
//! expect a `Dropped { stage: InCall }` record two minutes after the queue
//! page's socket closes.)
//!
//! A doctor's session closing makes them unavailable and withdraws their
//! pending offer at once (patient back at the head). A call in progress stays
//! theirs; the doctor can come back with [`QueueInput::Available`] on a new
//! session (which also replaces an older session of the same staff id).
//!
//! # Estimated wait
//!
//! `position × average call ÷ doctors available for the queue`, rounded up to
//! [`QueueConfig::estimate_step`] (a minute) so that a small change of the
//! average does not message every patient. The average is per queue, an
//! exponential moving average of observed call lengths (Paired → call end or
//! transfer) starting at [`QueueConfig::initial_call_estimate`] (10 min).
//! Available doctors are those marked available for the queue and connected,
//! whether idle or on a call; with none the estimate is `None` (unknown).
//!
//! # Outputs
//!
//! Status outputs are diffs: after each input the book recomputes every
//! connected patient's [`PatientStatus`], every connected doctor's
//! [`DoctorStatus`] and every queue's [`QueueSnapshot`], and emits only those
//! that differ from what was last sent. Events (offers, withdrawals,
//! pairings, errors) are emitted as they happen. [`QueueEvent`]s are facts
//! for the record (activity report: waits and drop rates), with the instant
//! they happened and the wait so far.
//!
//! # Abuse
//!
//! Joining costs an anonymous client one consent and one message, so the
//! book caps what one client can hold (refused with
//! [`QueueError::TooManyTickets`]): at most [`QueueConfig::max_per_address`]
//! (5) live tickets (any stage but a call) joined from one client address
//! across all queues (IPv6: one /64, what one subscriber line gets), and at
//! most [`QueueConfig::max_per_phone`] (1) per phone number in one queue
//! (numbers compared by their digits, `+84`/`84` read as `0`; a card without
//! a phone is capped by its address only). Five per address: a commune
//! station or a clinic behind one NAT, or a carrier's CGNAT, may have a few
//! patients waiting at once; a script gets five places, not the line.
//! [`QueueBook::tickets_of`] lists a queue's tickets for staff with
//! [`TicketFlag`]s (many from one address, a phone that holds another
//! ticket, away); [`QueueInput::Clear`] removes one (the patient is told
//! [`RemovedReason::Cleared`]).
//!
//! # Robustness
//!
//! No input sequence panics. Inputs from sessions that name unknown tickets,
//! offers or calls get a [`QueueOutput::Error`] with a [`QueueError`];
//! server inputs naming unknown things are ignored. Tickets and cards are
//! bounded in size and each line in length, so a leaked queue link cannot
//! fill memory. All iteration is over ordered maps, so a given input sequence
//! always yields the same outputs.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::hub::SessionId;

pub use tuxa_records::QueueId;
use tuxa_records::{FacilityId, StaffId};

/// Longest ticket accepted, in bytes.
pub const MAX_TICKET_LEN: usize = 128;
/// Longest patient name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest phone number accepted, in characters.
pub const MAX_PHONE_CHARS: usize = 32;
/// Longest reason for the visit accepted, in characters.
pub const MAX_REASON_CHARS: usize = 2000;

/// Durations in the configuration are capped at this, so that no deadline
/// arithmetic can overflow.
const MAX_CONFIG_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Line classes: transferred patients go ahead of ordinary arrivals.
const CLASS_TRANSFERRED: u8 = 0;
const CLASS_ARRIVAL: u8 = 1;

/// A patient's place, made random by the caller. Whoever holds it may resume
/// or cancel it, so it is a secret: `Debug` shows only its first characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub String);

impl Ticket {
    pub fn new(s: impl Into<String>) -> Ticket {
        Ticket(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What staff and the activity report name a ticket by: the first 8
    /// bytes of its SHA-256, in hex. Not a secret (it resumes nothing).
    pub fn handle(&self) -> String {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.0.as_bytes());
        d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head: String = self.0.chars().take(6).collect();
        if head.len() < self.0.len() {
            write!(f, "Ticket({head:?}…)")
        } else {
            write!(f, "Ticket({head:?})")
        }
    }
}

/// What the patient tells the queue about themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientCard {
    pub name: String,
    pub phone: String,
    pub reason: String,
}

/// A staff member, as the server's directory knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffRef {
    pub id: StaffId,
    pub name: String,
    pub facility: FacilityId,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    /// How long a doctor has to accept or decline an offer.
    pub offer_timeout: Duration,
    /// How long a doctor who declined a ticket is not offered it again
    /// (and afterwards only when no other doctor is offerable).
    pub decline_cooldown: Duration,
    /// How long a patient transferred to a doctor waits for that doctor
    /// before falling back to a queue.
    pub transfer_wait: Duration,
    /// The longest a disconnected patient keeps their place (earned by
    /// having been connected at least as long).
    pub resume_grace: Duration,
    /// The shortest: what a ticket that was barely connected gets.
    pub min_resume_grace: Duration,
    /// The average call length before any call has been seen.
    pub initial_call_estimate: Duration,
    /// Weight of a new call length in the moving average (0..=1).
    pub average_weight: f64,
    /// Estimates are rounded up to a multiple of this (zero: not rounded).
    pub estimate_step: Duration,
    /// Most patients in one queue's line.
    pub max_waiting: usize,
    /// Most live tickets joined from one client address (IPv6: one /64),
    /// all queues together.
    pub max_per_address: usize,
    /// Most live tickets with one phone number in one queue.
    pub max_per_phone: usize,
    /// Tickets from one address at which staff see them flagged.
    pub flag_per_address: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            offer_timeout: Duration::from_secs(30),
            decline_cooldown: Duration::from_secs(60),
            transfer_wait: Duration::from_secs(60),
            resume_grace: Duration::from_secs(120),
            min_resume_grace: Duration::from_secs(30),
            initial_call_estimate: Duration::from_secs(600),
            average_weight: 0.2,
            estimate_step: Duration::from_secs(60),
            max_waiting: 500,
            max_per_address: 5,
            max_per_phone: 1,
            flag_per_address: 3,
        }
    }
}

/// Where a doctor sends a patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferTarget {
    /// To the head of a queue's line.
    Queue(QueueId),
    /// To a specific doctor (any facility).
    Doctor(StaffRef),
}

#[derive(Debug, Clone, PartialEq)]
pub enum QueueInput {
    // ---- from the server ----
    /// Creates a queue, or reopens and renames it.
    OpenQueue {
        queue: QueueId,
        name: String,
        facility: FacilityId,
    },
    /// Stops taking patients; with `dismiss_waiting`, also removes everyone
    /// not yet in a call (told with [`RemovedReason::QueueClosed`]).
    CloseQueue {
        queue: QueueId,
        dismiss_waiting: bool,
    },
    /// The call of this ticket is over (the room ended).
    CallEnded {
        ticket: Ticket,
    },
    /// A WebSocket is gone (patient or doctor or both).
    SessionClosed {
        session: SessionId,
    },
    /// Staff remove a ticket that is not in a call (a flood, a duplicate).
    Clear {
        queue: QueueId,
        ticket: Ticket,
    },

    // ---- from patients ----
    /// Takes a place in a queue with a fresh ticket.
    Join {
        session: SessionId,
        ticket: Ticket,
        queue: QueueId,
        card: PatientCard,
        /// The client's address, for the per-address cap.
        addr: IpAddr,
    },
    /// Takes a ticket back on a (new) session.
    Resume {
        session: SessionId,
        ticket: Ticket,
    },
    /// Gives up a place (not possible once in a call).
    Cancel {
        session: SessionId,
        ticket: Ticket,
    },

    // ---- from doctors ----
    /// The doctor on this session is available for these queues (replacing
    /// any earlier list; empty = unavailable). Binds the staff id to the
    /// session, replacing an older session of theirs.
    Available {
        session: SessionId,
        staff: StaffRef,
        queues: Vec<QueueId>,
    },
    /// The doctor is not taking patients (a call in progress goes on).
    Unavailable {
        session: SessionId,
    },
    Accept {
        session: SessionId,
        ticket: Ticket,
    },
    Decline {
        session: SessionId,
        ticket: Ticket,
    },
    /// Sends the patient of the doctor's call elsewhere; the doctor is free.
    Transfer {
        session: SessionId,
        ticket: Ticket,
        to: TransferTarget,
    },
    /// The doctor ended their call.
    DoctorFree {
        session: SessionId,
    },
}

impl QueueInput {
    /// A short name, for errors' `in_reply_to`.
    pub fn name(&self) -> &'static str {
        match self {
            QueueInput::OpenQueue { .. } => "open_queue",
            QueueInput::CloseQueue { .. } => "close_queue",
            QueueInput::CallEnded { .. } => "call_ended",
            QueueInput::SessionClosed { .. } => "session_closed",
            QueueInput::Clear { .. } => "clear",
            QueueInput::Join { .. } => "join_queue",
            QueueInput::Resume { .. } => "resume",
            QueueInput::Cancel { .. } => "cancel",
            QueueInput::Available { .. } => "available",
            QueueInput::Unavailable { .. } => "unavailable",
            QueueInput::Accept { .. } => "accept",
            QueueInput::Decline { .. } => "decline",
            QueueInput::Transfer { .. } => "transfer",
            QueueInput::DoctorFree { .. } => "doctor_free",
        }
    }
}

/// What a waiting patient sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatientStatus {
    /// In the line, `position` 1 being next.
    Queued {
        queue: QueueId,
        position: u32,
        /// `None`: no doctor available, unknown.
        estimate: Option<Duration>,
    },
    /// A doctor is looking at their card right now.
    Offered { queue: QueueId },
    /// Transferred to this doctor, waiting for them.
    WaitingForDoctor { queue: QueueId, doctor: StaffRef },
}

/// What a doctor sees of themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoctorStatus {
    pub available: bool,
    pub queues: Vec<QueueId>,
    pub on_call: Option<Ticket>,
}

/// An offer to a doctor.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub doctor: StaffId,
    pub queue: QueueId,
    pub ticket: Ticket,
    pub card: PatientCard,
    /// Since the patient joined.
    pub waited: Duration,
    /// Accept or decline before this, or the offer expires.
    pub expires_at: Instant,
    /// The doctor who transferred this patient, if any.
    pub transferred_by: Option<StaffRef>,
}

/// A patient and a doctor are to be put in a call.
#[derive(Debug, Clone, PartialEq)]
pub struct Pairing {
    pub queue: QueueId,
    pub ticket: Ticket,
    pub card: PatientCard,
    /// `None` if the patient's link dropped meanwhile: `Paired` comes again,
    /// with `resumed: true`, when they resume.
    pub patient_session: Option<SessionId>,
    pub doctor: StaffRef,
    /// `None` only in a resumed pairing whose doctor's session is gone.
    pub doctor_session: Option<SessionId>,
    /// From joining to the accept.
    pub waited: Duration,
    /// Sent again for a resumed patient: the room already exists.
    pub resumed: bool,
}

/// Counts for coordinators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSnapshot {
    pub queue: QueueId,
    pub name: String,
    pub facility: FacilityId,
    pub open: bool,
    /// In the line (including disconnected patients within their grace).
    pub waiting: u32,
    /// Offered to a doctor right now.
    pub offered: u32,
    /// Transferred to a doctor, waiting for them (falling back to this queue).
    pub waiting_for_doctor: u32,
    /// Marked available for this queue and connected (idle or on a call).
    pub doctors_available: u32,
    /// Calls in progress with patients of this queue.
    pub calls: u32,
    pub average_call: Duration,
}

/// Why a session no longer holds a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RemovedReason {
    Cancelled,
    /// The queue was closed with `dismiss_waiting`.
    QueueClosed,
    /// The ticket was resumed on another session.
    Replaced,
    /// The call is over.
    CallEnded,
    /// Staff removed the ticket.
    Cleared,
}

/// Why an offer was taken back from a doctor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WithdrawReason {
    /// The patient cancelled.
    PatientCancelled,
    /// The patient's grace period ended.
    PatientGone,
    /// The doctor became unavailable, or no longer serves the queue.
    DoctorUnavailable,
    /// The doctor's session closed.
    DoctorGone,
    QueueClosed,
    /// Staff removed the ticket.
    Cleared,
}

/// Where the patient of an expired offer went: the doctor is told the
/// truth, not "passed to another doctor" when nobody else was free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AfterOffer {
    /// Back in the line (or waiting for the doctor they were transferred
    /// to), for the next available doctor.
    Queued,
    /// Offered to another doctor at once.
    OfferedToAnother,
    /// Gone (their grace period ended at the same time).
    Left,
}

/// The stage a patient was in when they left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropStage {
    Waiting,
    Offered,
    WaitingForDoctor,
    InCall,
}

/// Why a session's input was refused. Stable: the protocol maps these to
/// error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum QueueError {
    #[error("no such queue")]
    UnknownQueue,
    #[error("the queue is closed")]
    QueueClosed,
    #[error("too many patients are waiting in this queue")]
    QueueFull,
    #[error("too many places are held from this address or with this phone number")]
    TooManyTickets,
    #[error("a doctor can only be available for their own facility's queues")]
    WrongFacility,
    #[error("a ticket is 1 to 128 bytes")]
    BadTicket,
    #[error("the patient's name is missing, or a field is too long")]
    BadCard,
    #[error("this ticket is already in use")]
    DuplicateTicket,
    #[error("no such ticket (or its grace period has ended)")]
    UnknownTicket,
    #[error("this session already holds a place")]
    AlreadyQueued,
    #[error("this session is not an on-call doctor")]
    NotADoctor,
    #[error("that patient is not offered to you")]
    NoSuchOffer,
    #[error("you are not on a call with that patient")]
    NotOnCall,
    #[error("the patient is already in a call")]
    NotWaiting,
    #[error("the patient's link has been gone too long")]
    PatientGone,
    #[error("a doctor cannot transfer a patient to themselves")]
    SelfTransfer,
}

impl QueueError {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueError::UnknownQueue => "unknown_queue",
            QueueError::QueueClosed => "queue_closed",
            QueueError::QueueFull => "queue_full",
            QueueError::TooManyTickets => "too_many_tickets",
            QueueError::WrongFacility => "wrong_facility",
            QueueError::BadTicket => "bad_ticket",
            QueueError::BadCard => "bad_card",
            QueueError::DuplicateTicket => "duplicate_ticket",
            QueueError::UnknownTicket => "unknown_ticket",
            QueueError::AlreadyQueued => "already_queued",
            QueueError::NotADoctor => "not_a_doctor",
            QueueError::NoSuchOffer => "no_such_offer",
            QueueError::NotOnCall => "not_on_call",
            QueueError::NotWaiting => "not_waiting",
            QueueError::PatientGone => "patient_gone",
            QueueError::SelfTransfer => "self_transfer",
        }
    }
}

/// Facts for the record. `at` is when it happened (for timers: the deadline,
/// even if noticed a little later); `waited` is since the patient joined.
#[derive(Debug, Clone, PartialEq)]
pub enum QueueEvent {
    Joined {
        at: Instant,
        queue: QueueId,
        ticket: Ticket,
    },
    Offered {
        at: Instant,
        queue: QueueId,
        ticket: Ticket,
        doctor: StaffId,
        waited: Duration,
    },
    Accepted {
        at: Instant,
        queue: QueueId,
        ticket: Ticket,
        doctor: StaffId,
        waited: Duration,
    },
    Declined {
        at: Instant,
        queue: QueueId,
        ticket: Ticket,
        doctor: StaffId,
        waited: Duration,
    },
    OfferExpired {
        at: Instant,
        queue: QueueId,
        ticket: Ticket,
        doctor: StaffId,
    },
    OfferWithdrawn {
        at: Instant,
        queue: QueueId,
        ticket: Ticket,
        doctor: StaffId,
        reason: WithdrawReason,
    },
    Transferred {
        at: Instant,
        from: QueueId,
        ticket: Ticket,
        by: StaffId,
        to: TransferTarget,
        /// The length of the call that ended with the transfer.
        call: Duration,
    },
    /// A patient transferred to a doctor went to a queue instead.
    TransferFellBack {
        at: Instant,
        queue: QueueId,
        ticket: Ticket,
        doctor: StaffId,
    },
    CallEnded {
        at: Instant,
        queue: QueueId,
        ticket: Ticket,
        doctor: StaffId,
        duration: Duration,
    },
    /// The patient's session closed; the grace period starts.
    Away { at: Instant, ticket: Ticket },
    Resumed {
        at: Instant,
        ticket: Ticket,
        /// How long they were away (`None`: they were not).
        away: Option<Duration>,
    },
    /// The grace period ended.
    Dropped {
        at: Instant,
        queue: QueueId,
        ticket: Ticket,
        stage: DropStage,
        waited: Duration,
    },
    Cancelled {
        at: Instant,
        queue: QueueId,
        ticket: Ticket,
        stage: DropStage,
        waited: Duration,
    },
    /// Removed when the queue closed with `dismiss_waiting`.
    Dismissed {
        at: Instant,
        queue: QueueId,
        ticket: Ticket,
        stage: DropStage,
        waited: Duration,
    },
    /// Removed by staff ([`QueueInput::Clear`]).
    Cleared {
        at: Instant,
        queue: QueueId,
        ticket: Ticket,
        stage: DropStage,
        waited: Duration,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum QueueOutput {
    /// To a patient: their position and estimate (or offered, or waiting
    /// for a doctor). Sent when it changes, and on join and resume.
    Status {
        session: SessionId,
        ticket: Ticket,
        status: PatientStatus,
    },
    /// To a patient: this session no longer holds the ticket.
    Removed {
        session: SessionId,
        ticket: Ticket,
        reason: RemovedReason,
    },
    /// To a doctor: accept or decline this patient.
    Offer {
        session: SessionId,
        offer: Offer,
    },
    /// To a doctor: the offer is no longer yours.
    OfferWithdrawn {
        session: SessionId,
        ticket: Ticket,
        reason: WithdrawReason,
    },
    /// To a doctor: you did not answer in time; you are now unavailable.
    /// Sent once pairing has run, so that it says where the patient went.
    OfferExpired {
        session: SessionId,
        ticket: Ticket,
        afterwards: AfterOffer,
    },
    /// To a doctor: their availability, queues and call, when it changes.
    Doctor {
        session: SessionId,
        status: DoctorStatus,
    },
    /// To a doctor's old session: the same staff id is now on another one.
    DoctorReplaced {
        session: SessionId,
    },
    /// Create the room (or, if `resumed`, find it) and send both links.
    Paired(Pairing),
    /// For coordinators: a queue's counts, when they change.
    Snapshot(QueueSnapshot),
    Record(QueueEvent),
    /// An input from this session was refused.
    Error {
        session: SessionId,
        in_reply_to: &'static str,
        reason: QueueError,
    },
}

/// Where a patient is, for queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatientStage {
    Queued { position: u32 },
    Offered { doctor: StaffId },
    WaitingForDoctor { doctor: StaffId },
    InCall { doctor: StaffId },
}

/// A patient, for queries.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientView {
    pub ticket: Ticket,
    pub queue: QueueId,
    pub card: PatientCard,
    pub session: Option<SessionId>,
    pub stage: PatientStage,
    pub joined_at: Instant,
    pub away_since: Option<Instant>,
}

/// Why staff may want to look at a ticket twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TicketFlag {
    /// At least [`QueueConfig::flag_per_address`] live tickets were joined
    /// from this ticket's client address.
    ManyFromAddress,
    /// Another live ticket (any queue) has the same phone number.
    DuplicatePhone,
    /// The patient's session is gone (the grace period is running).
    Away,
}

impl TicketFlag {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketFlag::ManyFromAddress => "many_from_address",
            TicketFlag::DuplicatePhone => "duplicate_phone",
            TicketFlag::Away => "away",
        }
    }
}

/// A live ticket as staff see it ([`QueueBook::tickets_of`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TicketView {
    pub ticket: Ticket,
    pub queue: QueueId,
    pub name: String,
    pub phone: String,
    pub stage: PatientStage,
    pub joined_at: Instant,
    pub away_since: Option<Instant>,
    /// Live tickets joined from the same address (this one included).
    pub same_address: u32,
    /// Live tickets with the same phone number, any queue (this one
    /// included; 0 without a phone).
    pub same_phone: u32,
    pub flags: Vec<TicketFlag>,
}

/// A doctor, for queries.
#[derive(Debug, Clone, PartialEq)]
pub struct DoctorView {
    pub staff: StaffRef,
    pub session: Option<SessionId>,
    pub available: bool,
    pub queues: Vec<QueueId>,
    pub offer: Option<Ticket>,
    pub call: Option<Ticket>,
}

type LineKey = (u8, u64);

#[derive(Debug)]
struct Queue {
    name: String,
    facility: FacilityId,
    open: bool,
    line: BTreeMap<LineKey, Ticket>,
    /// Moving average of call lengths, in milliseconds.
    average_ms: f64,
    last_snapshot: Option<QueueSnapshot>,
}

#[derive(Debug, Clone)]
enum Stage {
    Line,
    Directed {
        doctor: StaffRef,
        deadline: Instant,
    },
    Offered {
        doctor: StaffId,
        expires: Instant,
        /// Set when the offer came from a transfer to this doctor.
        directed: Option<(StaffRef, Instant)>,
    },
    InCall {
        doctor: StaffId,
    },
}

#[derive(Debug)]
struct Patient {
    card: PatientCard,
    /// The line they are in, or go back to.
    queue: QueueId,
    session: Option<SessionId>,
    away_since: Option<Instant>,
    joined_at: Instant,
    key: LineKey,
    stage: Stage,
    /// Doctors who declined (or transferred) this ticket, and when.
    declined: BTreeMap<StaffId, Instant>,
    transferred_by: Option<StaffRef>,
    last_status: Option<PatientStatus>,
    /// The client address at join, reduced by [`addr_key`].
    addr: IpAddr,
    /// The phone's digits by [`phone_key`] (`None`: no phone given).
    phone: Option<String>,
    /// Time connected before the current session (or absence) began.
    connected: Duration,
    /// When the current session was bound (meaningful while `session`).
    bound_at: Instant,
}

impl Patient {
    /// Not yet in a call: what the caps count.
    fn live(&self) -> bool {
        !matches!(self.stage, Stage::InCall { .. })
    }
}

#[derive(Debug)]
struct Call {
    ticket: Ticket,
    queue: QueueId,
    started: Instant,
}

#[derive(Debug)]
struct Doctor {
    staff: StaffRef,
    session: Option<SessionId>,
    available: bool,
    queues: Vec<QueueId>,
    idle_since: Instant,
    offer: Option<Ticket>,
    call: Option<Call>,
    last_status: Option<DoctorStatus>,
}

impl Doctor {
    fn offerable(&self) -> bool {
        self.available && self.session.is_some() && self.offer.is_none() && self.call.is_none()
    }

    fn on_duty_for(&self, q: QueueId) -> bool {
        self.available && self.session.is_some() && self.queues.contains(&q)
    }
}

pub struct QueueBook {
    config: QueueConfig,
    queues: BTreeMap<QueueId, Queue>,
    patients: BTreeMap<Ticket, Patient>,
    patient_sessions: BTreeMap<SessionId, Ticket>,
    doctors: BTreeMap<StaffId, Doctor>,
    doctor_sessions: BTreeMap<SessionId, StaffId>,
    /// Calls in progress, ticket → doctor. A call outlives its patient's
    /// entry when the patient's grace period ends mid-call.
    calls: BTreeMap<Ticket, StaffId>,
    next_seq: u64,
    out: VecDeque<QueueOutput>,
    /// The `now` of the latest input or timer: what queries compute the
    /// offer order with, so that they agree with what patients were told.
    now: Option<Instant>,
    /// Offers that expired in this step (doctor session, ticket, doctor):
    /// told after pairing, with where the patient went.
    expired: Vec<(SessionId, Ticket, StaffId)>,
}

impl QueueBook {
    pub fn new(config: QueueConfig) -> QueueBook {
        let cap = |d: Duration| d.min(MAX_CONFIG_DURATION);
        let weight = if (0.0..=1.0).contains(&config.average_weight) {
            config.average_weight
        } else {
            QueueConfig::default().average_weight
        };
        QueueBook {
            config: QueueConfig {
                offer_timeout: cap(config.offer_timeout),
                decline_cooldown: cap(config.decline_cooldown),
                transfer_wait: cap(config.transfer_wait),
                resume_grace: cap(config.resume_grace),
                min_resume_grace: cap(config.min_resume_grace).min(cap(config.resume_grace)),
                initial_call_estimate: cap(config.initial_call_estimate),
                average_weight: weight,
                estimate_step: cap(config.estimate_step),
                max_waiting: config.max_waiting,
                max_per_address: config.max_per_address,
                max_per_phone: config.max_per_phone,
                flag_per_address: config.flag_per_address,
            },
            queues: BTreeMap::new(),
            patients: BTreeMap::new(),
            patient_sessions: BTreeMap::new(),
            doctors: BTreeMap::new(),
            doctor_sessions: BTreeMap::new(),
            calls: BTreeMap::new(),
            next_seq: 0,
            out: VecDeque::new(),
            now: None,
            expired: Vec::new(),
        }
    }

    /// Feeds one input. Timers already due at `now` fire first, so an
    /// `Accept` arriving after its offer expired does not win.
    pub fn handle(&mut self, now: Instant, input: QueueInput) {
        self.now = Some(now);
        self.fire_timers(now);
        self.on_input(now, input);
        self.pair(now);
        self.tell_expired();
        self.flush();
    }

    /// Fires due timers (offer expiry, grace, transfer fallback, decline
    /// cooldown). Call at least when [`QueueBook::next_deadline`] says, or
    /// once a second; returns the next deadline.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Instant> {
        self.now = Some(now);
        self.fire_timers(now);
        self.pair(now);
        self.tell_expired();
        self.flush();
        self.next_deadline(now)
    }

    pub fn poll_output(&mut self) -> Option<QueueOutput> {
        self.out.pop_front()
    }

    /// The earliest instant after `now` at which a timer is due.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| {
            if next.is_none_or(|n| t < n) {
                next = Some(t);
            }
        };
        for p in self.patients.values() {
            match &p.stage {
                Stage::Offered { expires, .. } => consider(*expires),
                Stage::Directed { deadline, .. } => consider(*deadline),
                Stage::Line => {
                    for at in p.declined.values() {
                        let lapse = *at + self.config.decline_cooldown;
                        if lapse > now {
                            consider(lapse);
                        }
                    }
                }
                Stage::InCall { .. } => {}
            }
            if let Some(end) = self.grace_end(p) {
                consider(end);
            }
        }
        next
    }

    // ---------------------------------------------------------------- queries

    /// Tickets waiting in a queue's line, in the order they will be
    /// offered (see *Positions*), next first.
    pub fn line(&self, queue: QueueId) -> Vec<Ticket> {
        self.offer_order(queue)
            .into_iter()
            .map(|(_, t)| t.clone())
            .collect()
    }

    /// Every ticket the book holds (all stages).
    pub fn tickets(&self) -> impl Iterator<Item = &Ticket> {
        self.patients.keys()
    }

    pub fn patient(&self, ticket: &Ticket) -> Option<PatientView> {
        let p = self.patients.get(ticket)?;
        let stage = match &p.stage {
            Stage::Line => PatientStage::Queued {
                position: self.position(p.queue, p.key).unwrap_or(0),
            },
            Stage::Directed { doctor, .. } => PatientStage::WaitingForDoctor { doctor: doctor.id },
            Stage::Offered { doctor, .. } => PatientStage::Offered { doctor: *doctor },
            Stage::InCall { doctor } => PatientStage::InCall { doctor: *doctor },
        };
        Some(PatientView {
            ticket: ticket.clone(),
            queue: p.queue,
            card: p.card.clone(),
            session: p.session,
            stage,
            joined_at: p.joined_at,
            away_since: p.away_since,
        })
    }

    /// What the patient should be seeing now (`None` in a call or unknown).
    pub fn status(&self, ticket: &Ticket) -> Option<PatientStatus> {
        let p = self.patients.get(ticket)?;
        match &p.stage {
            Stage::Line => {
                let position = self.position(p.queue, p.key)?;
                Some(PatientStatus::Queued {
                    queue: p.queue,
                    position,
                    estimate: self.estimate(p.queue, position),
                })
            }
            _ => self.non_line_status(p),
        }
    }

    pub fn doctor(&self, staff_id: StaffId) -> Option<DoctorView> {
        self.doctors.get(&staff_id).map(|d| DoctorView {
            staff: d.staff.clone(),
            session: d.session,
            available: d.available,
            queues: d.queues.clone(),
            offer: d.offer.clone(),
            call: d.call.as_ref().map(|c| c.ticket.clone()),
        })
    }

    /// Every doctor the book knows (connected, or on a call).
    pub fn doctors(&self) -> Vec<DoctorView> {
        self.doctors
            .keys()
            .filter_map(|id| self.doctor(*id))
            .collect()
    }

    /// Calls in progress: ticket and doctor.
    pub fn calls(&self) -> impl Iterator<Item = (&Ticket, StaffId)> {
        self.calls.iter().map(|(t, d)| (t, *d))
    }

    /// The ticket a patient session holds.
    pub fn ticket_of(&self, session: SessionId) -> Option<&Ticket> {
        self.patient_sessions.get(&session)
    }

    /// The staff id of the doctor on a session.
    pub fn doctor_of(&self, session: SessionId) -> Option<StaffId> {
        self.doctor_sessions.get(&session).copied()
    }

    pub fn queue_ids(&self) -> impl Iterator<Item = QueueId> + '_ {
        self.queues.keys().copied()
    }

    pub fn snapshot(&self, queue: QueueId) -> Option<QueueSnapshot> {
        let q = self.queues.get(&queue)?;
        let mut s = QueueSnapshot {
            queue,
            name: q.name.clone(),
            facility: q.facility,
            open: q.open,
            waiting: count(q.line.len()),
            offered: 0,
            waiting_for_doctor: 0,
            doctors_available: count(
                self.doctors
                    .values()
                    .filter(|d| d.on_duty_for(queue))
                    .count(),
            ),
            calls: count(
                self.doctors
                    .values()
                    .filter(|d| d.call.as_ref().is_some_and(|c| c.queue == queue))
                    .count(),
            ),
            average_call: Duration::from_millis(q.average_ms.round() as u64),
        };
        for p in self.patients.values().filter(|p| p.queue == queue) {
            match p.stage {
                Stage::Offered { .. } => s.offered += 1,
                Stage::Directed { .. } => s.waiting_for_doctor += 1,
                _ => {}
            }
        }
        Some(s)
    }

    /// A queue's live tickets (not in a call), oldest first, with what
    /// staff should look at twice.
    pub fn tickets_of(&self, queue: QueueId) -> Vec<TicketView> {
        let mut by_addr: BTreeMap<IpAddr, u32> = BTreeMap::new();
        let mut by_phone: BTreeMap<&str, u32> = BTreeMap::new();
        for p in self.patients.values().filter(|p| p.live()) {
            *by_addr.entry(p.addr).or_default() += 1;
            if let Some(ph) = &p.phone {
                *by_phone.entry(ph).or_default() += 1;
            }
        }
        let mut v: Vec<TicketView> = self
            .patients
            .iter()
            .filter(|(_, p)| p.queue == queue && p.live())
            .filter_map(|(t, p)| {
                let view = self.patient(t)?;
                let same_address = by_addr.get(&p.addr).copied().unwrap_or(0);
                let same_phone = p
                    .phone
                    .as_deref()
                    .and_then(|ph| by_phone.get(ph).copied())
                    .unwrap_or(0);
                let mut flags = Vec::new();
                if same_address as usize >= self.config.flag_per_address.max(2) {
                    flags.push(TicketFlag::ManyFromAddress);
                }
                if same_phone > 1 {
                    flags.push(TicketFlag::DuplicatePhone);
                }
                if p.session.is_none() {
                    flags.push(TicketFlag::Away);
                }
                Some(TicketView {
                    ticket: t.clone(),
                    queue,
                    name: p.card.name.clone(),
                    phone: p.card.phone.clone(),
                    stage: view.stage,
                    joined_at: p.joined_at,
                    away_since: p.away_since,
                    same_address,
                    same_phone,
                    flags,
                })
            })
            .collect();
        v.sort_by(|a, b| (a.joined_at, &a.ticket).cmp(&(b.joined_at, &b.ticket)));
        v
    }

    /// The live ticket of `queue` whose [`Ticket::handle`] is `handle`.
    pub fn ticket_by_handle(&self, queue: QueueId, handle: &str) -> Option<Ticket> {
        self.patients
            .iter()
            .find(|(t, p)| p.queue == queue && p.live() && t.handle() == handle)
            .map(|(t, _)| t.clone())
    }

    pub fn snapshots(&self) -> Vec<QueueSnapshot> {
        self.queues
            .keys()
            .filter_map(|q| self.snapshot(*q))
            .collect()
    }

    /// The estimated wait at `position` (1-based) in a queue.
    pub fn estimate(&self, queue: QueueId, position: u32) -> Option<Duration> {
        let q = self.queues.get(&queue)?;
        let doctors = self
            .doctors
            .values()
            .filter(|d| d.on_duty_for(queue))
            .count();
        estimate_with(q.average_ms, position, doctors, self.config.estimate_step)
    }

    // ---------------------------------------------------------------- inputs

    fn on_input(&mut self, now: Instant, input: QueueInput) {
        let ty = input.name();
        let (session, result) = match input {
            QueueInput::OpenQueue {
                queue,
                name,
                facility,
            } => {
                self.open_queue(queue, name, facility);
                return;
            }
            QueueInput::CloseQueue {
                queue,
                dismiss_waiting,
            } => {
                self.close_queue(now, queue, dismiss_waiting);
                return;
            }
            QueueInput::CallEnded { ticket } => {
                if let Some(doctor) = self.calls.get(&ticket).copied() {
                    self.end_call(now, doctor);
                }
                return;
            }
            QueueInput::SessionClosed { session } => {
                self.session_closed(now, session);
                return;
            }
            QueueInput::Clear { queue, ticket } => {
                self.clear(now, queue, &ticket);
                return;
            }
            QueueInput::Join {
                session,
                ticket,
                queue,
                card,
                addr,
            } => (session, self.join(now, session, ticket, queue, card, addr)),
            QueueInput::Resume { session, ticket } => (session, self.resume(now, session, ticket)),
            QueueInput::Cancel { session, ticket } => (session, self.cancel(now, session, ticket)),
            QueueInput::Available {
                session,
                staff,
                queues,
            } => (session, self.available(now, session, staff, queues)),
            QueueInput::Unavailable { session } => (session, self.unavailable(now, session)),
            QueueInput::Accept { session, ticket } => (session, self.accept(now, session, ticket)),
            QueueInput::Decline { session, ticket } => {
                (session, self.decline(now, session, ticket))
            }
            QueueInput::Transfer {
                session,
                ticket,
                to,
            } => (session, self.transfer(now, session, ticket, to)),
            QueueInput::DoctorFree { session } => (session, self.doctor_free(now, session)),
        };
        if let Err(reason) = result {
            self.out.push_back(QueueOutput::Error {
                session,
                in_reply_to: ty,
                reason,
            });
        }
    }

    fn open_queue(&mut self, id: QueueId, name: String, facility: FacilityId) {
        let initial = self.config.initial_call_estimate.as_millis() as f64;
        let q = self.queues.entry(id).or_insert_with(|| Queue {
            name: String::new(),
            facility,
            open: true,
            line: BTreeMap::new(),
            average_ms: initial,
            last_snapshot: None,
        });
        q.name = name;
        q.facility = facility;
        q.open = true;
    }

    fn close_queue(&mut self, now: Instant, id: QueueId, dismiss: bool) {
        let Some(q) = self.queues.get_mut(&id) else {
            return;
        };
        q.open = false;
        if !dismiss {
            return;
        }
        let tickets: Vec<Ticket> = self
            .patients
            .iter()
            .filter(|(_, p)| p.queue == id && !matches!(p.stage, Stage::InCall { .. }))
            .map(|(t, _)| t.clone())
            .collect();
        for ticket in tickets {
            let Some(p) = self.remove_patient(now, &ticket, WithdrawReason::QueueClosed) else {
                continue;
            };
            if let Some(session) = p.session {
                self.out.push_back(QueueOutput::Removed {
                    session,
                    ticket: ticket.clone(),
                    reason: RemovedReason::QueueClosed,
                });
            }
            self.record(QueueEvent::Dismissed {
                at: now,
                queue: p.queue,
                ticket,
                stage: drop_stage(&p.stage),
                waited: now.saturating_duration_since(p.joined_at),
            });
        }
    }

    fn join(
        &mut self,
        now: Instant,
        session: SessionId,
        ticket: Ticket,
        queue: QueueId,
        card: PatientCard,
        addr: IpAddr,
    ) -> Result<(), QueueError> {
        if ticket.0.is_empty() || ticket.0.len() > MAX_TICKET_LEN {
            return Err(QueueError::BadTicket);
        }
        if !card_ok(&card) {
            return Err(QueueError::BadCard);
        }
        let max = self.config.max_waiting;
        let q = self.queues.get(&queue).ok_or(QueueError::UnknownQueue)?;
        if !q.open {
            return Err(QueueError::QueueClosed);
        }
        if self.patient_sessions.contains_key(&session) {
            return Err(QueueError::AlreadyQueued);
        }
        if self.patients.contains_key(&ticket) || self.calls.contains_key(&ticket) {
            return Err(QueueError::DuplicateTicket);
        }
        if q.line.len() >= max {
            return Err(QueueError::QueueFull);
        }
        let addr = addr_key(addr);
        let phone = phone_key(&card.phone);
        let from_addr = self
            .patients
            .values()
            .filter(|p| p.live() && p.addr == addr)
            .count();
        let with_phone = phone.as_ref().map_or(0, |ph| {
            self.patients
                .values()
                .filter(|p| p.live() && p.queue == queue && p.phone.as_ref() == Some(ph))
                .count()
        });
        if from_addr >= self.config.max_per_address || with_phone >= self.config.max_per_phone {
            return Err(QueueError::TooManyTickets);
        }
        let key = (CLASS_ARRIVAL, self.seq());
        if let Some(q) = self.queues.get_mut(&queue) {
            q.line.insert(key, ticket.clone());
        }
        self.patients.insert(
            ticket.clone(),
            Patient {
                card,
                queue,
                session: Some(session),
                away_since: None,
                joined_at: now,
                key,
                stage: Stage::Line,
                declined: BTreeMap::new(),
                transferred_by: None,
                last_status: None,
                addr,
                phone,
                connected: Duration::ZERO,
                bound_at: now,
            },
        );
        self.patient_sessions.insert(session, ticket.clone());
        self.record(QueueEvent::Joined {
            at: now,
            queue,
            ticket,
        });
        Ok(())
    }

    fn resume(
        &mut self,
        now: Instant,
        session: SessionId,
        ticket: Ticket,
    ) -> Result<(), QueueError> {
        if !self.patients.contains_key(&ticket) {
            return Err(QueueError::UnknownTicket);
        }
        if self
            .patient_sessions
            .get(&session)
            .is_some_and(|t| *t != ticket)
        {
            return Err(QueueError::AlreadyQueued);
        }
        let Some(p) = self.patients.get_mut(&ticket) else {
            return Err(QueueError::UnknownTicket);
        };
        let old = p.session.replace(session);
        if old.is_some() {
            // Another tab takes over: the connected time goes on.
            p.connected += now.saturating_duration_since(p.bound_at);
        }
        p.bound_at = now;
        let away = p
            .away_since
            .take()
            .map(|a| now.saturating_duration_since(a));
        // Whatever was sent before went to another session: send it again.
        p.last_status = None;
        let in_call = matches!(p.stage, Stage::InCall { .. });
        if let Some(old) = old
            && old != session
        {
            self.patient_sessions.remove(&old);
            self.out.push_back(QueueOutput::Removed {
                session: old,
                ticket: ticket.clone(),
                reason: RemovedReason::Replaced,
            });
        }
        self.patient_sessions.insert(session, ticket.clone());
        self.record(QueueEvent::Resumed {
            at: now,
            ticket: ticket.clone(),
            away,
        });
        if in_call && let Some(pairing) = self.pairing(&ticket, true) {
            self.out.push_back(QueueOutput::Paired(pairing));
        }
        Ok(())
    }

    fn cancel(
        &mut self,
        now: Instant,
        session: SessionId,
        ticket: Ticket,
    ) -> Result<(), QueueError> {
        let p = self
            .patients
            .get(&ticket)
            .ok_or(QueueError::UnknownTicket)?;
        if matches!(p.stage, Stage::InCall { .. }) {
            return Err(QueueError::NotWaiting);
        }
        let Some(p) = self.remove_patient(now, &ticket, WithdrawReason::PatientCancelled) else {
            return Err(QueueError::UnknownTicket);
        };
        if let Some(bound) = p.session {
            self.out.push_back(QueueOutput::Removed {
                session: bound,
                ticket: ticket.clone(),
                reason: RemovedReason::Cancelled,
            });
        }
        if p.session != Some(session) {
            self.out.push_back(QueueOutput::Removed {
                session,
                ticket: ticket.clone(),
                reason: RemovedReason::Cancelled,
            });
        }
        self.record(QueueEvent::Cancelled {
            at: now,
            queue: p.queue,
            ticket,
            stage: drop_stage(&p.stage),
            waited: now.saturating_duration_since(p.joined_at),
        });
        Ok(())
    }

    fn available(
        &mut self,
        now: Instant,
        session: SessionId,
        staff: StaffRef,
        queues: Vec<QueueId>,
    ) -> Result<(), QueueError> {
        let mut list: Vec<QueueId> = Vec::with_capacity(queues.len());
        for q in queues {
            let queue = self.queues.get(&q).ok_or(QueueError::UnknownQueue)?;
            if queue.facility != staff.facility {
                return Err(QueueError::WrongFacility);
            }
            if !list.contains(&q) {
                list.push(q);
            }
        }
        let id = staff.id;
        // This session was another doctor's: that doctor is gone.
        if let Some(other) = self.doctor_sessions.get(&session).copied()
            && other != id
        {
            self.doctor_sessions.remove(&session);
            self.doctor_gone(now, other);
        }
        let d = self.doctors.entry(id).or_insert_with(|| Doctor {
            staff: staff.clone(),
            session: None,
            available: false,
            queues: Vec::new(),
            idle_since: now,
            offer: None,
            call: None,
            last_status: None,
        });
        d.staff = staff;
        let old = d.session.replace(session);
        let rebound = old != Some(session);
        if rebound {
            d.last_status = None;
        }
        let was_available = d.available;
        d.available = !list.is_empty();
        d.queues = list;
        if d.available && !was_available && d.call.is_none() {
            d.idle_since = now;
        }
        let offer = d.offer.clone();
        let still_serves = d.available;
        let queues_now = d.queues.clone();
        if let Some(old) = old
            && old != session
        {
            self.doctor_sessions.remove(&old);
            self.out
                .push_back(QueueOutput::DoctorReplaced { session: old });
        }
        self.doctor_sessions.insert(session, id);
        if let Some(ticket) = offer {
            // A transfer to this doctor does not depend on their queues.
            let keep = self.patients.get(&ticket).is_some_and(|p| match &p.stage {
                Stage::Offered {
                    directed: Some(_), ..
                } => still_serves,
                _ => still_serves && queues_now.contains(&p.queue),
            });
            if !keep {
                self.return_offer(now, &ticket, WithdrawReason::DoctorUnavailable, true);
            } else if rebound && let Some(offer) = self.offer_for(&ticket, id, now) {
                self.out.push_back(QueueOutput::Offer { session, offer });
            }
        }
        Ok(())
    }

    fn unavailable(&mut self, now: Instant, session: SessionId) -> Result<(), QueueError> {
        let id = self.doctor_by_session(session)?;
        let Some(d) = self.doctors.get_mut(&id) else {
            return Err(QueueError::NotADoctor);
        };
        d.available = false;
        if let Some(ticket) = d.offer.clone() {
            self.return_offer(now, &ticket, WithdrawReason::DoctorUnavailable, true);
        }
        Ok(())
    }

    fn accept(
        &mut self,
        now: Instant,
        session: SessionId,
        ticket: Ticket,
    ) -> Result<(), QueueError> {
        let id = self.doctor_by_session(session)?;
        let d = self.doctors.get_mut(&id).ok_or(QueueError::NotADoctor)?;
        if d.offer.as_ref() != Some(&ticket) {
            return Err(QueueError::NoSuchOffer);
        }
        let Some(p) = self.patients.get_mut(&ticket) else {
            // Cannot happen (an offer's patient is never removed without
            // withdrawing it), but do not leave the doctor stuck if it does.
            d.offer = None;
            return Err(QueueError::NoSuchOffer);
        };
        d.offer = None;
        d.call = Some(Call {
            ticket: ticket.clone(),
            queue: p.queue,
            started: now,
        });
        p.stage = Stage::InCall { doctor: id };
        let (queue, waited) = (p.queue, now.saturating_duration_since(p.joined_at));
        self.calls.insert(ticket.clone(), id);
        self.record(QueueEvent::Accepted {
            at: now,
            queue,
            ticket: ticket.clone(),
            doctor: id,
            waited,
        });
        if let Some(pairing) = self.pairing(&ticket, false) {
            self.out.push_back(QueueOutput::Paired(pairing));
        }
        Ok(())
    }

    fn decline(
        &mut self,
        now: Instant,
        session: SessionId,
        ticket: Ticket,
    ) -> Result<(), QueueError> {
        let id = self.doctor_by_session(session)?;
        let d = self.doctors.get_mut(&id).ok_or(QueueError::NotADoctor)?;
        if d.offer.as_ref() != Some(&ticket) {
            return Err(QueueError::NoSuchOffer);
        }
        d.offer = None;
        let Some(p) = self.patients.get_mut(&ticket) else {
            return Err(QueueError::NoSuchOffer);
        };
        p.declined.insert(id, now);
        let directed = matches!(
            p.stage,
            Stage::Offered {
                directed: Some(_),
                ..
            }
        );
        let (queue, waited) = (p.queue, now.saturating_duration_since(p.joined_at));
        self.record(QueueEvent::Declined {
            at: now,
            queue,
            ticket: ticket.clone(),
            doctor: id,
            waited,
        });
        if directed {
            self.fall_back(now, &ticket, id);
        } else {
            self.back_to_line(&ticket);
        }
        Ok(())
    }

    fn transfer(
        &mut self,
        now: Instant,
        session: SessionId,
        ticket: Ticket,
        to: TransferTarget,
    ) -> Result<(), QueueError> {
        let id = self.doctor_by_session(session)?;
        let d = self.doctors.get(&id).ok_or(QueueError::NotADoctor)?;
        if d.call.as_ref().map(|c| &c.ticket) != Some(&ticket) {
            return Err(QueueError::NotOnCall);
        }
        let call_queue = d.call.as_ref().map(|c| c.queue);
        let by = d.staff.clone();
        if !self.patients.contains_key(&ticket) {
            return Err(QueueError::PatientGone);
        }
        let (queue, stage) = match &to {
            TransferTarget::Queue(q) => {
                let queue = self.queues.get(q).ok_or(QueueError::UnknownQueue)?;
                if !queue.open {
                    return Err(QueueError::QueueClosed);
                }
                (*q, None)
            }
            TransferTarget::Doctor(target) => {
                if target.id == id {
                    return Err(QueueError::SelfTransfer);
                }
                let theirs = self.doctors.get(&target.id).and_then(|t| {
                    t.queues
                        .iter()
                        .copied()
                        .find(|q| self.queues.get(q).is_some_and(|q| q.open))
                });
                let fallback = theirs
                    .or(call_queue)
                    .or_else(|| self.patients.get(&ticket).map(|p| p.queue));
                let Some(fallback) = fallback else {
                    return Err(QueueError::PatientGone);
                };
                (
                    fallback,
                    Some(Stage::Directed {
                        doctor: target.clone(),
                        deadline: now + self.config.transfer_wait,
                    }),
                )
            }
        };
        let call = self.end_call_only(now, id);
        let key = (CLASS_TRANSFERRED, self.seq());
        let Some(p) = self.patients.get_mut(&ticket) else {
            return Err(QueueError::PatientGone);
        };
        let from = p.queue;
        p.queue = queue;
        p.key = key;
        p.declined.clear();
        p.declined.insert(id, now);
        p.transferred_by = Some(by);
        p.last_status = None;
        match stage {
            Some(s) => p.stage = s,
            None => {
                p.stage = Stage::Line;
                if let Some(q) = self.queues.get_mut(&queue) {
                    q.line.insert(key, ticket.clone());
                }
            }
        }
        self.record(QueueEvent::Transferred {
            at: now,
            from,
            ticket,
            by: id,
            to,
            call: call.unwrap_or_default(),
        });
        self.prune_doctor(id);
        Ok(())
    }

    fn doctor_free(&mut self, now: Instant, session: SessionId) -> Result<(), QueueError> {
        let id = self.doctor_by_session(session)?;
        if self.doctors.get(&id).is_none_or(|d| d.call.is_none()) {
            return Err(QueueError::NotOnCall);
        }
        self.end_call(now, id);
        Ok(())
    }

    fn session_closed(&mut self, now: Instant, session: SessionId) {
        if let Some(ticket) = self.patient_sessions.remove(&session)
            && let Some(p) = self.patients.get_mut(&ticket)
        {
            p.session = None;
            p.away_since = Some(now);
            p.connected += now.saturating_duration_since(p.bound_at);
            self.record(QueueEvent::Away { at: now, ticket });
        }
        if let Some(id) = self.doctor_sessions.remove(&session) {
            self.doctor_gone(now, id);
        }
    }

    fn clear(&mut self, now: Instant, queue: QueueId, ticket: &Ticket) {
        if self
            .patients
            .get(ticket)
            .is_none_or(|p| p.queue != queue || !p.live())
        {
            return;
        }
        let Some(p) = self.remove_patient(now, ticket, WithdrawReason::Cleared) else {
            return;
        };
        if let Some(session) = p.session {
            self.out.push_back(QueueOutput::Removed {
                session,
                ticket: ticket.clone(),
                reason: RemovedReason::Cleared,
            });
        }
        self.record(QueueEvent::Cleared {
            at: now,
            queue,
            ticket: ticket.clone(),
            stage: drop_stage(&p.stage),
            waited: now.saturating_duration_since(p.joined_at),
        });
    }

    // ---------------------------------------------------------------- helpers

    /// When an away patient's grace period ends: the time they had been
    /// connected, within `min_resume_grace..=resume_grace`.
    fn grace_end(&self, p: &Patient) -> Option<Instant> {
        let away = p.away_since?;
        let c = &self.config;
        Some(away + p.connected.clamp(c.min_resume_grace, c.resume_grace))
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn record(&mut self, e: QueueEvent) {
        self.out.push_back(QueueOutput::Record(e));
    }

    fn doctor_by_session(&self, session: SessionId) -> Result<StaffId, QueueError> {
        self.doctor_sessions
            .get(&session)
            .copied()
            .filter(|id| self.doctors.contains_key(id))
            .ok_or(QueueError::NotADoctor)
    }

    /// 1-based position of a line key in a queue, in offer order.
    fn position(&self, queue: QueueId, key: LineKey) -> Option<u32> {
        self.offer_order(queue)
            .iter()
            .position(|(k, _)| *k == key)
            .map(|i| count(i + 1))
    }

    /// A queue's line in the order pairing will offer it: by key, except
    /// that a patient every on-duty doctor of the queue declined less than
    /// [`QueueConfig::decline_cooldown`] ago goes behind those who can be
    /// offered now (pairing skips them until a cooldown lapses, which is a
    /// timer: then they move back to their place).
    fn offer_order(&self, queue: QueueId) -> Vec<(LineKey, &Ticket)> {
        let Some(q) = self.queues.get(&queue) else {
            return Vec::new();
        };
        let on_duty: Vec<StaffId> = self
            .doctors
            .values()
            .filter(|d| d.on_duty_for(queue))
            .map(|d| d.staff.id)
            .collect();
        let cooldown = self.config.decline_cooldown;
        let blocked = |ticket: &Ticket| -> bool {
            let (Some(now), Some(p)) = (self.now, self.patients.get(ticket)) else {
                return false;
            };
            !on_duty.is_empty()
                && on_duty
                    .iter()
                    .all(|d| p.declined.get(d).is_some_and(|at| *at + cooldown > now))
        };
        let mut order: Vec<(bool, LineKey, &Ticket)> =
            q.line.iter().map(|(k, t)| (blocked(t), *k, t)).collect();
        // Already in key order: a stable sort on the flag keeps it within
        // each group.
        order.sort_by_key(|(b, _, _)| *b);
        order.into_iter().map(|(_, k, t)| (k, t)).collect()
    }

    fn non_line_status(&self, p: &Patient) -> Option<PatientStatus> {
        match &p.stage {
            Stage::Line | Stage::InCall { .. } => None,
            Stage::Offered { .. } => Some(PatientStatus::Offered { queue: p.queue }),
            Stage::Directed { doctor, .. } => Some(PatientStatus::WaitingForDoctor {
                queue: p.queue,
                doctor: doctor.clone(),
            }),
        }
    }

    fn pairing(&self, ticket: &Ticket, resumed: bool) -> Option<Pairing> {
        let p = self.patients.get(ticket)?;
        let Stage::InCall { doctor } = p.stage else {
            return None;
        };
        let d = self.doctors.get(&doctor)?;
        let call = d.call.as_ref()?;
        Some(Pairing {
            queue: call.queue,
            ticket: ticket.clone(),
            card: p.card.clone(),
            patient_session: p.session,
            doctor: d.staff.clone(),
            doctor_session: d.session,
            waited: call.started.saturating_duration_since(p.joined_at),
            resumed,
        })
    }

    fn offer_for(&self, ticket: &Ticket, doctor: StaffId, now: Instant) -> Option<Offer> {
        let p = self.patients.get(ticket)?;
        let Stage::Offered { expires, .. } = p.stage else {
            return None;
        };
        Some(Offer {
            doctor,
            queue: p.queue,
            ticket: ticket.clone(),
            card: p.card.clone(),
            waited: now.saturating_duration_since(p.joined_at),
            expires_at: expires,
            transferred_by: p.transferred_by.clone(),
        })
    }

    /// Takes a patient out of the book entirely, withdrawing a pending offer
    /// (told to the doctor). A call in progress lives on with its doctor.
    fn remove_patient(
        &mut self,
        now: Instant,
        ticket: &Ticket,
        reason: WithdrawReason,
    ) -> Option<Patient> {
        let p = self.patients.remove(ticket)?;
        if let Some(s) = p.session
            && self.patient_sessions.get(&s) == Some(ticket)
        {
            self.patient_sessions.remove(&s);
        }
        match &p.stage {
            Stage::Line => {
                if let Some(q) = self.queues.get_mut(&p.queue) {
                    q.line.remove(&p.key);
                }
            }
            Stage::Offered { doctor, .. } => {
                if let Some(d) = self.doctors.get_mut(doctor)
                    && d.offer.as_ref() == Some(ticket)
                {
                    d.offer = None;
                    if let Some(session) = d.session {
                        self.out.push_back(QueueOutput::OfferWithdrawn {
                            session,
                            ticket: ticket.clone(),
                            reason,
                        });
                    }
                }
                self.record(QueueEvent::OfferWithdrawn {
                    at: now,
                    queue: p.queue,
                    ticket: ticket.clone(),
                    doctor: *doctor,
                    reason,
                });
            }
            Stage::Directed { .. } | Stage::InCall { .. } => {}
        }
        Some(p)
    }

    /// Takes a pending offer back from its doctor (for reasons on the
    /// doctor's side); the patient returns to where they were.
    fn return_offer(&mut self, now: Instant, ticket: &Ticket, reason: WithdrawReason, tell: bool) {
        let Some(p) = self.patients.get_mut(ticket) else {
            return;
        };
        let Stage::Offered {
            doctor, directed, ..
        } = p.stage.clone()
        else {
            return;
        };
        let queue = p.queue;
        match directed {
            Some((staff, deadline)) => {
                p.stage = Stage::Directed {
                    doctor: staff,
                    deadline,
                }
            }
            None => {
                p.stage = Stage::Line;
                if let Some(q) = self.queues.get_mut(&queue) {
                    q.line.insert(p.key, ticket.clone());
                }
            }
        }
        if let Some(d) = self.doctors.get_mut(&doctor)
            && d.offer.as_ref() == Some(ticket)
        {
            d.offer = None;
            if tell && let Some(session) = d.session {
                self.out.push_back(QueueOutput::OfferWithdrawn {
                    session,
                    ticket: ticket.clone(),
                    reason,
                });
            }
        }
        self.record(QueueEvent::OfferWithdrawn {
            at: now,
            queue,
            ticket: ticket.clone(),
            doctor,
            reason,
        });
    }

    /// Puts an offered patient back in their line under their old key.
    fn back_to_line(&mut self, ticket: &Ticket) {
        let Some(p) = self.patients.get_mut(ticket) else {
            return;
        };
        p.stage = Stage::Line;
        if let Some(q) = self.queues.get_mut(&p.queue) {
            q.line.insert(p.key, ticket.clone());
        }
    }

    /// A patient transferred to a doctor goes to the head of their fallback
    /// queue instead.
    fn fall_back(&mut self, at: Instant, ticket: &Ticket, doctor: StaffId) {
        let key = (CLASS_TRANSFERRED, self.seq());
        let Some(p) = self.patients.get_mut(ticket) else {
            return;
        };
        p.key = key;
        p.stage = Stage::Line;
        let queue = p.queue;
        if let Some(q) = self.queues.get_mut(&queue) {
            q.line.insert(key, ticket.clone());
        }
        self.record(QueueEvent::TransferFellBack {
            at,
            queue,
            ticket: ticket.clone(),
            doctor,
        });
    }

    fn doctor_gone(&mut self, now: Instant, id: StaffId) {
        let Some(d) = self.doctors.get_mut(&id) else {
            return;
        };
        d.session = None;
        d.available = false;
        d.last_status = None;
        if let Some(ticket) = d.offer.clone() {
            self.return_offer(now, &ticket, WithdrawReason::DoctorGone, false);
        }
        self.prune_doctor(id);
    }

    /// Forgets a doctor who has no session and no call.
    fn prune_doctor(&mut self, id: StaffId) {
        if self
            .doctors
            .get(&id)
            .is_some_and(|d| d.session.is_none() && d.call.is_none() && d.offer.is_none())
        {
            self.doctors.remove(&id);
        }
    }

    /// Ends a doctor's call: the doctor is free, the length feeds the
    /// average, and the record gets `CallEnded`. Returns the length. The
    /// patient's entry is left alone (see `end_call`).
    fn end_call_only(&mut self, now: Instant, doctor: StaffId) -> Option<Duration> {
        let d = self.doctors.get_mut(&doctor)?;
        let call = d.call.take()?;
        d.idle_since = now;
        self.calls.remove(&call.ticket);
        let duration = now.saturating_duration_since(call.started);
        let w = self.config.average_weight;
        if let Some(q) = self.queues.get_mut(&call.queue) {
            let sample = duration.as_millis() as f64;
            q.average_ms += w * (sample - q.average_ms);
        }
        self.record(QueueEvent::CallEnded {
            at: now,
            queue: call.queue,
            ticket: call.ticket,
            doctor,
            duration,
        });
        Some(duration)
    }

    /// Ends a call and forgets its patient.
    fn end_call(&mut self, now: Instant, doctor: StaffId) {
        let ticket = self
            .doctors
            .get(&doctor)
            .and_then(|d| d.call.as_ref())
            .map(|c| c.ticket.clone());
        self.end_call_only(now, doctor);
        if let Some(ticket) = ticket
            && self
                .patients
                .get(&ticket)
                .is_some_and(|p| matches!(p.stage, Stage::InCall { doctor: d } if d == doctor))
            && let Some(p) = self.patients.remove(&ticket)
            && let Some(session) = p.session
        {
            self.patient_sessions.remove(&session);
            self.out.push_back(QueueOutput::Removed {
                session,
                ticket,
                reason: RemovedReason::CallEnded,
            });
        }
        self.prune_doctor(doctor);
    }

    // ---------------------------------------------------------------- timers

    fn fire_timers(&mut self, now: Instant) {
        // (when, kind, ticket): offers expire before grace ends at the same
        // instant, so a doctor who did not answer is marked unavailable.
        let mut due: Vec<(Instant, u8, Ticket)> = Vec::new();
        for (t, p) in &self.patients {
            if let Stage::Offered { expires, .. } = p.stage
                && expires <= now
            {
                due.push((expires, 0, t.clone()));
            }
            if let Some(end) = self.grace_end(p)
                && end <= now
            {
                due.push((end, 1, t.clone()));
            }
        }
        due.sort();
        for (at, kind, ticket) in due {
            match kind {
                0 => self.expire_offer(at, &ticket),
                _ => self.grace_over(at, &ticket),
            }
        }
    }

    fn expire_offer(&mut self, at: Instant, ticket: &Ticket) {
        let Some(p) = self.patients.get(ticket) else {
            return;
        };
        let Stage::Offered {
            doctor,
            expires,
            ref directed,
        } = p.stage
        else {
            return;
        };
        if expires > at {
            return;
        }
        let directed = directed.is_some();
        let queue = p.queue;
        if let Some(d) = self.doctors.get_mut(&doctor)
            && d.offer.as_ref() == Some(ticket)
        {
            d.offer = None;
            d.available = false;
            if let Some(session) = d.session {
                self.expired.push((session, ticket.clone(), doctor));
            }
        }
        self.record(QueueEvent::OfferExpired {
            at,
            queue,
            ticket: ticket.clone(),
            doctor,
        });
        if directed {
            self.fall_back(at, ticket, doctor);
        } else {
            self.back_to_line(ticket);
        }
    }

    fn grace_over(&mut self, at: Instant, ticket: &Ticket) {
        let Some(p) = self.patients.get(ticket) else {
            return;
        };
        if p.session.is_some() || self.grace_end(p).is_none_or(|end| end > at) {
            return;
        }
        let Some(p) = self.remove_patient(at, ticket, WithdrawReason::PatientGone) else {
            return;
        };
        self.record(QueueEvent::Dropped {
            at,
            queue: p.queue,
            ticket: ticket.clone(),
            stage: drop_stage(&p.stage),
            waited: at.saturating_duration_since(p.joined_at),
        });
    }

    /// Tells the doctors of offers that expired in this step where each
    /// patient is now (pairing has run: another doctor may have them).
    fn tell_expired(&mut self) {
        for (session, ticket, doctor) in std::mem::take(&mut self.expired) {
            let afterwards = match self.patients.get(&ticket).map(|p| &p.stage) {
                None => AfterOffer::Left,
                Some(Stage::Offered { doctor: d, .. } | Stage::InCall { doctor: d })
                    if *d != doctor =>
                {
                    AfterOffer::OfferedToAnother
                }
                Some(_) => AfterOffer::Queued,
            };
            self.out.push_back(QueueOutput::OfferExpired {
                session,
                ticket,
                afterwards,
            });
        }
    }

    // ---------------------------------------------------------------- pairing

    fn pair(&mut self, now: Instant) {
        // Transfers to a named doctor first: that doctor was chosen.
        let directed: Vec<(Ticket, StaffId, Instant)> = self
            .patients
            .iter()
            .filter_map(|(t, p)| match &p.stage {
                Stage::Directed { doctor, deadline } => Some((t.clone(), doctor.id, *deadline)),
                _ => None,
            })
            .collect();
        for (ticket, doctor, deadline) in directed {
            let connected = self
                .patients
                .get(&ticket)
                .is_some_and(|p| p.session.is_some());
            let offerable = self.doctors.get(&doctor).is_some_and(Doctor::offerable);
            if connected && offerable {
                self.offer(now, &ticket, doctor);
            } else if deadline <= now {
                self.fall_back(deadline, &ticket, doctor);
            }
        }
        // Then the lines: oldest key first, to the doctor idle longest.
        loop {
            let mut free: Vec<&Doctor> = self.doctors.values().filter(|d| d.offerable()).collect();
            if free.is_empty() {
                break;
            }
            free.sort_by_key(|d| (d.idle_since, d.staff.id));
            let mut best: Option<(LineKey, Ticket, StaffId)> = None;
            for (qid, q) in &self.queues {
                let serving: Vec<&Doctor> = free
                    .iter()
                    .copied()
                    .filter(|d| d.queues.contains(qid))
                    .collect();
                if serving.is_empty() {
                    continue;
                }
                for (key, ticket) in &q.line {
                    if best.as_ref().is_some_and(|b| b.0 <= *key) {
                        break;
                    }
                    let Some(p) = self.patients.get(ticket) else {
                        continue;
                    };
                    if p.session.is_none() {
                        continue;
                    }
                    if let Some(d) = self.pick(&serving, p, now) {
                        best = Some((*key, ticket.clone(), d));
                        break;
                    }
                }
            }
            match best {
                Some((_, ticket, doctor)) => self.offer(now, &ticket, doctor),
                None => break,
            }
        }
    }

    /// The doctor (from `serving`, idle longest first) to offer `p` to.
    fn pick(&self, serving: &[&Doctor], p: &Patient, now: Instant) -> Option<StaffId> {
        if let Some(d) = serving
            .iter()
            .find(|d| !p.declined.contains_key(&d.staff.id))
        {
            return Some(d.staff.id);
        }
        let cooldown = self.config.decline_cooldown;
        serving
            .iter()
            .find(|d| {
                p.declined
                    .get(&d.staff.id)
                    .is_some_and(|at| *at + cooldown <= now)
            })
            .map(|d| d.staff.id)
    }

    fn offer(&mut self, now: Instant, ticket: &Ticket, doctor: StaffId) {
        let expires = now + self.config.offer_timeout;
        let Some(p) = self.patients.get_mut(ticket) else {
            return;
        };
        let directed = match &p.stage {
            Stage::Line => {
                if let Some(q) = self.queues.get_mut(&p.queue) {
                    q.line.remove(&p.key);
                }
                None
            }
            Stage::Directed { doctor, deadline } => Some((doctor.clone(), *deadline)),
            Stage::Offered { .. } | Stage::InCall { .. } => return,
        };
        p.stage = Stage::Offered {
            doctor,
            expires,
            directed,
        };
        let (queue, waited) = (p.queue, now.saturating_duration_since(p.joined_at));
        let Some(d) = self.doctors.get_mut(&doctor) else {
            return;
        };
        d.offer = Some(ticket.clone());
        let session = d.session;
        if let Some(session) = session
            && let Some(offer) = self.offer_for(ticket, doctor, now)
        {
            self.out.push_back(QueueOutput::Offer { session, offer });
        }
        self.record(QueueEvent::Offered {
            at: now,
            queue,
            ticket: ticket.clone(),
            doctor,
            waited,
        });
    }

    // ---------------------------------------------------------------- diffs

    /// Emits every status and snapshot that differs from the last one sent.
    fn flush(&mut self) {
        let step = self.config.estimate_step;
        let mut on_duty: BTreeMap<QueueId, usize> = BTreeMap::new();
        for d in self.doctors.values() {
            for q in &d.queues {
                if d.on_duty_for(*q) {
                    *on_duty.entry(*q).or_default() += 1;
                }
            }
        }
        // Patients in lines.
        let mut queued: BTreeMap<Ticket, PatientStatus> = BTreeMap::new();
        for (qid, q) in &self.queues {
            let n = on_duty.get(qid).copied().unwrap_or(0);
            for (i, (_, ticket)) in self.offer_order(*qid).into_iter().enumerate() {
                let position = count(i + 1);
                queued.insert(
                    ticket.clone(),
                    PatientStatus::Queued {
                        queue: *qid,
                        position,
                        estimate: estimate_with(q.average_ms, position, n, step),
                    },
                );
            }
        }
        let mut updates: Vec<(Ticket, Option<PatientStatus>)> = Vec::new();
        for (ticket, p) in &self.patients {
            if p.session.is_none() {
                continue;
            }
            let status = match p.stage {
                Stage::Line => queued.remove(ticket),
                _ => self.non_line_status(p),
            };
            if status != p.last_status {
                updates.push((ticket.clone(), status));
            }
        }
        for (ticket, status) in updates {
            let Some(p) = self.patients.get_mut(&ticket) else {
                continue;
            };
            p.last_status = status.clone();
            if let (Some(session), Some(status)) = (p.session, status) {
                self.out.push_back(QueueOutput::Status {
                    session,
                    ticket,
                    status,
                });
            }
        }
        // Doctors.
        for d in self.doctors.values_mut() {
            let Some(session) = d.session else {
                continue;
            };
            let status = DoctorStatus {
                available: d.available,
                queues: d.queues.clone(),
                on_call: d.call.as_ref().map(|c| c.ticket.clone()),
            };
            if d.last_status.as_ref() != Some(&status) {
                d.last_status = Some(status.clone());
                self.out.push_back(QueueOutput::Doctor { session, status });
            }
        }
        // Coordinators.
        let ids: Vec<QueueId> = self.queues.keys().copied().collect();
        for id in ids {
            let Some(snap) = self.snapshot(id) else {
                continue;
            };
            let Some(q) = self.queues.get_mut(&id) else {
                continue;
            };
            if q.last_snapshot.as_ref() != Some(&snap) {
                q.last_snapshot = Some(snap.clone());
                self.out.push_back(QueueOutput::Snapshot(snap));
            }
        }
    }
}

impl Default for QueueBook {
    fn default() -> Self {
        QueueBook::new(QueueConfig::default())
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn card_ok(card: &PatientCard) -> bool {
    !card.name.trim().is_empty()
        && card.name.chars().count() <= MAX_NAME_CHARS
        && card.phone.chars().count() <= MAX_PHONE_CHARS
        && card.reason.chars().count() <= MAX_REASON_CHARS
}

/// What the per-address cap counts by: an IPv4 address (also when mapped
/// into IPv6), or an IPv6 /64 (one subscriber line's prefix; the rest is
/// the device's to choose, so a single line has endless addresses).
pub fn addr_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut o = v6.octets();
                o[8..].fill(0);
                IpAddr::V6(o.into())
            }
        },
    }
}

/// A phone number's digits, with the country code 84 read as the trunk 0
/// (`+84 912 345 678` and `0912345678` are one phone); `None` without
/// digits.
pub fn phone_key(phone: &str) -> Option<String> {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return None;
    }
    match digits.strip_prefix("84") {
        Some(rest) if digits.len() >= 11 => Some(format!("0{rest}")),
        _ => Some(digits),
    }
}

fn drop_stage(stage: &Stage) -> DropStage {
    match stage {
        Stage::Line => DropStage::Waiting,
        Stage::Offered { .. } => DropStage::Offered,
        Stage::Directed { .. } => DropStage::WaitingForDoctor,
        Stage::InCall { .. } => DropStage::InCall,
    }
}

/// `position × average ÷ doctors`, rounded up to `step`; `None` without
/// doctors.
fn estimate_with(
    average_ms: f64,
    position: u32,
    doctors: usize,
    step: Duration,
) -> Option<Duration> {
    if doctors == 0 {
        return None;
    }
    // `as` saturates (and maps NaN to 0): no overflow, no panic.
    let average = average_ms.max(0.0).round() as u128;
    let ms = average.saturating_mul(u128::from(position)) / doctors as u128;
    let step = step.as_millis();
    let ms = if step == 0 {
        ms
    } else {
        ms.div_ceil(step).saturating_mul(step)
    };
    Some(Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)))
}
