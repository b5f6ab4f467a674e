//! A small reorder buffer by extended sequence number.
//!
//! Packets come in arrival order: some swapped, some lost, retransmissions
//! (RTX, answered NACKs) up to a round trip late. The buffer hands them out in
//! sequence order; a hole is waited for [`WAIT_MS`] of arrival time (or until
//! [`MAX_HELD`] packets are held behind it) and then given up as lost. A packet
//! for a sequence number already handed out or given up is dropped.

use std::collections::BTreeMap;

/// How long a hole is waited for, in ms of arrival time: a NACK's round trip
/// on a provincial link, with room to spare.
pub(crate) const WAIT_MS: u64 = 300;
/// At most this many packets are held behind a hole (a bound on memory
/// whatever a publisher sends).
pub(crate) const MAX_HELD: usize = 512;
/// A jump of more than this many sequence numbers, ahead or back, is a new
/// stream (publisher restarted): everything held is handed out, the muxer is
/// told ([`Out::NewStream`]) and the buffer follows (a retransmission is
/// never that late).
const MAX_JUMP: u64 = 3000;

#[derive(Debug)]
pub(crate) struct Held {
    pub seq: u64,
    pub timestamp: u32,
    pub marker: bool,
    /// Opus: the payload is RFC 2198 RED.
    pub red: bool,
    pub payload: Vec<u8>,
}

/// What the buffer hands out, in sequence order.
#[derive(Debug)]
pub(crate) enum Out {
    Packet(Held),
    /// This many sequence numbers were given up.
    Lost(u64),
    /// Another RTP stream starts here (its sequence numbers and timestamps
    /// start over): a far jump, or the muxer's own mark.
    NewStream {
        arrival_ms: u64,
    },
}

#[derive(Debug, Default)]
pub(crate) struct Reorder {
    next: Option<u64>,
    held: BTreeMap<u64, (Held, u64)>,
    /// The hole in front of `held` (its sequence number) and since when (arrival ms).
    hole: Option<(u64, u64)>,
    /// Packets dropped for coming after their number was handed out or given up.
    pub late: u64,
}

impl Reorder {
    pub(crate) fn push(&mut self, packet: Held, arrival_ms: u64, out: &mut Vec<Out>) {
        let next = *self.next.get_or_insert(packet.seq);
        if packet.seq < next && next - packet.seq <= MAX_JUMP {
            self.late += 1;
            return;
        }
        if packet.seq.abs_diff(next) > MAX_JUMP {
            self.flush(out);
            out.push(Out::NewStream { arrival_ms });
            self.next = Some(packet.seq);
            self.hole = None;
        }
        self.held.entry(packet.seq).or_insert((packet, arrival_ms));
        self.release(arrival_ms, out);
    }

    /// Hands out everything held, holes given up (the track ends).
    pub(crate) fn flush(&mut self, out: &mut Vec<Out>) {
        while let Some((seq, (packet, _))) = self.held.pop_first() {
            self.hand_out(seq, packet, out);
        }
        self.hole = None;
    }

    fn hand_out(&mut self, seq: u64, packet: Held, out: &mut Vec<Out>) {
        let next = self.next.unwrap_or(seq);
        if seq > next {
            out.push(Out::Lost(seq - next));
        }
        out.push(Out::Packet(packet));
        self.next = Some(seq + 1);
    }

    fn release(&mut self, now_ms: u64, out: &mut Vec<Out>) {
        loop {
            let Some(next) = self.next else { return };
            let Some((&first, _)) = self.held.first_key_value() else {
                self.hole = None;
                return;
            };
            if first == next {
                if let Some((seq, (packet, _))) = self.held.pop_first() {
                    self.hand_out(seq, packet, out);
                }
                continue;
            }
            let since = match self.hole {
                Some((at, since)) if at == next => since,
                _ => {
                    self.hole = Some((next, now_ms));
                    now_ms
                }
            };
            if now_ms.saturating_sub(since) >= WAIT_MS || self.held.len() > MAX_HELD {
                if let Some((seq, (packet, _))) = self.held.pop_first() {
                    self.hand_out(seq, packet, out);
                }
                continue;
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(seq: u64) -> Held {
        Held {
            seq,
            timestamp: 0,
            marker: false,
            red: false,
            payload: vec![seq as u8],
        }
    }

    fn seqs(out: &[Out]) -> Vec<i64> {
        out.iter()
            .map(|o| match o {
                Out::Packet(h) => h.seq as i64,
                Out::Lost(n) => -(*n as i64),
                Out::NewStream { .. } => i64::MIN,
            })
            .collect()
    }

    #[test]
    fn reordered_packets_come_out_in_order_and_a_late_retransmission_fills_the_hole() {
        let mut r = Reorder::default();
        let mut out = Vec::new();
        r.push(p(10), 0, &mut out);
        r.push(p(12), 1, &mut out);
        r.push(p(13), 2, &mut out);
        assert_eq!(seqs(&out), [10]);
        r.push(p(11), 100, &mut out);
        assert_eq!(seqs(&out), [10, 11, 12, 13]);
        r.push(p(11), 101, &mut out);
        assert_eq!(r.late, 1);
    }

    #[test]
    fn a_hole_is_given_up_after_the_wait_and_its_packet_is_then_late() {
        let mut r = Reorder::default();
        let mut out = Vec::new();
        r.push(p(1), 0, &mut out);
        r.push(p(3), 10, &mut out);
        r.push(p(4), 10 + WAIT_MS - 1, &mut out);
        assert_eq!(seqs(&out), [1]);
        r.push(p(5), 10 + WAIT_MS, &mut out);
        assert_eq!(seqs(&out), [1, -1, 3, 4, 5]);
        r.push(p(2), 10 + WAIT_MS + 1, &mut out);
        assert_eq!(r.late, 1);
    }

    #[test]
    fn a_far_jump_back_is_a_new_stream_not_late_packets() {
        let mut r = Reorder::default();
        let mut out = Vec::new();
        r.push(p(50_000), 0, &mut out);
        r.push(p(50_001), 1, &mut out);
        r.push(p(7), 2, &mut out);
        r.push(p(8), 3, &mut out);
        assert_eq!(seqs(&out), [50_000, 50_001, i64::MIN, 7, 8]);
        assert_eq!(r.late, 0);
    }

    #[test]
    fn what_is_held_is_bounded() {
        let mut r = Reorder::default();
        let mut out = Vec::new();
        r.push(p(0), 0, &mut out);
        for s in 2..(MAX_HELD as u64 + 10) {
            r.push(p(s), 0, &mut out);
        }
        assert!(r.held.len() <= MAX_HELD);
        assert_eq!(seqs(&out)[..3], [0, -1, 2]);
    }
}
