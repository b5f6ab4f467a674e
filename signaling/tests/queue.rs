//! The on-call queue book driven through its public API only, in simulated
//! time: `Instant`s are one `Instant::now()` plus `Duration`s, nothing sleeps.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tuxa_records::{FacilityId, StaffId};
use tuxa_signaling::SessionId;
use tuxa_signaling::queue::{
    AfterOffer, DoctorStatus, DropStage, Pairing, PatientCard, PatientStage, PatientStatus,
    QueueBook, QueueConfig, QueueError, QueueEvent, QueueId, QueueInput, QueueOutput,
    RemovedReason, StaffRef, Ticket, TicketFlag, TransferTarget, WithdrawReason,
};

const FACILITY: FacilityId = FacilityId(1);
const NOI: QueueId = QueueId(1);
const NHI: QueueId = QueueId(2);
const MIN: Duration = Duration::from_secs(60);
const SEC: Duration = Duration::from_secs(1);

struct World {
    book: QueueBook,
    now: Instant,
    next_sid: u64,
}

impl World {
    fn new() -> World {
        World::with_config(QueueConfig::default())
    }

    /// Every disconnected patient keeps their place two minutes, however
    /// briefly they were connected (for tests of what happens meanwhile).
    fn with_flat_grace() -> World {
        World::with_config(QueueConfig {
            min_resume_grace: 2 * MIN,
            ..QueueConfig::default()
        })
    }

    fn with_config(config: QueueConfig) -> World {
        let mut w = World {
            book: QueueBook::new(config),
            now: Instant::now(),
            next_sid: 1,
        };
        w.open(NOI, "Nội khoa — BVĐK tỉnh");
        w.open(NHI, "Nhi khoa — BVĐK tỉnh");
        w
    }

