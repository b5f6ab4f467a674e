//! The hub's side of the on-call queues: wire messages to [`QueueBook`]
//! inputs, its outputs to wire messages, and the pairing hand-off to the
//! server (which creates the room and mints the links, since that needs the
//! store).

use std::time::{Duration, Instant};

use tuxa_protocol::{ClientMsg, ErrorCode, OfferAfterwards, QueueState, RoomId, ServerMsg};

use crate::hub::{Hub, Output, RecordEvent, SessionId};
use crate::queue::{
    AfterOffer, PatientCard, PatientStatus, QueueBook, QueueConfig, QueueError, QueueId,
    QueueInput, QueueOutput, QueueSnapshot, RemovedReason, StaffRef, Ticket, TicketView,
    TransferTarget, WithdrawReason,
};
use crate::wire::{queue_from_wire, staff_from_wire, wire_queue};
use tuxa_records::StaffId;

/// Who a staff session belongs to, as the server's directory says at
/// connection time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffInfo {
    pub staff: StaffRef,
    pub is_doctor: bool,
    /// Queues whose roster has this staff member on call now.
    pub on_call: Vec<QueueId>,
}

/// A call made from the queue, once the server has its room and links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallLinks {
    pub ticket: String,
    pub room: RoomId,
    pub patient_url: String,
    pub doctor_url: String,
}

fn removed_reason(r: RemovedReason) -> &'static str {
    match r {
        RemovedReason::Cancelled => "cancelled",
        RemovedReason::QueueClosed => "queue_closed",
        RemovedReason::Replaced => "replaced",
        RemovedReason::CallEnded => "call_ended",
        RemovedReason::Cleared => "cleared",
    }
}

fn withdraw_reason(r: WithdrawReason) -> &'static str {
    match r {
        WithdrawReason::PatientCancelled => "patient_cancelled",
        WithdrawReason::PatientGone => "patient_gone",
        WithdrawReason::DoctorUnavailable => "doctor_unavailable",
        WithdrawReason::DoctorGone => "doctor_gone",
        WithdrawReason::QueueClosed => "queue_closed",
        WithdrawReason::Cleared => "cleared",
    }
}

fn queue_counts(s: &QueueSnapshot) -> ServerMsg {
    ServerMsg::QueueCounts {
        queue: wire_queue(s.queue),
        waiting: s.waiting,
        offered: s.offered,
        doctors_available: s.doctors_available,
    }
}

/// A queue's tickets as staff see them ([`Hub::queue_tickets`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StaffTicket {
    /// [`Ticket::handle`]: names the ticket without being it.
    pub handle: String,
    pub view: TicketView,
    /// Since the patient joined.
    pub waited: Duration,
}

/// Why staff could not clear a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClearError {
    #[error("no such queue")]
    UnknownQueue,
    #[error("no such ticket in this queue (gone, or in a call)")]
    UnknownTicket,
}

impl Hub {
    /// Configures the on-call queues (caps, timers). Call before any queue
    /// is opened: the book starts afresh.
    pub fn with_queue_config(mut self, config: QueueConfig) -> Hub {
        self.queues = QueueBook::new(config);
        self
    }

    /// A queue's live tickets, for the staff who may clear them; `None`
    /// if the book has no such queue.
    pub fn queue_tickets(&self, now: Instant, queue: QueueId) -> Option<Vec<StaffTicket>> {
        self.queues.snapshot(queue)?;
        Some(
            self.queues
                .tickets_of(queue)
                .into_iter()
                .map(|view| StaffTicket {
                    handle: view.ticket.handle(),
                    waited: now.saturating_duration_since(view.joined_at),
                    view,
                })
                .collect(),
        )
    }

    /// Staff remove a live ticket named by its handle; returns what it was
    /// (for the audit).
    pub fn clear_ticket(
        &mut self,
        now: Instant,
        queue: QueueId,
        handle: &str,
    ) -> Result<StaffTicket, ClearError> {
        let tickets = self
            .queue_tickets(now, queue)
            .ok_or(ClearError::UnknownQueue)?;
        let found = tickets
            .into_iter()
            .find(|t| t.handle == handle)
            .ok_or(ClearError::UnknownTicket)?;
        self.queues.handle(
            now,
            QueueInput::Clear {
                queue,
                ticket: found.view.ticket.clone(),
            },
        );
        self.pump_queues(now);
        Ok(found)
    }

