//! Synthetic media frames that a receiver can check byte for byte.
//!
//! The SFU forwards at the frame level: it depacketizes what a publisher sends and packetizes it
//! again for each subscriber. So the unit checked here is the frame, not the RTP packet. Every
//! frame carries who sent it, its number, a pattern derived from both, and a checksum over the
//! whole frame; a receiver rebuilds the pattern and the checksum and so knows that the frame is
//! intact and whose it is.
//!
//! Layout (after a codec header):
//!
//! ```text
//! "TXF1" | kind u8 | flags u8 | sender u64 | counter u64 | len u16 | pattern[len] | fnv1a32 u32
//! ```
//!
//! The codec header makes the SFU see what it expects. Video frames start like VP8: a keyframe
//! has a 3-byte frame tag with bit 0 clear, the start code `9d 01 2a` and a width and height; an
//! interframe has a 3-byte tag with bit 0 set. Audio frames start with an Opus TOC byte. All
//! integers are big-endian except the VP8 tag and sizes, which are little-endian as in VP8.

use tuxa_protocol::{MediaKind, ParticipantId};

const MAGIC: &[u8; 4] = b"TXF1";
const FLAG_KEYFRAME: u8 = 1;
/// Opus TOC: config 31 (CELT FB 20 ms), mono, one frame.
const OPUS_TOC: u8 = 0xf8;
const VP8_START_CODE: [u8; 3] = [0x9d, 0x01, 0x2a];
pub const VIDEO_WIDTH: u16 = 320;
pub const VIDEO_HEIGHT: u16 = 240;

/// What a receiver learns from a frame that checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    pub kind: MediaKind,
    pub sender: ParticipantId,
    pub counter: u64,
    pub keyframe: bool,
}

/// Builds the frame number `counter` of `sender`. `keyframe` only matters for video.
pub fn build_frame(
    kind: MediaKind,
    sender: ParticipantId,
    counter: u64,
    keyframe: bool,
) -> Vec<u8> {
    let keyframe = keyframe && kind == MediaKind::Video;
    let pattern_len = pattern_len(kind, sender, counter, keyframe);
    let mut out = Vec::with_capacity(pattern_len + 48);
    // Codec header; the VP8 tag's first-partition size is patched in below.
    match kind {
        MediaKind::Audio => out.push(OPUS_TOC),
        MediaKind::Video => {
            out.extend_from_slice(&[0, 0, 0]);
            if keyframe {
                out.extend_from_slice(&VP8_START_CODE);
                out.extend_from_slice(&VIDEO_WIDTH.to_le_bytes());
                out.extend_from_slice(&VIDEO_HEIGHT.to_le_bytes());
            }
        }
    }
    out.extend_from_slice(MAGIC);
    out.push(kind_byte(kind));
    out.push(if keyframe { FLAG_KEYFRAME } else { 0 });
    out.extend_from_slice(&sender.0.to_be_bytes());
    out.extend_from_slice(&counter.to_be_bytes());
    out.extend_from_slice(&(pattern_len as u16).to_be_bytes());
    let start = out.len();
    out.resize(start + pattern_len, 0);
    fill_pattern(&mut out[start..], kind, sender, counter);
    if kind == MediaKind::Video {
        // Frame tag: size0..2 | show_frame | version | !keyframe. The "first partition" is
        // everything after the header, which is what a real encoder's size would be bounded by.
        let header = if keyframe { 10 } else { 3 };
        let first_part = ((out.len() + 4 - header) as u32).min(0x7_ffff);
        let tag: u32 = (first_part << 5) | (1 << 4) | u32::from(!keyframe);
        out[..3].copy_from_slice(&tag.to_le_bytes()[..3]);
    }
    let sum = fnv1a32(&out);
    out.extend_from_slice(&sum.to_be_bytes());
    out
}

/// Why a received frame is not one of ours, intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError(pub String);

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, FrameError> {
    Err(FrameError(msg.into()))
}

