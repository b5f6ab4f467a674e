//! The few EBML/Matroska writing primitives the muxer needs.
//!
//! Hand-written rather than taken from a crate: the muxer must control every
//! byte of the header (a fixed-length head, padded with a Void element, that
//! is rewritten in place at the end with the same length), write the Segment
//! with an unknown size and each Cluster complete, all into a `Vec<u8>` (no
//! `Write + Seek`). `webm-iterable`'s writer works element by element on an
//! `io::Write` and gives no hold on the head's length; libwebm (`webm`) is C++
//! and needs a seekable writer.

/// Element ids (with their length marker bits, as the spec lists them).
pub(crate) mod id {
    pub const EBML: u32 = 0x1A45_DFA3;
    pub const EBML_VERSION: u32 = 0x4286;
    pub const EBML_READ_VERSION: u32 = 0x42F7;
    pub const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
    pub const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
    pub const DOC_TYPE: u32 = 0x4282;
    pub const DOC_TYPE_VERSION: u32 = 0x4287;
    pub const DOC_TYPE_READ_VERSION: u32 = 0x4285;
    pub const VOID: u32 = 0xEC;

    pub const SEGMENT: u32 = 0x1853_8067;
    pub const SEEK_HEAD: u32 = 0x114D_9B74;
    pub const SEEK: u32 = 0x4DBB;
    pub const SEEK_ID: u32 = 0x53AB;
    pub const SEEK_POSITION: u32 = 0x53AC;

    pub const INFO: u32 = 0x1549_A966;
    pub const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
    pub const DURATION: u32 = 0x4489;
    pub const MUXING_APP: u32 = 0x4D80;
    pub const WRITING_APP: u32 = 0x5741;

    pub const TRACKS: u32 = 0x1654_AE6B;
    pub const TRACK_ENTRY: u32 = 0xAE;
    pub const TRACK_NUMBER: u32 = 0xD7;
    pub const TRACK_UID: u32 = 0x73C5;
    pub const TRACK_TYPE: u32 = 0x83;
    pub const FLAG_LACING: u32 = 0x9C;
    pub const CODEC_ID: u32 = 0x86;
    pub const CODEC_PRIVATE: u32 = 0x63A2;
    pub const CODEC_DELAY: u32 = 0x56AA;
    pub const SEEK_PRE_ROLL: u32 = 0x56BB;
    pub const VIDEO: u32 = 0xE0;
    pub const PIXEL_WIDTH: u32 = 0xB0;
    pub const PIXEL_HEIGHT: u32 = 0xBA;
    pub const AUDIO: u32 = 0xE1;
    pub const SAMPLING_FREQUENCY: u32 = 0xB5;
    pub const CHANNELS: u32 = 0x9F;

    pub const CLUSTER: u32 = 0x1F43_B675;
    pub const TIMESTAMP: u32 = 0xE7;
    pub const SIMPLE_BLOCK: u32 = 0xA3;

    pub const CUES: u32 = 0x1C53_BB6B;
    pub const CUE_POINT: u32 = 0xBB;
    pub const CUE_TIME: u32 = 0xB3;
    pub const CUE_TRACK_POSITIONS: u32 = 0xB7;
    pub const CUE_TRACK: u32 = 0xF7;
    pub const CUE_CLUSTER_POSITION: u32 = 0xF1;
}

/// The reserved "unknown size" of a master element, on 8 bytes.
pub(crate) const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

pub(crate) fn put_id(out: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    out.extend_from_slice(&bytes[skip..]);
}

/// A data size as the shortest EBML variable-length integer (all-ones is
/// reserved for "unknown", so a value needing all of them takes one byte more).
pub(crate) fn put_size(out: &mut Vec<u8>, size: u64) {
    let mut len = 1usize;
    while len < 8 && size >= (1u64 << (7 * len)) - 1 {
        len += 1;
    }
    put_size_len(out, size, len);
}

/// A data size on exactly `len` bytes (1..=8), for fields rewritten in place.
pub(crate) fn put_size_len(out: &mut Vec<u8>, size: u64, len: usize) {
    let marked = size | (1u64 << (7 * len));
    out.extend_from_slice(&marked.to_be_bytes()[8 - len..]);
}