    /// A queue message from a session that has said hello.
    pub(crate) fn on_queue_msg(&mut self, now: Instant, sid: SessionId, msg: ClientMsg) {
        let ty = msg.type_name();
        let input = match msg {
            ClientMsg::QueueJoin {
                queue,
                name,
                phone,
                reason,
            } => {
                if !self.session_consents(sid) {
                    self.reply(
                        sid,
                        ErrorCode::ConsentRequired,
                        "remote examination needs the patient's consent: send consent first",
                        ty,
                    );
                    return;
                }
                let Some(addr) = self.session_addr(sid) else {
                    return;
                };
                let Some(queue) = queue_from_wire(queue) else {
                    self.refuse(sid, "join_queue", QueueError::UnknownQueue);
                    return;
                };
                let ticket = self.next_ticket();
                QueueInput::Join {
                    session: sid,
                    ticket,
                    queue,
                    card: PatientCard {
                        name,
                        phone,
                        reason,
                    },
                    addr,
                }
            }
            ClientMsg::QueueResume { ticket } => QueueInput::Resume {
                session: sid,
                ticket: Ticket(ticket),
            },
            ClientMsg::QueueCancel { ticket } => QueueInput::Cancel {
                session: sid,
                ticket: Ticket(ticket),
            },
            ClientMsg::Available { queues } => {
                let Some(staff) = self.session_staff(sid).filter(|s| s.is_doctor) else {
                    self.reply(sid, ErrorCode::NotOnCall, "sign in as a doctor first", ty);
                    return;
                };
                let on_call =
                    |q: &u64| queue_from_wire(*q).is_some_and(|q| staff.on_call.contains(&q));
                if let Some(q) = queues.iter().find(|q| !on_call(q)) {
                    self.reply(
                        sid,
                        ErrorCode::NotOnCall,
                        &format!("you are not on the roster of queue {q} now"),
                        ty,
                    );
                    return;
                }
                if queues.is_empty() {
                    QueueInput::Unavailable { session: sid }
                } else {
                    QueueInput::Available {
                        session: sid,
                        staff: staff.staff.clone(),
                        // All on the roster, hence all valid ids.
                        queues: queues.into_iter().filter_map(queue_from_wire).collect(),
                    }
                }
            }
            ClientMsg::AcceptPatient { ticket }
            | ClientMsg::DeclinePatient { ticket }
            | ClientMsg::Transfer { ticket, .. }
                if self.session_staff(sid).is_none_or(|s| !s.is_doctor) =>
            {
                let _ = ticket;
                self.reply(sid, ErrorCode::NotOnCall, "sign in as a doctor first", ty);
                return;
            }
            ClientMsg::DoctorFree {} if self.session_staff(sid).is_none_or(|s| !s.is_doctor) => {
                self.reply(sid, ErrorCode::NotOnCall, "sign in as a doctor first", ty);
                return;
            }
            ClientMsg::AcceptPatient { ticket } => QueueInput::Accept {
                session: sid,
                ticket: Ticket(ticket),
            },
            ClientMsg::DeclinePatient { ticket } => QueueInput::Decline {
                session: sid,
                ticket: Ticket(ticket),
            },
            ClientMsg::Transfer {
                ticket,
                queue,
                doctor,
            } => {
                let to = match (queue, doctor) {
                    (Some(q), None) => match queue_from_wire(q) {
                        Some(q) => TransferTarget::Queue(q),
                        None => {
                            self.refuse(sid, "transfer", QueueError::UnknownQueue);
                            return;
                        }
                    },
                    (None, Some(d)) => match staff_from_wire(d).and_then(|d| self.queues.doctor(d))
                    {
                        Some(view) => TransferTarget::Doctor(view.staff.clone()),
                        None => {
                            self.reply(
                                sid,
                                ErrorCode::QueueRefused,
                                "that doctor is not known to the queues (never signed in)",
                                ty,
                            );
                            return;
                        }
                    },
                    _ => {
                        self.reply(
                            sid,
                            ErrorCode::InvalidMessage,
                            "transfer names exactly one of queue or doctor",
                            ty,
                        );
                        return;
                    }
                };
                QueueInput::Transfer {
                    session: sid,
                    ticket: Ticket(ticket),
                    to,
                }
            }
            ClientMsg::DoctorFree {} => QueueInput::DoctorFree { session: sid },
            _ => return,
        };
        // "Done, next patient" ends the visit the doctor leaves: the patient
        // sees the end screen, and the record gets its end time.
        let finished = match &input {
            QueueInput::DoctorFree { .. } => self.session_staff(sid).and_then(|s| {
                let call = self.queues.doctor(s.staff.id)?.call?;
                Some((self.calls.get(&call.0)?.room.clone(), s.staff.id))
            }),
            _ => None,
        };
        self.queues.handle(now, input);
        self.pump_queues(now);
        if let Some((room, doctor)) = finished {
            self.end_visit(now, &room, Some(doctor));
        }
    }