/// Checks a received frame of the given kind and says whose and which it is.
pub fn parse_frame(kind: MediaKind, data: &[u8]) -> Result<FrameInfo, FrameError> {
    if data.len() < 4 {
        return err(format!("{} bytes: too short", data.len()));
    }
    let (body_at, vp8_key) = match kind {
        MediaKind::Audio => {
            if data[0] != OPUS_TOC {
                return err(format!("audio TOC byte {:#04x}", data[0]));
            }
            (1, false)
        }
        MediaKind::Video => {
            let key = data[0] & 1 == 0;
            if key {
                if data.len() < 10 || data[3..6] != VP8_START_CODE {
                    return err("VP8 keyframe without the start code");
                }
                let w = u16::from_le_bytes([data[6], data[7]]);
                let h = u16::from_le_bytes([data[8], data[9]]);
                if (w, h) != (VIDEO_WIDTH, VIDEO_HEIGHT) {
                    return err(format!("VP8 keyframe of {w}x{h}"));
                }
                (10, true)
            } else {
                (3, false)
            }
        }
    };
    let fixed = 4 + 1 + 1 + 8 + 8 + 2;
    if data.len() < body_at + fixed + 4 {
        return err(format!("{} bytes: too short for a frame", data.len()));
    }
    let (signed, sum) = data.split_at(data.len() - 4);
    let sum = u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]]);
    if fnv1a32(signed) != sum {
        return err(format!("checksum mismatch over {} bytes", data.len()));
    }
    let b = &signed[body_at..];
    if &b[..4] != MAGIC {
        return err("no TXF1 magic");
    }
    if b[4] != kind_byte(kind) {
        return err(format!("a {} frame arrived on a {kind:?} track", b[4]));
    }
    let keyframe = b[5] & FLAG_KEYFRAME != 0;
    if kind == MediaKind::Video && keyframe != vp8_key {
        return err("keyframe flag and VP8 header disagree");
    }
    let sender = ParticipantId(u64::from_be_bytes(b[6..14].try_into().expect("8 bytes")));
    let counter = u64::from_be_bytes(b[14..22].try_into().expect("8 bytes"));
    let len = usize::from(u16::from_be_bytes([b[22], b[23]]));
    let pattern = &b[24..];
    if pattern.len() != len {
        return err(format!(
            "pattern of {} bytes, header says {len}",
            pattern.len()
        ));
    }
    if len != pattern_len(kind, sender, counter, keyframe) {
        return err(format!(
            "pattern length {len} is not the one frame {counter} of {sender} has"
        ));
    }
    let mut expected = vec![0; len];
    fill_pattern(&mut expected, kind, sender, counter);
    if pattern != expected.as_slice() {
        return err("pattern bytes differ");
    }
    Ok(FrameInfo {
        kind,
        sender,
        counter,
        keyframe,
    })
}

fn kind_byte(kind: MediaKind) -> u8 {
    match kind {
        MediaKind::Audio => 0,
        MediaKind::Video => 1,
    }
}

/// Sizes vary from frame to frame; keyframes span several RTP packets, so the depacketizer's
/// reassembly is exercised, interframes mostly one or two.
fn pattern_len(kind: MediaKind, sender: ParticipantId, counter: u64, keyframe: bool) -> usize {
    let r = splitmix(sender.0 ^ counter.rotate_left(17) ^ u64::from(kind_byte(kind)) << 60);
    let r = (r % 1000) as usize;
    match (kind, keyframe) {
        (MediaKind::Audio, _) => 40 + r % 120,
        (MediaKind::Video, false) => 200 + r * 2,
        (MediaKind::Video, true) => 3000 + r * 4,
    }
}