    fn open(&mut self, queue: QueueId, name: &str) {
        let out = self.handle(QueueInput::OpenQueue {
            queue,
            name: name.into(),
            facility: FACILITY,
        });
        assert!(
            out.iter().all(|o| matches!(o, QueueOutput::Snapshot(_))),
            "{out:?}"
        );
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    fn handle(&mut self, input: QueueInput) -> Vec<QueueOutput> {
        self.book.handle(self.now, input);
        self.drain()
    }

    /// Moves the clock and fires timers.
    fn tick(&mut self, d: Duration) -> Vec<QueueOutput> {
        self.advance(d);
        let next = self.book.handle_timeout(self.now);
        if let Some(next) = next {
            assert!(next > self.now, "a deadline in the past would spin");
        }
        self.drain()
    }

    fn drain(&mut self) -> Vec<QueueOutput> {
        let mut v = Vec::new();
        while let Some(o) = self.book.poll_output() {
            v.push(o);
        }
        v
    }

    fn session(&mut self) -> SessionId {
        let s = SessionId(self.next_sid);
        self.next_sid += 1;
        s
    }

    fn join(&mut self, queue: QueueId, ticket: &str) -> (SessionId, Vec<QueueOutput>) {
        let session = self.session();
        let out = self.handle(QueueInput::Join {
            session,
            addr: addr_of(session),
            ticket: t(ticket),
            queue,
            card: card(ticket),
        });
        assert!(errors(&out).is_empty(), "{out:?}");
        (session, out)
    }

    fn doctor(&mut self, id: i64, queues: &[QueueId]) -> (SessionId, Vec<QueueOutput>) {
        let session = self.session();
        let out = self.available(session, id, queues);
        (session, out)
    }

    fn available(&mut self, session: SessionId, id: i64, queues: &[QueueId]) -> Vec<QueueOutput> {
        let out = self.handle(QueueInput::Available {
            session,
            staff: staff(id),
            queues: queues.to_vec(),
        });
        assert!(errors(&out).is_empty(), "{out:?}");
        out
    }

    fn accept(&mut self, session: SessionId, ticket: &str) -> Vec<QueueOutput> {
        self.handle(QueueInput::Accept {
            session,
            ticket: t(ticket),
        })
    }

    fn decline(&mut self, session: SessionId, ticket: &str) -> Vec<QueueOutput> {
        self.handle(QueueInput::Decline {
            session,
            ticket: t(ticket),
        })
    }

    fn stage(&self, ticket: &str) -> Option<PatientStage> {
        self.book.patient(&t(ticket)).map(|p| p.stage)
    }

    fn line(&self, queue: QueueId) -> Vec<String> {
        self.book.line(queue).into_iter().map(|t| t.0).collect()
    }
}

fn t(s: &str) -> Ticket {
    Ticket::new(s)
}

/// Each patient has their own phone (the book caps tickets per phone).
fn card(name: &str) -> PatientCard {
    let n = name
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    PatientCard {
        name: format!("Bệnh nhân {name}"),
        phone: format!("09{:08}", n % 100_000_000),
        reason: "sốt cao ba ngày".into(),
    }
}

/// Each session comes from its own address (the book caps tickets per
/// address; tests of the cap choose theirs).
fn addr_of(s: SessionId) -> IpAddr {
    IpAddr::from([10, (s.0 >> 16) as u8, (s.0 >> 8) as u8, s.0 as u8])
}

fn staff(id: i64) -> StaffRef {
    StaffRef {
        id: StaffId(id),
        name: format!("BS. {id}"),
        facility: FACILITY,
    }
}

/// Offers made in `out`: (doctor session, ticket).
fn offers(out: &[QueueOutput]) -> Vec<(SessionId, String)> {
    out.iter()
        .filter_map(|o| match o {
            QueueOutput::Offer { session, offer } => Some((*session, offer.ticket.0.clone())),
            _ => None,
        })
        .collect()
}

fn statuses(out: &[QueueOutput], to: SessionId) -> Vec<PatientStatus> {
    out.iter()
        .filter_map(|o| match o {
            QueueOutput::Status {
                session, status, ..
            } if *session == to => Some(status.clone()),
            _ => None,
        })
        .collect()
}

fn all_statuses(out: &[QueueOutput]) -> Vec<(SessionId, PatientStatus)> {
    out.iter()
        .filter_map(|o| match o {
            QueueOutput::Status {
                session, status, ..
            } => Some((*session, status.clone())),
            _ => None,
        })
        .collect()
}

fn position(out: &[QueueOutput], to: SessionId) -> Option<u32> {
    statuses(out, to).into_iter().rev().find_map(|s| match s {
        PatientStatus::Queued { position, .. } => Some(position),
        _ => None,
    })
}

fn paired(out: &[QueueOutput]) -> Vec<Pairing> {
    out.iter()
        .filter_map(|o| match o {
            QueueOutput::Paired(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

fn records(out: &[QueueOutput]) -> Vec<QueueEvent> {
    out.iter()
        .filter_map(|o| match o {
            QueueOutput::Record(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn errors(out: &[QueueOutput]) -> Vec<(SessionId, QueueError)> {
    out.iter()
        .filter_map(|o| match o {
            QueueOutput::Error {
                session, reason, ..
            } => Some((*session, *reason)),
            _ => None,
        })
        .collect()
}

fn doctor_status(out: &[QueueOutput], to: SessionId) -> Option<DoctorStatus> {
    out.iter().rev().find_map(|o| match o {
        QueueOutput::Doctor { session, status } if *session == to => Some(status.clone()),
        _ => None,
    })
}

#[test]
fn patients_are_offered_first_come_first_served() {
    let mut w = World::new();
    let (s1, out) = w.join(NOI, "p1");
    assert_eq!(
        statuses(&out, s1),
        vec![PatientStatus::Queued {
            queue: NOI,
            position: 1,
            estimate: None
        }]
    );
    assert!(matches!(
        records(&out).as_slice(),
        [QueueEvent::Joined { queue: NOI, .. }]
    ));
    let (s2, _) = w.join(NOI, "p2");
    let (s3, out) = w.join(NOI, "p3");
    // Only the newcomer hears anything: nobody else's position changed.
    assert_eq!(all_statuses(&out).len(), 1, "{out:?}");
    assert_eq!(position(&out, s3), Some(3));
    assert_eq!(w.line(NOI), ["p1", "p2", "p3"]);

    let (d, out) = w.doctor(10, &[NOI]);
    assert_eq!(offers(&out), [(d, "p1".to_owned())]);
    assert_eq!(statuses(&out, s1), [PatientStatus::Offered { queue: NOI }]);
    // p2 and p3 move up, and now have an estimate (one doctor, 10 min each).
    assert_eq!(
        statuses(&out, s2),
        [PatientStatus::Queued {
            queue: NOI,
            position: 1,
            estimate: Some(10 * MIN)
        }]
    );
    assert_eq!(
        statuses(&out, s3),
        [PatientStatus::Queued {
            queue: NOI,
            position: 2,
            estimate: Some(20 * MIN)
        }]
    );

    let mut order = Vec::new();
    for next in ["p1", "p2", "p3"] {
        let out = w.accept(d, next);
        let p = paired(&out);
        assert_eq!(p.len(), 1, "{out:?}");
        order.push(p[0].ticket.0.clone());
        w.advance(5 * MIN);
        let out = w.handle(QueueInput::DoctorFree { session: d });
        assert!(errors(&out).is_empty(), "{out:?}");
    }
    assert_eq!(order, ["p1", "p2", "p3"]);
}

#[test]
fn the_doctor_idle_longest_is_offered_first() {
    let mut w = World::new();
    let (a, _) = w.doctor(1, &[NOI]);
    w.advance(SEC);
    let (b, _) = w.doctor(2, &[NOI]);
    w.advance(SEC);
    let (c, _) = w.doctor(3, &[NOI]);
    w.advance(SEC);

    let mut got = Vec::new();
    for p in ["p1", "p2", "p3"] {
        let (_, out) = w.join(NOI, p);
        let o = offers(&out);
        assert_eq!(o.len(), 1, "{out:?}");
        got.push(o[0].clone());
        w.accept(o[0].0, p);
    }
    assert_eq!(got, [(a, "p1".into()), (b, "p2".into()), (c, "p3".into())]);

    // B finishes first, then A: B has been idle longer.
    w.advance(MIN);
    w.handle(QueueInput::DoctorFree { session: b });
    w.advance(MIN);
    w.handle(QueueInput::DoctorFree { session: a });
    w.advance(MIN);
    let (_, out) = w.join(NOI, "p4");
    assert_eq!(offers(&out), [(b, "p4".to_owned())]);
    let (_, out) = w.join(NOI, "p5");
    assert_eq!(offers(&out), [(a, "p5".to_owned())]);
}

#[test]
fn an_offer_goes_to_one_doctor_and_a_doctor_holds_one_offer() {
    let mut w = World::new();
    let (a, _) = w.doctor(1, &[NOI]);
    let (b, _) = w.doctor(2, &[NOI]);
    let (_, out) = w.join(NOI, "p1");
    assert_eq!(offers(&out), [(a, "p1".to_owned())]);
    // B cannot take A's patient.
    let out = w.accept(b, "p1");
    assert_eq!(errors(&out), [(b, QueueError::NoSuchOffer)]);
    assert!(paired(&out).is_empty());
    // The next patient goes to B, not to A who is still deciding.
    let (_, out) = w.join(NOI, "p2");
    assert_eq!(offers(&out), [(b, "p2".to_owned())]);
    // Nobody is free for the third.
    let (s3, out) = w.join(NOI, "p3");
    assert!(offers(&out).is_empty());
    assert_eq!(position(&out, s3), Some(1));
    assert_eq!(w.book.doctor(StaffId(1)).unwrap().offer, Some(t("p1")));
    assert_eq!(w.book.doctor(StaffId(2)).unwrap().offer, Some(t("p2")));
    let snap = w.book.snapshot(NOI).unwrap();
    assert_eq!(
        (snap.waiting, snap.offered, snap.doctors_available),
        (1, 2, 2)
    );
}

#[test]
fn an_unanswered_offer_expires_and_the_doctor_is_made_unavailable() {
    let mut w = World::new();
    let (a, _) = w.doctor(1, &[NOI]);
    let (s1, out) = w.join(NOI, "p1");
    assert_eq!(offers(&out), [(a, "p1".to_owned())]);
    let offered_at = w.now;
    assert_eq!(
        w.book.next_deadline(w.now),
        Some(offered_at + Duration::from_secs(30))
    );
    let (s2, _) = w.join(NOI, "p2");
    let out = w.tick(Duration::from_secs(29));
    assert!(out.is_empty(), "{out:?}");
    // B arrives while A is still deciding: B gets p2.
    let (b, out) = w.doctor(2, &[NOI]);
    assert_eq!(offers(&out), [(b, "p2".to_owned())]);

    let out = w.tick(SEC);
    assert!(out.contains(&QueueOutput::OfferExpired {
        session: a,
        ticket: t("p1"),
        afterwards: AfterOffer::Queued,
    }));
    assert_eq!(
        doctor_status(&out, a),
        Some(DoctorStatus {
            available: false,
            queues: vec![NOI],
            on_call: None
        })
    );
    assert!(records(&out).contains(&QueueEvent::OfferExpired {
        at: offered_at + Duration::from_secs(30),
        queue: NOI,
        ticket: t("p1"),
        doctor: StaffId(1)
    }));
    // p1 is back at the head, ahead of p3 who arrives now.
    assert_eq!(position(&out, s1), Some(1));
    let _ = s2;
    w.join(NOI, "p3");
    assert_eq!(w.line(NOI), ["p1", "p3"]);
    // A late accept loses.
    let out = w.accept(a, "p1");
    assert_eq!(errors(&out), [(a, QueueError::NoSuchOffer)]);
    // B declines p2: p2 goes back behind p1 (who is older), and B, free
    // again, is offered the head, p1. B, the only doctor on duty, will not
    // be offered p2 for a minute, so p3 is next in the line.
    let out = w.decline(b, "p2");
    assert_eq!(offers(&out), [(b, "p1".to_owned())]);
    assert_eq!(w.line(NOI), ["p3", "p2"]);
}

#[test]
fn an_expired_offer_tells_the_doctor_where_the_patient_went() {
    // Issue 12: the doctor was told "passed to another doctor" even when
    // nobody else was there.
    let mut w = World::new();
    let (a, _) = w.doctor(1, &[NOI]);
    w.advance(SEC);
    let (b, _) = w.doctor(2, &[NOI]);
    let (_, out) = w.join(NOI, "p1");
    assert_eq!(offers(&out), [(a, "p1".to_owned())]);
    // B is free: when A's offer expires p1 goes to B at once.
    let out = w.tick(30 * SEC);
    assert!(out.contains(&QueueOutput::OfferExpired {
        session: a,
        ticket: t("p1"),
        afterwards: AfterOffer::OfferedToAnother,
    }));
    assert_eq!(offers(&out), [(b, "p1".to_owned())]);
    // B lets it expire too: nobody else is available, p1 waits in line.
    let out = w.tick(30 * SEC);
    assert!(out.contains(&QueueOutput::OfferExpired {
        session: b,
        ticket: t("p1"),
        afterwards: AfterOffer::Queued,
    }));
    assert!(offers(&out).is_empty());
    assert_eq!(w.stage("p1"), Some(PatientStage::Queued { position: 1 }));
}

#[test]
fn an_offer_expiring_as_the_patient_s_grace_ends_says_they_left() {
    let mut w = World::new();
    let (d, _) = w.doctor(1, &[NOI]);
    let (s1, _) = w.join(NOI, "p1");
    // Closed at once: 30 s of grace, the same as the offer's time.
    w.handle(QueueInput::SessionClosed { session: s1 });
    let out = w.tick(30 * SEC);
    assert!(
        out.contains(&QueueOutput::OfferExpired {
            session: d,
            ticket: t("p1"),
            afterwards: AfterOffer::Left,
        }),
        "{out:?}"
    );
}

#[test]
fn an_accept_after_the_deadline_loses_even_without_a_tick() {
    let mut w = World::new();
    let (a, _) = w.doctor(1, &[NOI]);
    w.join(NOI, "p1");
    w.advance(Duration::from_secs(31));
    let out = w.accept(a, "p1");
    assert_eq!(errors(&out), [(a, QueueError::NoSuchOffer)]);
    assert!(out.contains(&QueueOutput::OfferExpired {
        session: a,
        ticket: t("p1"),
        afterwards: AfterOffer::Queued,
    }));
    assert_eq!(w.stage("p1"), Some(PatientStage::Queued { position: 1 }));
}

#[test]
fn a_declined_patient_goes_to_the_next_doctor() {
    let mut w = World::new();
    let (a, _) = w.doctor(1, &[NOI]);
    w.advance(SEC);
    let (b, _) = w.doctor(2, &[NOI]);
    let (s1, out) = w.join(NOI, "p1");
    assert_eq!(offers(&out), [(a, "p1".to_owned())]);
    let out = w.decline(a, "p1");
    assert_eq!(offers(&out), [(b, "p1".to_owned())]);
    assert!(matches!(
        records(&out).as_slice(),
        [
            QueueEvent::Declined {
                doctor: StaffId(1),
                ..
            },
            QueueEvent::Offered {
                doctor: StaffId(2),
                ..
            }
        ]
    ));
    // B declines too, 10 s later: nobody else, so p1 waits at the head...
    let declined_by_a = w.now;
    w.advance(10 * SEC);
    let out = w.decline(b, "p1");
    assert!(offers(&out).is_empty(), "{out:?}");
    assert_eq!(position(&out, s1), Some(1));
    // ...while a newcomer is offered to A, idle longest, at once.
    let (_, out) = w.join(NOI, "p2");
    assert_eq!(offers(&out), [(a, "p2".to_owned())]);
    w.accept(a, "p2");
    // 60 s after A declined, A is on a call and B (who declined 10 s
    // later) is not eligible yet.
    let out = w.tick(declined_by_a + MIN - w.now);
    assert!(offers(&out).is_empty(), "{out:?}");
    // 60 s after B declined, B may have p1 after all.
    let out = w.tick(Duration::from_secs(10));
    assert_eq!(offers(&out), [(b, "p1".to_owned())]);
}

#[test]
fn a_lone_doctor_who_declined_is_offered_again_after_a_minute() {
    let mut w = World::new();
    let (a, _) = w.doctor(1, &[NOI]);
    w.join(NOI, "p1");
    w.decline(a, "p1");
    assert_eq!(w.book.next_deadline(w.now), Some(w.now + MIN));
    let out = w.tick(Duration::from_secs(59));
    assert!(offers(&out).is_empty());
    let out = w.tick(SEC);
    assert_eq!(offers(&out), [(a, "p1".to_owned())]);
}

/// The last position each patient session was told, from a run of outputs.
fn note_positions(told: &mut BTreeMap<SessionId, u32>, out: &[QueueOutput]) {
    for (session, status) in all_statuses(out) {
        match status {
            PatientStatus::Queued { position, .. } => told.insert(session, position),
            _ => told.remove(&session),
        };
    }
}

#[test]
fn positions_after_a_decline_match_the_order_of_the_offers() {
    // Issue 12: a lone doctor declines the head of the line; the declined
    // patient read "position 1" while the next patient was offered first.
    let mut w = World::new();
    let mut told = BTreeMap::new();
    let (s1, out) = w.join(NOI, "p1");
    note_positions(&mut told, &out);
    let (_s2, out) = w.join(NOI, "p2");
    note_positions(&mut told, &out);
    let (s3, out) = w.join(NOI, "p3");
    note_positions(&mut told, &out);
    let (d, out) = w.doctor(10, &[NOI]);
    note_positions(&mut told, &out);
    assert_eq!(offers(&out), [(d, "p1".to_owned())]);

    let declined_p1 = w.now;
    let out = w.decline(d, "p1");
    note_positions(&mut told, &out);
    assert_eq!(offers(&out), [(d, "p2".to_owned())]);
    // The doctor is not offered p1 again for a minute: p3 comes first, and
    // both are told so (and the queries agree).
    assert_eq!((told.get(&s3), told.get(&s1)), (Some(&1), Some(&2)));
    assert_eq!(w.line(NOI), ["p3", "p1"]);
    assert_eq!(w.stage("p1"), Some(PatientStage::Queued { position: 2 }));
    match w.book.status(&t("p1")) {
        Some(PatientStatus::Queued {
            position: 2,
            estimate,
            ..
        }) => {
            assert_eq!(estimate, Some(20 * MIN))
        }
        other => panic!("{other:?}"),
    }

    // A short call with p2; the next offer is the patient told "1".
    w.accept(d, "p2");
    w.advance(10 * SEC);
    let out = w.handle(QueueInput::DoctorFree { session: d });
    note_positions(&mut told, &out);
    assert_eq!(offers(&out), [(d, "p3".to_owned())]);
    assert_eq!(told.get(&s1), Some(&1));

    // p3 declined too: both wait out the doctor's minute, p1's ends first.
    let out = w.decline(d, "p3");
    note_positions(&mut told, &out);
    assert!(offers(&out).is_empty(), "{out:?}");
    assert_eq!((told.get(&s1), told.get(&s3)), (Some(&1), Some(&2)));
    let out = w.tick(declined_p1 + MIN - w.now);
    note_positions(&mut told, &out);
    assert_eq!(offers(&out), [(d, "p1".to_owned())]);
    assert_eq!(told.get(&s3), Some(&1));
    assert_eq!(w.line(NOI), ["p3"]);
}

#[test]
fn a_declined_patient_moves_back_to_the_head_when_the_minute_is_over() {
    // The doctor declined p1 and is on a call when the minute ends: p1 is
    // next again (ahead of p3, who came later), and told so.
    let mut w = World::new();
    let mut told = BTreeMap::new();
    let (d, _) = w.doctor(10, &[NOI]);
    let (s1, out) = w.join(NOI, "p1");
    note_positions(&mut told, &out);
    let (_s2, out) = w.join(NOI, "p2");
    note_positions(&mut told, &out);
    let (s3, out) = w.join(NOI, "p3");
    note_positions(&mut told, &out);
    let out = w.decline(d, "p1");
    note_positions(&mut told, &out);
    assert_eq!(offers(&out), [(d, "p2".to_owned())]);
    assert_eq!((told.get(&s3), told.get(&s1)), (Some(&1), Some(&2)));
    w.accept(d, "p2");
    let out = w.tick(MIN);
    note_positions(&mut told, &out);
    assert!(offers(&out).is_empty(), "the doctor is on a call");
    assert_eq!((told.get(&s1), told.get(&s3)), (Some(&1), Some(&2)));
    assert_eq!(w.line(NOI), ["p1", "p3"]);
    let out = w.handle(QueueInput::DoctorFree { session: d });
    assert_eq!(offers(&out), [(d, "p1".to_owned())]);
}

#[test]
fn accept_pairs_and_the_doctor_is_busy_until_the_call_ends() {
    let mut w = World::new();
    let (d, _) = w.doctor(7, &[NOI]);
    let (s1, _) = w.join(NOI, "p1");
    w.advance(20 * SEC);
    let out = w.accept(d, "p1");
    assert_eq!(
        paired(&out),
        [Pairing {
            queue: NOI,
            ticket: t("p1"),
            card: card("p1"),
            patient_session: Some(s1),
            doctor: staff(7),
            doctor_session: Some(d),
            waited: 20 * SEC,
            resumed: false,
        }]
    );
    assert_eq!(
        doctor_status(&out, d),
        Some(DoctorStatus {
            available: true,
            queues: vec![NOI],
            on_call: Some(t("p1"))
        })
    );
    assert!(records(&out).contains(&QueueEvent::Accepted {
        at: w.now,
        queue: NOI,
        ticket: t("p1"),
        doctor: StaffId(7),
        waited: 20 * SEC
    }));
    assert_eq!(
        w.stage("p1"),
        Some(PatientStage::InCall { doctor: StaffId(7) })
    );
    assert!(w.line(NOI).is_empty());

    let (_, out) = w.join(NOI, "p2");
    assert!(offers(&out).is_empty(), "a doctor on a call is not offered");
    let snap = w.book.snapshot(NOI).unwrap();
    assert_eq!(
        (snap.waiting, snap.calls, snap.doctors_available),
        (1, 1, 1)
    );

    // The room ends after 4 minutes: the doctor is free, p2 is offered,
    // and the average moves towards 4 minutes.
    w.advance(4 * MIN);
    let out = w.handle(QueueInput::CallEnded { ticket: t("p1") });
    assert!(out.contains(&QueueOutput::Removed {
        session: s1,
        ticket: t("p1"),
        reason: RemovedReason::CallEnded
    }));
    assert_eq!(offers(&out), [(d, "p2".to_owned())]);
    assert!(w.book.patient(&t("p1")).is_none());
    // 600 + 0.2 × (240 − 600) = 528 s.
    assert_eq!(
        w.book.snapshot(NOI).unwrap().average_call,
        Duration::from_secs(528)
    );
}

#[test]
fn a_transferred_patient_enters_the_other_queue_at_the_head() {
    let mut w = World::new();
    // Paediatrics has two patients waiting and no doctor yet.
    let (b1, _) = w.join(NHI, "b1");
    let (b2, _) = w.join(NHI, "b2");
    let (d1, _) = w.doctor(1, &[NOI]);
    let (s1, _) = w.join(NOI, "p1");
    w.accept(d1, "p1");
    w.advance(3 * MIN);
    let out = w.handle(QueueInput::Transfer {
        session: d1,
        ticket: t("p1"),
        to: TransferTarget::Queue(NHI),
    });
    assert!(errors(&out).is_empty(), "{out:?}");
    assert_eq!(w.line(NHI), ["p1", "b1", "b2"]);
    assert_eq!(position(&out, s1), Some(1));
    assert_eq!(position(&out, b1), Some(2));
    assert_eq!(position(&out, b2), Some(3));
    assert!(records(&out).iter().any(|e| matches!(
        e,
        QueueEvent::Transferred { from: NOI, by: StaffId(1), to: TransferTarget::Queue(NHI), call, .. } if *call == 3 * MIN
    )));
    assert_eq!(
        doctor_status(&out, d1),
        Some(DoctorStatus {
            available: true,
            queues: vec![NOI],
            on_call: None
        })
    );
    // A second transfer goes behind the first, still ahead of arrivals.
    let (s2, _) = w.join(NOI, "p2");
    let out = w.accept(d1, "p2");
    assert_eq!(paired(&out).len(), 1);
    w.handle(QueueInput::Transfer {
        session: d1,
        ticket: t("p2"),
        to: TransferTarget::Queue(NHI),
    });
    w.join(NHI, "b3");
    assert_eq!(w.line(NHI), ["p1", "p2", "b1", "b2", "b3"]);
    let _ = s2;
    // The paediatrician's first offer is the transferred patient.
    let (d2, out) = w.doctor(2, &[NHI]);
    assert_eq!(offers(&out), [(d2, "p1".to_owned())]);
    match out.iter().find_map(|o| match o {
        QueueOutput::Offer { offer, .. } => Some(offer.clone()),
        _ => None,
    }) {
        Some(offer) => {
            assert_eq!(offer.transferred_by, Some(staff(1)));
            assert_eq!(offer.card, card("p1"));
            assert_eq!(offer.expires_at, w.now + Duration::from_secs(30));
        }
        None => panic!("{out:?}"),
    }
}

#[test]
fn a_patient_transferred_to_a_doctor_is_offered_to_that_doctor() {
    let mut w = World::new();
    let (d1, _) = w.doctor(1, &[NOI]);
    let (d2, _) = w.doctor(2, &[NHI]);
    let (d3, _) = w.doctor(3, &[NHI]);
    // Busy d2 with another patient first.
    let (_, out) = w.join(NHI, "x");
    assert_eq!(offers(&out), [(d2, "x".to_owned())]);
    w.accept(d2, "x");
    let (s1, _) = w.join(NOI, "p1");
    w.accept(d1, "p1");

    let out = w.handle(QueueInput::Transfer {
        session: d1,
        ticket: t("p1"),
        to: TransferTarget::Doctor(staff(2)),
    });
    assert!(errors(&out).is_empty(), "{out:?}");
    // d3 is idle in d2's queue but p1 waits for d2.
    assert!(offers(&out).is_empty(), "{out:?}");
    assert_eq!(
        statuses(&out, s1),
        [PatientStatus::WaitingForDoctor {
            queue: NHI,
            doctor: staff(2)
        }]
    );
    assert_eq!(
        w.stage("p1"),
        Some(PatientStage::WaitingForDoctor { doctor: StaffId(2) })
    );
    w.advance(40 * SEC);
    let out = w.handle(QueueInput::DoctorFree { session: d2 });
    assert_eq!(offers(&out), [(d2, "p1".to_owned())]);
    let out = w.accept(d2, "p1");
    let p = paired(&out);
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].doctor.id, p[0].queue), (StaffId(2), NHI));
    let _ = d3;
}

#[test]
fn a_transfer_to_an_absent_doctor_falls_back_to_their_queue_after_a_minute() {
    let mut w = World::new();
    let (d1, _) = w.doctor(1, &[NOI]);
    let (d2, _) = w.doctor(2, &[NHI]);
    w.handle(QueueInput::Unavailable { session: d2 });
    let (d3, _) = w.doctor(3, &[NHI]);
    // Someone is already waiting in paediatrics (d3 is busy with them).
    let (_, out) = w.join(NHI, "x");
    assert_eq!(offers(&out), [(d3, "x".to_owned())]);
    w.accept(d3, "x");
    w.join(NHI, "b1");
    let (s1, _) = w.join(NOI, "p1");
    w.accept(d1, "p1");
    let out = w.handle(QueueInput::Transfer {
        session: d1,
        ticket: t("p1"),
        to: TransferTarget::Doctor(staff(2)),
    });
    assert!(offers(&out).is_empty());
    let transferred_at = w.now;
    assert_eq!(w.book.next_deadline(w.now), Some(transferred_at + MIN));
    let out = w.tick(Duration::from_secs(59));
    assert!(out.is_empty(), "{out:?}");
    let out = w.tick(SEC);
    assert!(records(&out).contains(&QueueEvent::TransferFellBack {
        at: transferred_at + MIN,
        queue: NHI,
        ticket: t("p1"),
        doctor: StaffId(2)
    }));
    assert_eq!(w.line(NHI), ["p1", "b1"]);
    assert_eq!(position(&out, s1), Some(1));
    // When d3 is free, p1 goes first.
    let out = w.handle(QueueInput::DoctorFree { session: d3 });
    assert_eq!(offers(&out), [(d3, "p1".to_owned())]);
}

#[test]
fn a_patient_who_reconnects_within_two_minutes_keeps_their_place() {
    let mut w = World::new();
    let (s1, _) = w.join(NOI, "p1");
    let (s2, _) = w.join(NOI, "p2");
    let (s3, _) = w.join(NOI, "p3");
    // They have waited a while: they have earned the whole grace period.
    w.advance(3 * MIN);
    let out = w.handle(QueueInput::SessionClosed { session: s2 });
    assert!(
        all_statuses(&out).is_empty(),
        "places do not change: {out:?}"
    );
    assert!(matches!(
        records(&out).as_slice(),
        [QueueEvent::Away { .. }]
    ));
    w.advance(Duration::from_secs(119));
    let s2b = w.session();
    let out = w.handle(QueueInput::Resume {
        session: s2b,
        ticket: t("p2"),
    });
    assert_eq!(
        statuses(&out, s2b),
        [PatientStatus::Queued {
            queue: NOI,
            position: 2,
            estimate: None
        }]
    );
    assert!(records(&out).contains(&QueueEvent::Resumed {
        at: w.now,
        ticket: t("p2"),
        away: Some(Duration::from_secs(119))
    }));
    assert_eq!(w.book.ticket_of(s2b), Some(&t("p2")));

    // While p2 is away, a doctor is not offered an empty chair: p3 goes first.
    w.handle(QueueInput::SessionClosed { session: s2b });
    let (d, out) = w.doctor(1, &[NOI]);
    assert_eq!(offers(&out), [(d, "p1".to_owned())]);
    w.accept(d, "p1");
    let out = w.handle(QueueInput::DoctorFree { session: d });
    assert_eq!(offers(&out), [(d, "p3".to_owned())]);
    assert_eq!(w.line(NOI), ["p2"]);
    w.accept(d, "p3");
    let _ = (s1, s3);

    // Two minutes after this second drop, p2 is gone for good.
    let out = w.tick(Duration::from_secs(119));
    assert!(records(&out).is_empty(), "{out:?}");
    let out = w.tick(SEC);
    assert!(records(&out).iter().any(|e| matches!(
        e,
        QueueEvent::Dropped { ticket, stage: DropStage::Waiting, queue: NOI, .. } if *ticket == t("p2")
    )));
    assert!(w.line(NOI).is_empty());
    let s2c = w.session();
    let out = w.handle(QueueInput::Resume {
        session: s2c,
        ticket: t("p2"),
    });
    assert_eq!(errors(&out), [(s2c, QueueError::UnknownTicket)]);
}

#[test]
fn a_patient_paired_while_away_gets_the_pairing_again_on_resume() {
    let mut w = World::with_flat_grace();
    let (d, _) = w.doctor(1, &[NOI]);
    let (s1, out) = w.join(NOI, "p1");
    assert_eq!(offers(&out), [(d, "p1".to_owned())]);
    w.handle(QueueInput::SessionClosed { session: s1 });
    w.advance(10 * SEC);
    let out = w.accept(d, "p1");
    let p = paired(&out);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].patient_session, None);
    assert_eq!(p[0].doctor_session, Some(d));
    w.advance(50 * SEC);
    let s1b = w.session();
    let out = w.handle(QueueInput::Resume {
        session: s1b,
        ticket: t("p1"),
    });
    let p = paired(&out);
    assert_eq!(p.len(), 1, "{out:?}");
    assert_eq!(p[0].patient_session, Some(s1b));
    assert_eq!(p[0].doctor_session, Some(d));
    assert!(p[0].resumed);
    assert_eq!(p[0].waited, 10 * SEC);
    // Resuming on yet another tab replaces the first one.
    let s1c = w.session();
    let out = w.handle(QueueInput::Resume {
        session: s1c,
        ticket: t("p1"),
    });
    assert!(out.contains(&QueueOutput::Removed {
        session: s1b,
        ticket: t("p1"),
        reason: RemovedReason::Replaced
    }));
    assert_eq!(paired(&out)[0].patient_session, Some(s1c));
    // A patient in a call cannot cancel; the call ends by the doctor.
    let out = w.handle(QueueInput::Cancel {
        session: s1c,
        ticket: t("p1"),
    });
    assert_eq!(errors(&out), [(s1c, QueueError::NotWaiting)]);
}

#[test]
fn a_pending_offer_survives_a_short_patient_drop_but_not_the_grace() {
    let mut w = World::with_flat_grace();
    let (d, _) = w.doctor(1, &[NOI]);
    let (s1, _) = w.join(NOI, "p1");
    w.handle(QueueInput::SessionClosed { session: s1 });
    // The doctor does nothing; the offer expires first (30 s).
    let out = w.tick(Duration::from_secs(30));
    assert!(out.contains(&QueueOutput::OfferExpired {
        session: d,
        ticket: t("p1"),
        afterwards: AfterOffer::Queued,
    }));
    let out = w.tick(Duration::from_secs(90));
    assert!(records(&out).iter().any(|e| matches!(
        e,
        QueueEvent::Dropped { stage: DropStage::Waiting, waited, .. } if *waited == 2 * MIN
    )));
    assert!(w.book.tickets().next().is_none());
}

#[test]
fn a_doctor_who_disconnects_loses_their_offer_at_once() {
    let mut w = World::new();
    let (a, _) = w.doctor(1, &[NOI]);
    let (b, _) = w.doctor(2, &[NOI]);
    let (_, _) = w.join(NOI, "busy");
    w.accept(a, "busy"); // a is idle longest (tie broken by staff id)
    w.advance(SEC);
    w.handle(QueueInput::DoctorFree { session: a });
    // Now b is idle longest.
    let (_, out) = w.join(NOI, "p1");
    assert_eq!(offers(&out), [(b, "p1".to_owned())]);
    let out = w.handle(QueueInput::SessionClosed { session: b });
    assert!(records(&out).iter().any(|e| matches!(
        e,
        QueueEvent::OfferWithdrawn {
            doctor: StaffId(2),
            reason: WithdrawReason::DoctorGone,
            ..
        }
    )));
    assert_eq!(offers(&out), [(a, "p1".to_owned())]);
    assert!(
        w.book.doctor(StaffId(2)).is_none(),
        "a gone doctor with no call is forgotten"
    );
    assert_eq!(w.book.doctor_of(b), None);
    // No output goes to the closed session.
    assert!(
        !out.iter()
            .any(|o| matches!(o, QueueOutput::OfferWithdrawn { session, .. } if *session == b))
    );
}

#[test]
fn a_doctor_going_unavailable_hands_the_offer_back() {
    let mut w = World::new();
    let (a, _) = w.doctor(1, &[NOI, NHI]);
    let (s1, _) = w.join(NOI, "p1");
    let out = w.available(a, 1, &[NHI]);
    assert!(out.contains(&QueueOutput::OfferWithdrawn {
        session: a,
        ticket: t("p1"),
        reason: WithdrawReason::DoctorUnavailable
    }));
    assert_eq!(position(&out, s1), Some(1));
    // Paediatric patients still come.
    let (_, out) = w.join(NHI, "b1");
    assert_eq!(offers(&out), [(a, "b1".to_owned())]);
    let out = w.handle(QueueInput::Unavailable { session: a });
    assert!(out.contains(&QueueOutput::OfferWithdrawn {
        session: a,
        ticket: t("b1"),
        reason: WithdrawReason::DoctorUnavailable
    }));
    assert_eq!(
        doctor_status(&out, a),
        Some(DoctorStatus {
            available: false,
            queues: vec![NHI],
            on_call: None
        })
    );
}

#[test]
fn estimates_follow_position_average_and_doctors() {
    let mut w = World::new();
    let (a, _) = w.doctor(1, &[NOI]);
    let (_, out) = w.join(NOI, "p0");
    assert_eq!(offers(&out), [(a, "p0".to_owned())]);
    w.accept(a, "p0");
    // One doctor, on a call: still counted, 10 minutes per place.
    let (s1, out) = w.join(NOI, "p1");
    assert_eq!(
        statuses(&out, s1),
        [PatientStatus::Queued {
            queue: NOI,
            position: 1,
            estimate: Some(10 * MIN)
        }]
    );
    let (s2, _) = w.join(NOI, "p2");
    let (s3, out) = w.join(NOI, "p3");
    assert_eq!(
        statuses(&out, s3),
        [PatientStatus::Queued {
            queue: NOI,
            position: 3,
            estimate: Some(30 * MIN)
        }]
    );
    // A second doctor takes p1: p2 is 1st of 2 doctors → 5 min, p3 → 10.
    let (b, out) = w.doctor(2, &[NOI]);
    assert_eq!(offers(&out), [(b, "p1".to_owned())]);
    assert_eq!(
        statuses(&out, s2),
        [PatientStatus::Queued {
            queue: NOI,
            position: 1,
            estimate: Some(5 * MIN)
        }]
    );
    assert_eq!(
        statuses(&out, s3),
        [PatientStatus::Queued {
            queue: NOI,
            position: 2,
            estimate: Some(10 * MIN)
        }]
    );
    // Three doctors: 10/3 min rounds up to 4 min.
    w.doctor(3, &[NHI]);
    let (c, out) = w.doctor(3, &[NOI]);
    assert_eq!(offers(&out), [(c, "p2".to_owned())]);
    assert_eq!(w.book.estimate(NOI, 1), Some(4 * MIN));
    // Nobody available: unknown, never a division by zero.
    for s in [a, b, c] {
        w.handle(QueueInput::Unavailable { session: s });
    }
    assert_eq!(w.book.estimate(NOI, 1), None);
    assert_eq!(w.book.snapshot(NOI).unwrap().doctors_available, 0);
    let _ = s1;
    // The average follows calls: a 20-minute call from 10 → 12 minutes.
    let (d, _) = w.doctor(4, &[NHI]);
    let (_, _) = w.join(NHI, "q1");
    w.accept(d, "q1");
    w.advance(20 * MIN);
    w.handle(QueueInput::DoctorFree { session: d });
    assert_eq!(w.book.snapshot(NHI).unwrap().average_call, 12 * MIN);
    assert_eq!(w.book.estimate(NHI, 2), Some(24 * MIN));
}

#[test]
fn cancel_and_closing_a_queue() {
    let mut w = World::new();
    let (s1, _) = w.join(NOI, "p1");
    let (s2, _) = w.join(NOI, "p2");
    w.advance(MIN);
    let out = w.handle(QueueInput::Cancel {
        session: s1,
        ticket: t("p1"),
    });
    assert!(out.contains(&QueueOutput::Removed {
        session: s1,
        ticket: t("p1"),
        reason: RemovedReason::Cancelled
    }));
    assert!(records(&out).contains(&QueueEvent::Cancelled {
        at: w.now,
        queue: NOI,
        ticket: t("p1"),
        stage: DropStage::Waiting,
        waited: MIN
    }));
    assert_eq!(position(&out, s2), Some(1));
    // The session is free to join again, with a new ticket.
    let out = w.handle(QueueInput::Join {
        session: s1,
        addr: addr_of(s1),
        ticket: t("p1b"),
        queue: NOI,
        card: card("p1"),
    });
    assert!(errors(&out).is_empty());

    // Closed: no newcomers; dismissing removes who was waiting.
    w.handle(QueueInput::CloseQueue {
        queue: NOI,
        dismiss_waiting: false,
    });
    let s = w.session();
    let out = w.handle(QueueInput::Join {
        session: s,
        addr: addr_of(s),
        ticket: t("late"),
        queue: NOI,
        card: card("late"),
    });
    assert_eq!(errors(&out), [(s, QueueError::QueueClosed)]);
    assert_eq!(w.line(NOI), ["p2", "p1b"]);
    let out = w.handle(QueueInput::CloseQueue {
        queue: NOI,
        dismiss_waiting: true,
    });
    assert!(out.contains(&QueueOutput::Removed {
        session: s2,
        ticket: t("p2"),
        reason: RemovedReason::QueueClosed
    }));
    assert!(w.line(NOI).is_empty());
    assert!(!w.book.snapshot(NOI).unwrap().open);
}

#[test]
fn bad_inputs_get_reasons_and_change_nothing() {
    let mut w = World::new();
    let s = w.session();
    let cases: Vec<(QueueInput, QueueError)> = vec![
        (
            QueueInput::Join {
                session: s,
                addr: addr_of(s),
                ticket: t(""),
                queue: NOI,
                card: card("x"),
            },
            QueueError::BadTicket,
        ),
        (
            QueueInput::Join {
                session: s,
                addr: addr_of(s),
                ticket: t(&"x".repeat(129)),
                queue: NOI,
                card: card("x"),
            },
            QueueError::BadTicket,
        ),
        (
            QueueInput::Join {
                session: s,
                addr: addr_of(s),
                ticket: t("x"),
                queue: NOI,
                card: PatientCard {
                    name: "  ".into(),
                    phone: String::new(),
                    reason: String::new(),
                },
            },
            QueueError::BadCard,
        ),
        (
            QueueInput::Join {
                session: s,
                addr: addr_of(s),
                ticket: t("x"),
                queue: QueueId(99),
                card: card("x"),
            },
            QueueError::UnknownQueue,
        ),
        (
            QueueInput::Resume {
                session: s,
                ticket: t("nope"),
            },
            QueueError::UnknownTicket,
        ),
        (
            QueueInput::Cancel {
                session: s,
                ticket: t("nope"),
            },
            QueueError::UnknownTicket,
        ),
        (
            QueueInput::Unavailable { session: s },
            QueueError::NotADoctor,
        ),
        (
            QueueInput::DoctorFree { session: s },
            QueueError::NotADoctor,
        ),
        (
            QueueInput::Accept {
                session: s,
                ticket: t("nope"),
            },
            QueueError::NotADoctor,
        ),
        (
            QueueInput::Available {
                session: s,
                staff: StaffRef {
                    id: StaffId(9),
                    name: "BS. huyện".into(),
                    facility: FacilityId(2),
                },
                queues: vec![NOI],
            },
            QueueError::WrongFacility,
        ),
        (
            QueueInput::Available {
                session: s,
                staff: staff(9),
                queues: vec![QueueId(42)],
            },
            QueueError::UnknownQueue,
        ),
    ];
    for (input, want) in cases {
        let name = input.name();
        let out = w.handle(input);
        assert_eq!(
            out,
            [QueueOutput::Error {
                session: s,
                in_reply_to: name,
                reason: want
            }]
        );
    }
    assert!(w.book.tickets().next().is_none());
    assert!(w.book.doctors().is_empty());

    let (p, _) = w.join(NOI, "p1");
    let out = w.handle(QueueInput::Join {
        session: p,
        addr: addr_of(p),
        ticket: t("p2"),
        queue: NOI,
        card: card("p2"),
    });
    assert_eq!(errors(&out), [(p, QueueError::AlreadyQueued)]);
    let other = w.session();
    let out = w.handle(QueueInput::Join {
        session: other,
        addr: addr_of(other),
        ticket: t("p1"),
        queue: NHI,
        card: card("p1"),
    });
    assert_eq!(errors(&out), [(other, QueueError::DuplicateTicket)]);
    let (d, _) = w.doctor(1, &[NHI]);
    let out = w.handle(QueueInput::Transfer {
        session: d,
        ticket: t("p1"),
        to: TransferTarget::Queue(NHI),
    });
    assert_eq!(errors(&out), [(d, QueueError::NotOnCall)]);
    let out = w.handle(QueueInput::DoctorFree { session: d });
    assert_eq!(errors(&out), [(d, QueueError::NotOnCall)]);
    // Server inputs about unknown things are ignored.
    for input in [
        QueueInput::CallEnded { ticket: t("nope") },
        QueueInput::SessionClosed {
            session: SessionId(9999),
        },
        QueueInput::CloseQueue {
            queue: QueueId(77),
            dismiss_waiting: true,
        },
    ] {
        assert!(w.handle(input).is_empty());
    }
}

#[test]
fn a_doctor_on_a_new_session_replaces_the_old_one_and_keeps_the_offer() {
    let mut w = World::new();
    let (a, _) = w.doctor(1, &[NOI]);
    w.join(NOI, "p1");
    let a2 = w.session();
    let out = w.available(a2, 1, &[NOI]);
    assert!(out.contains(&QueueOutput::DoctorReplaced { session: a }));
    assert_eq!(offers(&out), [(a2, "p1".to_owned())]);
    let out = w.accept(a, "p1");
    assert_eq!(errors(&out), [(a, QueueError::NotADoctor)]);
    let out = w.accept(a2, "p1");
    assert_eq!(paired(&out).len(), 1);
}

// ------------------------------------------------------------------ random

/// A 64-bit LCG (Knuth's MMIX constants); the high bits are used.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            None
        } else {
            Some(items[self.below(items.len() as u64) as usize].clone())
        }
    }
}

/// What the outputs have told the world so far, to check against the book.
#[derive(Default)]
struct Observed {
    /// Latest status per patient session.
    status: BTreeMap<SessionId, (Ticket, PatientStatus)>,
    /// Latest status per doctor session.
    doctor: BTreeMap<SessionId, DoctorStatus>,
    /// Outstanding offers per doctor id, from the record.
    offers: BTreeMap<StaffId, Ticket>,
    /// Latest snapshot per queue.
    snapshots: BTreeMap<QueueId, tuxa_signaling::queue::QueueSnapshot>,
    closed: BTreeSet<SessionId>,
    counts: BTreeMap<&'static str, u32>,
}

impl Observed {
    fn see(&mut self, book: &QueueBook, out: &[QueueOutput]) {
        let mut accepted: Vec<(Ticket, StaffId)> = Vec::new();
        for o in out {
            let to = match o {
                QueueOutput::Status { session, .. }
                | QueueOutput::Removed { session, .. }
                | QueueOutput::Offer { session, .. }
                | QueueOutput::OfferWithdrawn { session, .. }
                | QueueOutput::OfferExpired { session, .. }
                | QueueOutput::Doctor { session, .. }
                | QueueOutput::DoctorReplaced { session }
                | QueueOutput::Error { session, .. } => Some(*session),
                QueueOutput::Paired(p) => p.patient_session,
                _ => None,
            };
            if let Some(s) = to {
                assert!(
                    !self.closed.contains(&s),
                    "output to a closed session: {o:?}"
                );
            }
            match o {
                QueueOutput::Status {
                    session,
                    ticket,
                    status,
                } => {
                    self.status
                        .insert(*session, (ticket.clone(), status.clone()));
                }
                // (A cancel from another session is answered there too,
                // naming the ticket: it does not clear that session's own.)
                QueueOutput::Removed {
                    session, ticket, ..
                } if self.status.get(session).is_some_and(|(t, _)| t == ticket) => {
                    self.status.remove(session);
                }
                QueueOutput::Doctor { session, status } => {
                    self.doctor.insert(*session, status.clone());
                }
                QueueOutput::Snapshot(s) => {
                    self.snapshots.insert(s.queue, s.clone());
                }
                QueueOutput::Paired(p) => {
                    *self.counts.entry("paired").or_default() += 1;
                    if p.resumed {
                        *self.counts.entry("resumed pairing").or_default() += 1;
                        assert_eq!(
                            book.patient(&p.ticket).map(|v| v.stage),
                            Some(PatientStage::InCall {
                                doctor: p.doctor.id
                            })
                        );
                    } else {
                        assert!(
                            accepted.contains(&(p.ticket.clone(), p.doctor.id)),
                            "Paired without an accepted offer: {p:?}"
                        );
                    }
                }
                QueueOutput::Record(e) => self.record(e, &mut accepted),
                QueueOutput::Error { .. } => *self.counts.entry("error").or_default() += 1,
                _ => {}
            }
        }
    }