    /// Translates everything the queue book has to say.
    /// A staff member's shifts changed (see [`Input::OnCallChanged`]).
    pub(crate) fn on_call_changed(&mut self, now: Instant, staff: StaffId, on_call: Vec<QueueId>) {
        let sids = self.set_on_call(staff, &on_call);
        for sid in &sids {
            self.send_queue_counts(*sid);
        }
        let Some(view) = self.queues.doctor(staff) else {
            return;
        };
        let still: Vec<QueueId> = view
            .queues
            .iter()
            .copied()
            .filter(|q| on_call.contains(q))
            .collect();
        if !view.available || still.len() == view.queues.len() {
            return;
        }
        let Some(session) = view.session.filter(|s| sids.contains(s)) else {
            return;
        };
        let input = if still.is_empty() {
            QueueInput::Unavailable { session }
        } else {
            QueueInput::Available {
                session,
                staff: view.staff.clone(),
                queues: still,
            }
        };
        self.queues.handle(now, input);
        self.pump_queues(now);
    }

    pub(crate) fn pump_queues(&mut self, now: Instant) {
        while let Some(out) = self.queues.poll_output() {
            match out {
                QueueOutput::Status {
                    session,
                    ticket,
                    status,
                } => {
                    let (queue, state, position, estimate) = match status {
                        PatientStatus::Queued {
                            queue,
                            position,
                            estimate,
                        } => (
                            queue,
                            QueueState::Queued,
                            Some(position),
                            estimate.map(|d| d.as_secs()),
                        ),
                        PatientStatus::Offered { queue } => {
                            (queue, QueueState::Offered, None, None)
                        }
                        PatientStatus::WaitingForDoctor { queue, .. } => {
                            (queue, QueueState::WaitingForDoctor, None, None)
                        }
                    };
                    self.push_send(
                        session,
                        ServerMsg::QueueStatus {
                            ticket: ticket.0,
                            queue: wire_queue(queue),
                            state,
                            position,
                            estimate_secs: estimate,
                        },
                    );
                }
                QueueOutput::Removed {
                    session,
                    ticket,
                    reason,
                } => self.push_send(
                    session,
                    ServerMsg::QueueRemoved {
                        ticket: ticket.0,
                        reason: removed_reason(reason).into(),
                    },
                ),
                QueueOutput::Offer { session, offer } => self.push_send(
                    session,
                    ServerMsg::PatientOffer {
                        ticket: offer.ticket.0,
                        queue: wire_queue(offer.queue),
                        name: offer.card.name,
                        phone: offer.card.phone,
                        reason: offer.card.reason,
                        waited_secs: offer.waited.as_secs(),
                        expires_in_secs: offer.expires_at.saturating_duration_since(now).as_secs(),
                        transferred: offer.transferred_by.is_some(),
                    },
                ),
                QueueOutput::OfferWithdrawn {
                    session,
                    ticket,
                    reason,
                } => self.push_send(
                    session,
                    ServerMsg::PatientOfferWithdrawn {
                        ticket: ticket.0,
                        reason: withdraw_reason(reason).into(),
                        patient: None,
                    },
                ),
                QueueOutput::OfferExpired {
                    session,
                    ticket,
                    afterwards,
                } => self.push_send(
                    session,
                    ServerMsg::PatientOfferWithdrawn {
                        ticket: ticket.0,
                        reason: "expired".into(),
                        patient: Some(match afterwards {
                            AfterOffer::Queued => OfferAfterwards::Queued,
                            AfterOffer::OfferedToAnother => OfferAfterwards::OfferedToAnother,
                            AfterOffer::Left => OfferAfterwards::Left,
                        }),
                    },
                ),
                QueueOutput::Doctor { session, status } => self.push_send(
                    session,
                    ServerMsg::DoctorStatus {
                        available: status.available,
                        queues: status.queues.iter().copied().map(wire_queue).collect(),
                        on_call: status.on_call.is_some(),
                    },
                ),
                QueueOutput::DoctorReplaced { session } => self.push_send(
                    session,
                    ServerMsg::error(
                        ErrorCode::Replaced,
                        "you are taking patients from another window now",
                    ),
                ),
                QueueOutput::Paired(p) => {
                    // A patient who resumed during the call gets the link again.
                    if let Some(links) = self.calls.get(&p.ticket.0).cloned() {
                        if let Some(s) = p.patient_session {
                            self.push_send(
                                s,
                                ServerMsg::CallReady {
                                    ticket: links.ticket,
                                    url: links.patient_url,
                                },
                            );
                        }
                    } else {
                        self.push_output(Output::Paired(p));
                    }
                }
                QueueOutput::Snapshot(snap) => {
                    let counts = queue_counts(&snap);
                    let to: Vec<SessionId> = self.staff_on_call_for(snap.queue);
                    for sid in to {
                        self.push_send(sid, counts.clone());
                    }
                }
                QueueOutput::Record(ev) => self.push_output(Output::Record(RecordEvent::Queue(ev))),
                QueueOutput::Error {
                    session,
                    in_reply_to,
                    reason,
                } => self.refuse(session, in_reply_to, reason),
            }
        }
    }