fn fill_pattern(buf: &mut [u8], kind: MediaKind, sender: ParticipantId, counter: u64) {
    let mut state =
        sender.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ counter ^ (u64::from(kind_byte(kind)) << 56);
    for chunk in buf.chunks_mut(8) {
        state = splitmix(state);
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub fn fnv1a32(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in data {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Reassembles VP8 frames from RTP packets (RFC 7741), for the webrtc-rs peer whose track API
/// hands out packets. A frame is complete when the packets from the one with S=1, PID=0 up to
/// the one with the marker bit are all there, with no gap in sequence numbers.
#[derive(Debug, Default)]
pub struct Vp8Reassembler {
    /// Packets of frames not complete yet, by RTP timestamp.
    pending: std::collections::BTreeMap<u32, PendingFrame>,
    /// Frames given up on (a packet never came).
    pub incomplete: u64,
    /// RTP packets that were not valid VP8 payloads.
    pub bad_packets: u64,
}

#[derive(Debug, Default)]
struct PendingFrame {
    /// seq → (start of frame, marker, VP8 data after the payload descriptor)
    packets: std::collections::BTreeMap<u16, (bool, bool, Vec<u8>)>,
    first_seen: u64,
}

impl Vp8Reassembler {
    /// Feeds one RTP packet; returns the frames it completed.
    pub fn push(&mut self, seq: u16, timestamp: u32, marker: bool, payload: &[u8]) -> Vec<Vec<u8>> {
        let Some((start, data)) = vp8_descriptor(payload) else {
            self.bad_packets += 1;
            return vec![];
        };
        let serial = self
            .pending
            .values()
            .map(|p| p.first_seen)
            .max()
            .unwrap_or(0)
            + 1;
        let frame = self
            .pending
            .entry(timestamp)
            .or_insert_with(|| PendingFrame {
                packets: Default::default(),
                first_seen: serial,
            });
        frame.packets.insert(seq, (start, marker, data.to_vec()));
        let mut done = vec![];
        if let Some(data) = frame.assemble() {
            self.pending.remove(&timestamp);
            done.push(data);
        }
        // Keep a bounded window: a frame that 30 later frames overtook is lost.
        while self.pending.len() > 30 {
            let oldest = self
                .pending
                .iter()
                .min_by_key(|(_, p)| p.first_seen)
                .map(|(ts, _)| *ts)
                .expect("non-empty");
            self.pending.remove(&oldest);
            self.incomplete += 1;
        }
        done
    }
}

impl PendingFrame {
    fn assemble(&self) -> Option<Vec<u8>> {
        let (&first_seq, _) = self.packets.iter().find(|(_, (start, _, _))| *start)?;
        // Walk forward from the start packet (sequence numbers may wrap).
        let mut out = Vec::new();
        let mut seq = first_seq;
        for _ in 0..self.packets.len() {
            let (_, marker, data) = self.packets.get(&seq)?;
            out.extend_from_slice(data);
            if *marker {
                return Some(out);
            }
            seq = seq.wrapping_add(1);
        }
        None
    }
}

/// Parses the VP8 payload descriptor: (is the start of a frame, the VP8 data after it).
fn vp8_descriptor(p: &[u8]) -> Option<(bool, &[u8])> {
    let b0 = *p.first()?;
    let x = b0 & 0x80 != 0;
    let s = b0 & 0x10 != 0;
    let pid = b0 & 0x07;
    let mut i = 1;
    if x {
        let ext = *p.get(i)?;
        i += 1;
        if ext & 0x80 != 0 {
            let pic = *p.get(i)?;
            i += if pic & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            i += 1;
        }
        if ext & 0x30 != 0 {
            i += 1;
        }
    }
    if i > p.len() {
        return None;
    }
    Some((s && pid == 0, &p[i..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_detect_damage() {
        for kind in [MediaKind::Audio, MediaKind::Video] {
            for counter in 0..50 {
                let key = counter % 10 == 0;
                let f = build_frame(kind, ParticipantId(7), counter, key);
                let info = parse_frame(kind, &f).unwrap();
                assert_eq!(info.sender, ParticipantId(7));
                assert_eq!(info.counter, counter);
                assert_eq!(info.keyframe, key && kind == MediaKind::Video);
                if kind == MediaKind::Video {
                    assert_eq!(f[0] & 1 == 0, key);
                }
                let mut bad = f.clone();
                let n = bad.len();
                bad[n / 2] ^= 0x40;
                assert!(parse_frame(kind, &bad).is_err());
                assert!(parse_frame(kind, &f[..n - 1]).is_err());
            }
        }
        let v = build_frame(MediaKind::Video, ParticipantId(1), 0, true);
        assert!(v.len() > 2400, "a keyframe spans several packets");
        assert!(parse_frame(MediaKind::Audio, &v).is_err());
    }

    #[test]
    fn vp8_reassembly_in_and_out_of_order() {
        let frame = build_frame(MediaKind::Video, ParticipantId(3), 0, true);
        let chunks: Vec<&[u8]> = frame.chunks(1000).collect();
        let mk = |i: usize| {
            let mut p = vec![if i == 0 { 0x10 } else { 0x00 }];
            p.extend_from_slice(chunks[i]);
            p
        };
        let mut r = Vp8Reassembler::default();
        let n = chunks.len();
        let mut out = vec![];
        for i in (0..n).rev() {
            out.extend(r.push(65534u16.wrapping_add(i as u16), 9000, i == n - 1, &mk(i)));
        }
        assert_eq!(out, vec![frame.clone()]);
        // With a picture id extension.
        let mut p = vec![0x90, 0x80, 0x05];
        p.extend_from_slice(&frame);
        assert_eq!(r.push(10, 1, true, &p), vec![frame]);
    }
}