    fn record(&mut self, e: &QueueEvent, accepted: &mut Vec<(Ticket, StaffId)>) {
        let name = match e {
            QueueEvent::Joined { .. } => "joined",
            QueueEvent::Offered { ticket, doctor, .. } => {
                assert!(
                    self.offers.insert(*doctor, ticket.clone()).is_none(),
                    "doctor {doctor} offered a second patient"
                );
                assert_eq!(
                    self.offers.values().filter(|t| *t == ticket).count(),
                    1,
                    "{ticket:?} offered to two doctors"
                );
                "offered"
            }
            QueueEvent::Accepted { ticket, doctor, .. } => {
                assert_eq!(self.offers.remove(doctor).as_ref(), Some(ticket));
                accepted.push((ticket.clone(), *doctor));
                "accepted"
            }
            QueueEvent::Declined { ticket, doctor, .. } => {
                assert_eq!(self.offers.remove(doctor).as_ref(), Some(ticket));
                "declined"
            }
            QueueEvent::OfferExpired { ticket, doctor, .. } => {
                assert_eq!(self.offers.remove(doctor).as_ref(), Some(ticket));
                "offer expired"
            }
            QueueEvent::OfferWithdrawn { ticket, doctor, .. } => {
                assert_eq!(self.offers.remove(doctor).as_ref(), Some(ticket));
                "offer withdrawn"
            }
            QueueEvent::Transferred { to, .. } => match to {
                TransferTarget::Queue(_) => "transferred to queue",
                TransferTarget::Doctor(_) => "transferred to doctor",
            },
            QueueEvent::TransferFellBack { .. } => "fell back",
            QueueEvent::CallEnded { .. } => "call ended",
            QueueEvent::Away { .. } => "away",
            QueueEvent::Resumed { .. } => "resumed",
            QueueEvent::Dropped { .. } => "dropped",
            QueueEvent::Cancelled { .. } => "cancelled",
            QueueEvent::Dismissed { .. } => "dismissed",
            QueueEvent::Cleared { .. } => "cleared",
        };
        *self.counts.entry(name).or_default() += 1;
    }
}

fn check_invariants(book: &QueueBook, seen: &Observed, queues: &[QueueId], now: Instant) {
    // Staff see every live ticket of a queue, flagged as the counts say.
    // (The caps are checked at join only: a transfer may bring a second
    // ticket of a phone into a queue.)
    for q in queues {
        for v in book.tickets_of(*q) {
            assert_eq!(v.queue, *q);
            assert_eq!(book.patient(&v.ticket).map(|p| p.stage), Some(v.stage));
            assert!(!matches!(v.stage, PatientStage::InCall { .. }));
            assert!(v.same_address >= 1 && v.same_phone >= 1, "{v:?}");
            assert_eq!(
                v.flags.contains(&TicketFlag::ManyFromAddress),
                v.same_address >= 3
            );
            assert_eq!(
                v.flags.contains(&TicketFlag::DuplicatePhone),
                v.same_phone > 1
            );
            assert_eq!(v.flags.contains(&TicketFlag::Away), v.away_since.is_some());
        }
    }
    // Lines: positions 1..n, nobody in two lines.
    let mut in_lines: BTreeMap<Ticket, QueueId> = BTreeMap::new();
    for q in queues {
        for (i, ticket) in book.line(*q).into_iter().enumerate() {
            let v = book.patient(&ticket).expect("a ticket in a line is known");
            assert_eq!(v.queue, *q);
            assert_eq!(
                v.stage,
                PatientStage::Queued {
                    position: i as u32 + 1
                }
            );
            assert!(
                in_lines.insert(ticket.clone(), *q).is_none(),
                "{ticket:?} in two lines"
            );
        }
    }
    // Every patient in exactly one place.
    let mut offered_to: BTreeMap<StaffId, Ticket> = BTreeMap::new();
    for ticket in book.tickets() {
        let v = book.patient(ticket).unwrap();
        match v.stage {
            PatientStage::Queued { .. } => assert!(in_lines.contains_key(ticket)),
            PatientStage::Offered { doctor } => {
                assert!(!in_lines.contains_key(ticket));
                assert_eq!(book.doctor(doctor).unwrap().offer.as_ref(), Some(ticket));
                assert!(offered_to.insert(doctor, ticket.clone()).is_none());
            }
            PatientStage::WaitingForDoctor { .. } => assert!(!in_lines.contains_key(ticket)),
            PatientStage::InCall { doctor } => {
                assert!(!in_lines.contains_key(ticket));
                assert_eq!(book.doctor(doctor).unwrap().call.as_ref(), Some(ticket));
            }
        }
        if let Some(s) = v.session {
            assert_eq!(book.ticket_of(s), Some(ticket));
            assert!(v.away_since.is_none());
            // What the patient was last told is what is true now.
            match book.status(ticket) {
                Some(status) => assert_eq!(
                    seen.status.get(&s),
                    Some(&(ticket.clone(), status)),
                    "stale status for {ticket:?}"
                ),
                None => assert!(matches!(v.stage, PatientStage::InCall { .. })),
            }
        } else {
            assert!(v.away_since.is_some());
        }
    }
    // Doctors: one offer at most (by construction of the view), consistent
    // with the patients and with what the record said.
    let mut on_call = 0;
    for d in book.doctors() {
        assert_eq!(d.offer.as_ref(), offered_to.get(&d.staff.id));
        assert!(!(d.offer.is_some() && d.call.is_some()), "{d:?}");
        if d.available {
            assert!(d.session.is_some());
        }
        if let Some(s) = d.session {
            assert_eq!(book.doctor_of(s), Some(d.staff.id));
            assert_eq!(
                seen.doctor.get(&s),
                Some(&DoctorStatus {
                    available: d.available,
                    queues: d.queues.clone(),
                    on_call: d.call.clone(),
                })
            );
        }
        if let Some(c) = &d.call {
            on_call += 1;
            assert!(book.calls().any(|(t, id)| t == c && id == d.staff.id));
        }
    }
    assert_eq!(book.calls().count(), on_call);
    assert_eq!(
        seen.offers, offered_to,
        "the record's open offers match the book"
    );
    for q in queues {
        assert_eq!(seen.snapshots.get(q), book.snapshot(*q).as_ref());
    }
    if let Some(next) = book.next_deadline(now) {
        assert!(next > now);
    }
}

#[test]
fn ten_thousand_random_inputs_keep_the_invariants() {
    let mut rng = Lcg(0x7475_7861_2d71_7565);
    let mut book = QueueBook::new(QueueConfig::default());
    let mut now = Instant::now();
    let mut seen = Observed::default();
    let mut next_sid = 1u64;
    let mut fresh = || {
        next_sid += 1;
        SessionId(next_sid)
    };
    // Queues 1 and 2 at facility 1, queue 3 at facility 2; queue 4 unknown.
    let queues = [QueueId(1), QueueId(2), QueueId(3)];
    let facility = |q: QueueId| FacilityId(if q.0 == 3 { 2 } else { 1 });
    for q in queues {
        book.handle(
            now,
            QueueInput::OpenQueue {
                queue: q,
                name: format!("queue {q}"),
                facility: facility(q),
            },
        );
    }
    let doctors: Vec<StaffRef> = (1..=6)
        .map(|id| StaffRef {
            id: StaffId(id),
            name: format!("BS. {id}"),
            facility: if id <= 4 {
                FacilityId(1)
            } else {
                FacilityId(2)
            },
        })
        .collect();
    let tickets: Vec<Ticket> = (0..40).map(|i| Ticket(format!("t{i}"))).collect();
    let mut sessions: Vec<SessionId> = Vec::new();

    let drain = |book: &mut QueueBook| {
        let mut v = Vec::new();
        while let Some(o) = book.poll_output() {
            v.push(o);
        }
        v
    };
    let out = drain(&mut book);
    seen.see(&book, &out);

    for step in 0..10_000 {
        let roll = rng.below(100);
        let input = match roll {
            0..=14 => {
                // Time passes.
                let d = if rng.below(10) == 0 {
                    Duration::from_secs(20 + rng.below(120))
                } else {
                    Duration::from_millis(rng.below(8000))
                };
                now += d;
                book.handle_timeout(now);
                None
            }
            15..=29 => {
                let s = fresh();
                sessions.push(s);
                // A dozen addresses and phones: the caps refuse some.
                Some(QueueInput::Join {
                    session: s,
                    addr: addr_of(SessionId(rng.below(12))),
                    ticket: rng.pick(&tickets).unwrap(),
                    queue: QueueId(1 + rng.below(4) as i64),
                    card: card(&format!("r{}", rng.below(12))),
                })
            }
            30..=34 => {
                let s = if rng.below(4) == 0 {
                    rng.pick(&sessions).unwrap_or(SessionId(0))
                } else {
                    let s = fresh();
                    sessions.push(s);
                    s
                };
                Some(QueueInput::Resume {
                    session: s,
                    ticket: rng.pick(&tickets).unwrap(),
                })
            }
            35..=37 => Some(QueueInput::Cancel {
                session: rng.pick(&sessions).unwrap_or(SessionId(0)),
                ticket: rng.pick(&tickets).unwrap(),
            }),
            38..=45 => {
                // Close a session that is in use.
                let live: Vec<SessionId> = sessions
                    .iter()
                    .copied()
                    .filter(|s| book.ticket_of(*s).is_some() || book.doctor_of(*s).is_some())
                    .collect();
                let s = rng.pick(&live).or_else(|| rng.pick(&sessions));
                s.map(|session| {
                    seen.closed.insert(session);
                    sessions.retain(|x| *x != session);
                    QueueInput::SessionClosed { session }
                })
            }
            46..=53 => {
                let staff = rng.pick(&doctors).unwrap();
                let current = book.doctor(staff.id).and_then(|d| d.session);
                let session = match current {
                    Some(s) if rng.below(5) != 0 => s,
                    _ => {
                        let s = fresh();
                        sessions.push(s);
                        s
                    }
                };
                let qs: Vec<QueueId> = (1..=4)
                    .map(QueueId)
                    .filter(|q| {
                        let own = q.0 != 4 && facility(*q) == staff.facility;
                        // Mostly their own facility's queues, sometimes not.
                        if own {
                            rng.below(3) != 0
                        } else {
                            rng.below(30) == 0
                        }
                    })
                    .collect();
                Some(QueueInput::Available {
                    session,
                    staff,
                    queues: qs,
                })
            }
            _ => {
                // A doctor acts, usually on what they have.
                // Mostly a connected doctor: the others only get errors.
                let connected: Vec<StaffRef> = doctors
                    .iter()
                    .filter(|d| book.doctor(d.id).is_some_and(|v| v.session.is_some()))
                    .cloned()
                    .collect();
                let staff = match rng.below(5) {
                    0 => rng.pick(&doctors),
                    _ => rng.pick(&connected).or_else(|| rng.pick(&doctors)),
                }
                .unwrap();
                let view = book.doctor(staff.id);
                let session = view
                    .as_ref()
                    .and_then(|d| d.session)
                    .filter(|_| rng.below(20) != 0)
                    .unwrap_or_else(|| rng.pick(&sessions).unwrap_or(SessionId(0)));
                let offer = view.as_ref().and_then(|d| d.offer.clone());
                let call = view.as_ref().and_then(|d| d.call.clone());
                let ticket = |preferred: Option<Ticket>, rng: &mut Lcg| match preferred {
                    Some(t) if rng.below(10) != 0 => t,
                    _ => rng.pick(&tickets).unwrap(),
                };
                match rng.below(9) {
                    0..=2 => Some(QueueInput::Accept {
                        session,
                        ticket: ticket(offer, &mut rng),
                    }),
                    3 => Some(QueueInput::Decline {
                        session,
                        ticket: ticket(offer, &mut rng),
                    }),
                    4 => Some(QueueInput::DoctorFree { session }),
                    5 => Some(QueueInput::Unavailable { session }),
                    6 => {
                        let to = if rng.below(2) == 0 {
                            TransferTarget::Queue(QueueId(1 + rng.below(4) as i64))
                        } else {
                            TransferTarget::Doctor(rng.pick(&doctors).unwrap())
                        };
                        Some(QueueInput::Transfer {
                            session,
                            ticket: ticket(call, &mut rng),
                            to,
                        })
                    }
                    7 => Some(QueueInput::CallEnded {
                        ticket: ticket(call, &mut rng),
                    }),
                    _ => {
                        let q = QueueId(1 + rng.below(4) as i64);
                        if rng.below(4) == 0 {
                            Some(QueueInput::Clear {
                                queue: q,
                                ticket: rng.pick(&tickets).unwrap(),
                            })
                        } else if rng.below(3) == 0 {
                            Some(QueueInput::CloseQueue {
                                queue: q,
                                dismiss_waiting: rng.below(2) == 0,
                            })
                        } else {
                            Some(QueueInput::OpenQueue {
                                queue: q,
                                name: format!("queue {q}"),
                                facility: facility(q),
                            })
                        }
                    }
                }
            }
        };
        if let Some(input) = input {
            // Opening the unknown queue 4 would be fine, but keep it unknown.
            if let QueueInput::OpenQueue { queue, .. } = &input
                && queue.0 == 4
            {
                continue;
            }
            book.handle(now, input);
        }
        let out = drain(&mut book);
        seen.see(&book, &out);
        check_invariants(&book, &seen, &queues, now);
        let _ = step;
    }
    // The run went through every corner worth visiting.
    for what in [
        "joined",
        "offered",
        "accepted",
        "declined",
        "offer expired",
        "offer withdrawn",
        "transferred to queue",
        "transferred to doctor",
        "fell back",
        "call ended",
        "away",
        "resumed",
        "dropped",
        "cancelled",
        "dismissed",
        "cleared",
        "paired",
        "resumed pairing",
        "error",
    ] {
        assert!(
            seen.counts.get(what).copied().unwrap_or(0) > 0,
            "no {what} in the run: {:?}",
            seen.counts
        );
    }
}

// ------------------------------------------------------------------ abuse

impl World {
    /// A join from a chosen address with a chosen phone; the outputs.
    fn join_from(
        &mut self,
        queue: QueueId,
        ticket: &str,
        addr: IpAddr,
        phone: &str,
    ) -> (SessionId, Vec<QueueOutput>) {
        let session = self.session();
        let out = self.handle(QueueInput::Join {
            session,
            ticket: t(ticket),
            queue,
            card: PatientCard {
                phone: phone.into(),
                ..card(ticket)
            },
            addr,
        });
        (session, out)
    }
}

#[test]
fn one_address_holds_at_most_five_live_tickets_across_queues() {
    let mut w = World::new();
    let nat = IpAddr::from([203, 0, 113, 7]);
    for i in 0..5 {
        let q = if i % 2 == 0 { NOI } else { NHI };
        let (_, out) = w.join_from(q, &format!("n{i}"), nat, "");
        assert!(errors(&out).is_empty(), "{out:?}");
    }
    // The sixth, in either queue, is refused; nothing else changes.
    let (s, out) = w.join_from(NOI, "n5", nat, "");
    assert_eq!(errors(&out), [(s, QueueError::TooManyTickets)]);
    assert_eq!(QueueError::TooManyTickets.as_str(), "too_many_tickets");
    assert!(records(&out).is_empty(), "{out:?}");
    assert_eq!(w.line(NOI), ["n0", "n2", "n4"]);
    // A patient elsewhere is not held back by it.
    let (_, out) = w.join_from(NOI, "real", IpAddr::from([198, 51, 100, 1]), "");
    assert!(errors(&out).is_empty(), "{out:?}");
    // The same IPv4 address mapped into IPv6 is the same address.
    let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
    let (s, out) = w.join_from(NHI, "m", mapped, "");
    assert_eq!(errors(&out), [(s, QueueError::TooManyTickets)]);
    // A ticket in a call no longer counts: its place is freed.
    let (d, _) = w.doctor(1, &[NOI]);
    w.accept(d, "n0");
    let (_, out) = w.join_from(NOI, "n6", nat, "");
    assert!(errors(&out).is_empty(), "{out:?}");
    // Five live again: the next is refused.
    let (s, out) = w.join_from(NOI, "n7", nat, "");
    assert_eq!(errors(&out), [(s, QueueError::TooManyTickets)]);
}

#[test]
fn one_ipv6_line_is_one_address_for_the_cap() {
    let mut w = World::new();
    for i in 0..5u16 {
        // A phone may take a fresh address in its /64 for every connection.
        let a: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap();
        let (_, out) = w.join_from(NOI, &format!("v{i}"), a, "");
        assert!(errors(&out).is_empty(), "{out:?}");
    }
    let (s, out) = w.join_from(NOI, "v5", "2001:db8:1:2:ffff::9".parse().unwrap(), "");
    assert_eq!(errors(&out), [(s, QueueError::TooManyTickets)]);
    let (_, out) = w.join_from(NOI, "v6", "2001:db8:1:3::1".parse().unwrap(), "");
    assert!(
        errors(&out).is_empty(),
        "another /64 is another line: {out:?}"
    );
}

#[test]
fn one_phone_number_holds_one_ticket_per_queue() {
    let mut w = World::new();
    let (_, out) = w.join_from(NOI, "a", IpAddr::from([10, 9, 0, 1]), "0912 345 678");
    assert!(errors(&out).is_empty(), "{out:?}");
    // The same number written another way, from another address.
    let (s, out) = w.join_from(NOI, "b", IpAddr::from([10, 9, 0, 2]), "+84 912-345-678");
    assert_eq!(errors(&out), [(s, QueueError::TooManyTickets)]);
    // Another queue may be asked at the same time (flagged for staff).
    let (_, out) = w.join_from(NHI, "c", IpAddr::from([10, 9, 0, 3]), "84912345678");
    assert!(errors(&out).is_empty(), "{out:?}");
    // Without a phone only the address counts.
    for (i, ticket) in ["d", "e"].iter().enumerate() {
        let (_, out) = w.join_from(NOI, ticket, IpAddr::from([10, 9, 1, i as u8]), " ");
        assert!(errors(&out).is_empty(), "{out:?}");
    }
    // Once the first ticket is cancelled the number may queue again.
    let s = w.book.patient(&t("a")).and_then(|p| p.session).unwrap();
    w.handle(QueueInput::Cancel {
        session: s,
        ticket: t("a"),
    });
    let (_, out) = w.join_from(NOI, "f", IpAddr::from([10, 9, 0, 4]), "0912345678");
    assert!(errors(&out).is_empty(), "{out:?}");
}

#[test]
fn the_caps_are_configurable() {
    let mut w = World::with_config(QueueConfig {
        max_per_address: 2,
        max_per_phone: 2,
        ..QueueConfig::default()
    });
    w.open(NOI, "Nội khoa");
    let a = IpAddr::from([10, 1, 1, 1]);
    assert!(errors(&w.join_from(NOI, "a", a, "0911111111").1).is_empty());
    let b = IpAddr::from([10, 1, 1, 2]);
    assert!(errors(&w.join_from(NOI, "b", a, "0911111111").1).is_empty());
    let (s, out) = w.join_from(NOI, "c", a, "");
    assert_eq!(errors(&out), [(s, QueueError::TooManyTickets)]);
    let (s, out) = w.join_from(NOI, "d", b, "0911111111");
    assert_eq!(errors(&out), [(s, QueueError::TooManyTickets)]);
}

#[test]
fn a_ticket_whose_session_closed_at_once_is_dropped_after_thirty_seconds() {
    let mut w = World::new();
    let (s, _) = w.join(NOI, "flood");
    w.handle(QueueInput::SessionClosed { session: s });
    assert_eq!(w.book.next_deadline(w.now), Some(w.now + 30 * SEC));
    let out = w.tick(29 * SEC);
    assert!(records(&out).is_empty(), "{out:?}");
    let out = w.tick(SEC);
    assert!(records(&out).iter().any(|e| matches!(
        e,
        QueueEvent::Dropped { stage: DropStage::Waiting, ticket, .. } if *ticket == t("flood")
    )));
    assert!(w.line(NOI).is_empty());
}

#[test]
fn the_grace_period_is_earned_by_time_connected() {
    let mut w = World::new();
    let (a, _) = w.join(NOI, "a");
    w.advance(45 * SEC);
    // Connected 45 s: 45 s of grace.
    w.handle(QueueInput::SessionClosed { session: a });
    assert_eq!(w.book.next_deadline(w.now), Some(w.now + 45 * SEC));
    // Back after 40 s on another session, 30 s more connected, then away
    // again: 75 s connected in all (the time away does not count).
    w.advance(40 * SEC);
    let a2 = w.session();
    let out = w.handle(QueueInput::Resume {
        session: a2,
        ticket: t("a"),
    });
    assert!(errors(&out).is_empty(), "{out:?}");
    w.advance(30 * SEC);
    w.handle(QueueInput::SessionClosed { session: a2 });
    let out = w.tick(74 * SEC);
    assert!(records(&out).is_empty(), "{out:?}");
    let out = w.tick(SEC);
    assert!(
        records(&out)
            .iter()
            .any(|e| matches!(e, QueueEvent::Dropped { .. })),
        "{out:?}"
    );
    // Connected ten minutes: the whole two minutes, no more.
    let (b, _) = w.join(NOI, "b");
    w.advance(10 * MIN);
    w.handle(QueueInput::SessionClosed { session: b });
    assert_eq!(w.book.next_deadline(w.now), Some(w.now + 2 * MIN));
}

#[test]
fn staff_see_suspicious_tickets_and_clear_them() {
    let mut w = World::new();
    let nat = IpAddr::from([203, 0, 113, 9]);
    let (f1, _) = w.join_from(NOI, "f1", nat, "");
    let (_f2, _) = w.join_from(NOI, "f2", nat, "");
    let (_, _) = w.join_from(NOI, "ok", IpAddr::from([10, 0, 0, 1]), "0988000111");
    let (_, _) = w.join_from(NHI, "dup", IpAddr::from([10, 0, 0, 2]), "+84988000111");
    let flags = |w: &World, q: QueueId| -> Vec<(String, Vec<TicketFlag>)> {
        w.book
            .tickets_of(q)
            .into_iter()
            .map(|v| (v.ticket.0, v.flags))
            .collect()
    };
    // Two from one address are not yet suspicious; the phone in two queues is.
    assert_eq!(
        flags(&w, NOI),
        [
            ("f1".into(), vec![]),
            ("f2".into(), vec![]),
            ("ok".into(), vec![TicketFlag::DuplicatePhone]),
        ]
    );
    let (_, _) = w.join_from(NHI, "f3", nat, "");
    w.handle(QueueInput::SessionClosed { session: f1 });
    let views = w.book.tickets_of(NOI);
    assert_eq!(views[0].same_address, 3);
    assert_eq!(
        views[0].flags,
        [TicketFlag::ManyFromAddress, TicketFlag::Away]
    );
    assert_eq!(views[1].flags, [TicketFlag::ManyFromAddress]);
    assert_eq!(views[2].same_phone, 2);

    // Clearing: the patient's session is told, the record says so.
    let f2 = w.book.patient(&t("f2")).and_then(|p| p.session).unwrap();
    let out = w.handle(QueueInput::Clear {
        queue: NOI,
        ticket: t("f2"),
    });
    assert!(out.contains(&QueueOutput::Removed {
        session: f2,
        ticket: t("f2"),
        reason: RemovedReason::Cleared
    }));
    assert!(records(&out).iter().any(|e| matches!(
        e,
        QueueEvent::Cleared { queue: NOI, stage: DropStage::Waiting, ticket, .. } if *ticket == t("f2")
    )));
    assert_eq!(w.line(NOI), ["f1", "ok"]);
    assert_eq!(position(&out, f2), None);
    // An away ticket is cleared too (nobody to tell).
    let out = w.handle(QueueInput::Clear {
        queue: NOI,
        ticket: t("f1"),
    });
    assert!(
        records(&out)
            .iter()
            .any(|e| matches!(e, QueueEvent::Cleared { .. }))
    );
    assert_eq!(w.line(NOI), ["ok"]);
    // Named in the wrong queue, nothing happens.
    let out = w.handle(QueueInput::Clear {
        queue: NOI,
        ticket: t("dup"),
    });
    assert!(records(&out).is_empty(), "{out:?}");
    // An offered ticket: the offer is withdrawn from the doctor.
    let (d, out) = w.doctor(1, &[NOI]);
    assert_eq!(offers(&out), [(d, "ok".to_owned())]);
    let out = w.handle(QueueInput::Clear {
        queue: NOI,
        ticket: t("ok"),
    });
    assert!(out.contains(&QueueOutput::OfferWithdrawn {
        session: d,
        ticket: t("ok"),
        reason: WithdrawReason::Cleared
    }));
    // A ticket in a call is not staff's to clear here.
    let (_, out) = w.join(NOI, "p");
    assert_eq!(offers(&out), [(d, "p".to_owned())]);
    w.accept(d, "p");
    let out = w.handle(QueueInput::Clear {
        queue: NOI,
        ticket: t("p"),
    });
    assert!(records(&out).is_empty(), "{out:?}");
    assert!(w.book.tickets_of(NOI).is_empty());
    assert!(w.book.patient(&t("p")).is_some());
}

#[test]
fn a_flood_from_one_address_leaves_the_line_to_real_patients() {
    // The attack: 500 consents and joins in half a second.
    let mut w = World::new();
    let attacker = IpAddr::from([198, 51, 100, 66]);
    let mut refused = 0;
    for i in 0..500 {
        let (s, out) = w.join_from(NOI, &format!("x{i}"), attacker, "");
        if errors(&out) == [(s, QueueError::TooManyTickets)] {
            refused += 1;
        }
        // The script hangs up at once.
        w.handle(QueueInput::SessionClosed { session: s });
    }
    assert_eq!(refused, 495);
    assert_eq!(w.line(NOI).len(), 5);
    let (_, out) = w.join_from(NOI, "patient", IpAddr::from([10, 20, 30, 40]), "0977123456");
    assert!(errors(&out).is_empty(), "{out:?}");
    // Thirty seconds later the script's five places are gone too.
    w.tick(30 * SEC);
    assert_eq!(w.line(NOI), ["patient"]);
}

#[test]
fn ticket_handles_are_stable_and_not_the_ticket() {
    let h = t("abc").handle();
    assert_eq!(h.len(), 16);
    assert!(h.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(h, t("abc").handle());
    assert_ne!(h, t("abd").handle());
    assert!(!h.contains("abc"));
}