    /// The queue book's refusal of a session's request (`in_reply_to`:
    /// [`QueueInput::name`]); also the hub's own, for an id from the wire
    /// that no queue can have.
    fn refuse(&mut self, session: SessionId, in_reply_to: &'static str, reason: QueueError) {
        let code = match reason {
            QueueError::NotADoctor | QueueError::NotOnCall => ErrorCode::NotOnCall,
            _ => ErrorCode::QueueRefused,
        };
        self.push_send(
            session,
            ServerMsg::Error {
                code,
                message: format!("{}: {reason}", reason.as_str()),
                in_reply_to: Some(in_reply_to.to_owned()),
            },
        );
    }

    /// The server created the room of a pairing: both get their link.
    pub(crate) fn on_call_ready(
        &mut self,
        now: Instant,
        links: CallLinks,
        patient: Option<SessionId>,
        doctor: Option<SessionId>,
    ) {
        self.room_calls
            .insert(links.room.clone(), links.ticket.clone());
        self.calls.insert(links.ticket.clone(), links.clone());
        if let Some(s) = patient {
            self.push_send(
                s,
                ServerMsg::CallReady {
                    ticket: links.ticket.clone(),
                    url: links.patient_url.clone(),
                },
            );
        }
        if let Some(s) = doctor {
            self.push_send(
                s,
                ServerMsg::CallReady {
                    ticket: links.ticket.clone(),
                    url: links.doctor_url,
                },
            );
        }
        self.pump_queues(now);
    }

    /// A room ended: if it was a queue call, the call is over.
    pub(crate) fn queue_room_ended(&mut self, now: Instant, room: &RoomId) {
        if let Some(ticket) = self.room_calls.remove(room) {
            self.calls.remove(&ticket);
            self.queues.handle(
                now,
                QueueInput::CallEnded {
                    ticket: Ticket(ticket),
                },
            );
            self.pump_queues(now);
        }
    }

    /// Staff sessions on call for `queue` now (doctors and nurses): who
    /// gets its counts.
    fn staff_on_call_for(&self, queue: QueueId) -> Vec<SessionId> {
        let mut sids: Vec<SessionId> = self
            .staff_sessions()
            .filter(|(_, info)| info.on_call.contains(&queue))
            .map(|(sid, _)| sid)
            .collect();
        // The sessions live in a hash map: a fixed order keeps outputs
        // deterministic.
        sids.sort();
        sids
    }

    /// The counts of every queue a staff session is on call for (after
    /// hello, and when their shifts change): the console shows how many
    /// wait before the doctor goes available.
    pub(crate) fn send_queue_counts(&mut self, sid: SessionId) {
        let Some(info) = self.session_staff(sid) else {
            return;
        };
        for q in info.on_call {
            if let Some(snap) = self.queues.snapshot(q) {
                self.push_send(sid, queue_counts(&snap));
            }
        }
    }

    /// An unguessable ticket: HMAC of a counter under a key the server
    /// drew at random (the hub itself draws nothing).
    fn next_ticket(&mut self) -> Ticket {
        self.ticket_counter += 1;
        let tag = aws_lc_rs::hmac::sign(&self.ticket_key, &self.ticket_counter.to_be_bytes());
        Ticket(crate::b64::encode(&tag.as_ref()[..15]))
    }
}
