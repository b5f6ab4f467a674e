//! Where the directory's ids meet the wire.
//!
//! `protocol` cannot use `tuxa_records`'s ids (records depends on protocol),
//! so its messages carry queue and staff ids as `u64`. These functions are
//! the only conversions between the two; the hub keeps the typed ids.

use tuxa_records::{QueueId, StaffId};

/// A queue id for a message. Row ids are positive, so the value is kept.
pub(crate) fn wire_queue(id: QueueId) -> u64 {
    id.0 as u64
}

/// A queue id from a client. A number no row id can be (above `i64::MAX`)
/// names no queue: `None`, refused like any unknown queue.
pub(crate) fn queue_from_wire(id: u64) -> Option<QueueId> {
    i64::try_from(id).ok().map(QueueId)
}

/// A staff id from a client (a transfer to a doctor); `None` as above.
pub(crate) fn staff_from_wire(id: u64) -> Option<StaffId> {
    i64::try_from(id).ok().map(StaffId)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_impossible_ones_name_nothing() {
        assert_eq!(queue_from_wire(wire_queue(QueueId(42))), Some(QueueId(42)));
        assert_eq!(staff_from_wire(7), Some(StaffId(7)));
        assert_eq!(queue_from_wire(u64::MAX), None);
        assert_eq!(staff_from_wire(1 << 63), None);
    }
}