pub(crate) fn put_uint(out: &mut Vec<u8>, id: u32, value: u64) {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    put_id(out, id);
    put_size(out, (8 - skip) as u64);
    out.extend_from_slice(&bytes[skip..]);
}

/// An unsigned integer on 8 bytes, for values rewritten in place.
pub(crate) fn put_uint_fixed8(out: &mut Vec<u8>, id: u32, value: u64) {
    put_id(out, id);
    put_size(out, 8);
    out.extend_from_slice(&value.to_be_bytes());
}

pub(crate) fn put_float(out: &mut Vec<u8>, id: u32, value: f64) {
    put_id(out, id);
    put_size(out, 8);
    out.extend_from_slice(&value.to_be_bytes());
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, id: u32, value: &[u8]) {
    put_id(out, id);
    put_size(out, value.len() as u64);
    out.extend_from_slice(value);
}

pub(crate) fn put_str(out: &mut Vec<u8>, id: u32, value: &str) {
    put_bytes(out, id, value.as_bytes());
}

/// A master element of known size whose children `body` writes.
pub(crate) fn put_master(out: &mut Vec<u8>, id: u32, body: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    body(&mut inner);
    put_bytes(out, id, &inner);
}

/// A Void element of exactly `total` bytes (id and size included; at least 9:
/// its size is always written on 8 bytes so any length from 9 up fits).
pub(crate) fn put_void(out: &mut Vec<u8>, total: usize) {
    debug_assert!(total >= 9);
    put_id(out, id::VOID);
    let data = total.saturating_sub(9);
    put_size_len(out, data as u64, 8);
    out.resize(out.len() + data, 0);
}

/// An element's header at `at`: its id, where its data starts, and its data
/// size (`None`: unknown). `None` if the header is cut or malformed.
pub(crate) fn read_header(buf: &[u8], at: usize) -> Option<(u32, usize, Option<u64>)> {
    let first = *buf.get(at)?;
    let id_len = first.leading_zeros() as usize + 1;
    if id_len > 4 {
        return None;
    }
    let id = buf
        .get(at..at + id_len)?
        .iter()
        .fold(0u32, |a, b| (a << 8) | u32::from(*b));
    let at = at + id_len;
    let s0 = *buf.get(at)?;
    let size_len = s0.leading_zeros() as usize + 1;
    if size_len > 8 {
        return None;
    }
    let rest = buf.get(at + 1..at + size_len)?;
    let mask = 0xFFu64 >> size_len;
    let mut size = u64::from(s0) & mask;
    let mut all_ones = size == mask;
    for b in rest {
        size = (size << 8) | u64::from(*b);
        all_ones &= *b == 0xFF;
    }
    Some((id, at + size_len, (!all_ones).then_some(size)))
}

/// The big-endian unsigned integer in an element's data.
pub(crate) fn read_uint(data: &[u8]) -> Option<u64> {
    (data.len() <= 8).then(|| data.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_the_shortest_form_and_avoid_the_reserved_value() {
        let mut v = Vec::new();
        put_size(&mut v, 5);
        assert_eq!(v, [0x85]);
        v.clear();
        put_size(&mut v, 126);
        assert_eq!(v, [0xFE]);
        v.clear();
        // 127 would be 0xFF, "unknown": it takes two bytes.
        put_size(&mut v, 127);
        assert_eq!(v, [0x40, 0x7F]);
        v.clear();
        put_size_len(&mut v, 3, 8);
        assert_eq!(v, [0x01, 0, 0, 0, 0, 0, 0, 3]);
    }

    #[test]
    fn ids_and_uints_are_big_endian_and_minimal() {
        let mut v = Vec::new();
        put_uint(&mut v, id::TIMESTAMP_SCALE, 1_000_000);
        assert_eq!(v, [0x2A, 0xD7, 0xB1, 0x83, 0x0F, 0x42, 0x40]);
        v.clear();
        put_uint(&mut v, id::TRACK_NUMBER, 0);
        assert_eq!(v, [0xD7, 0x81, 0x00]);
    }

    #[test]
    fn a_void_fills_exactly_what_it_is_given() {
        for total in [9, 10, 200, 4000] {
            let mut v = Vec::new();
            put_void(&mut v, total);
            assert_eq!(v.len(), total);
        }
    }
}
