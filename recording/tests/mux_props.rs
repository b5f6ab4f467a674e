//! Whatever a publisher sends (garbage, reordering, duplicates, jumps in
//! sequence numbers and timestamps), the muxer does not panic and what it
//! writes is well-formed Matroska: read back here by a small EBML reader of
//! the test's own, not by the writer's code.

use proptest::prelude::*;
use tuxa_recording::mux::{HEAD_LEN, RtpIn, TrackCodec, TrackMuxer};
use tuxa_recording::recover::recover;

/// (id, data start, data end) of the elements in `buf[from..to]`, or an error.
fn elements(buf: &[u8], from: usize, to: usize) -> Result<Vec<(u32, usize, usize)>, String> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let first = buf[at];
        let id_len = first.leading_zeros() as usize + 1;
        if id_len > 4 || at + id_len > to {
            return Err(format!("bad id at {at}"));
        }
        let id = buf[at..at + id_len]
            .iter()
            .fold(0u32, |a, b| (a << 8) | u32::from(*b));
        at += id_len;
        let s0 = *buf.get(at).ok_or("size past the end")?;
        let size_len = s0.leading_zeros() as usize + 1;
        if size_len > 8 || at + size_len > to {
            return Err(format!("bad size at {at}"));
        }
        let mut size = u64::from(s0) & (0xFF >> size_len);
        for b in &buf[at + 1..at + size_len] {
            size = (size << 8) | u64::from(*b);
        }
        at += size_len;
        let end = at + usize::try_from(size).map_err(|e| e.to_string())?;
        if end > to {
            return Err(format!(
                "element {id:x} at {at} runs past its parent ({end} > {to})"
            ));
        }
        out.push((id, at, end));
        at = end;
    }
    Ok(out)
}

/// The finished file: EBML header, one Segment of the right size holding
/// SeekHead/Info/Tracks/Void, clusters of a Timestamp and SimpleBlocks of
/// track 1, and Cues. Returns the number of blocks.
fn check_file(file: &[u8]) -> Result<usize, String> {
    let top = elements(file, 0, file.len())?;
    let ids: Vec<u32> = top.iter().map(|e| e.0).collect();
    if ids != [0x1A45_DFA3, 0x1853_8067] {
        return Err(format!("top level {ids:x?}"));
    }
    let (_, seg_start, seg_end) = top[1];
    let mut blocks = 0;
    let mut last_time = 0;
    for (id, start, end) in elements(file, seg_start, seg_end)? {
        match id {
            0x114D_9B74 | 0x1549_A966 | 0x1654_AE6B | 0xEC | 0x1C53_BB6B => {
                if end <= HEAD_LEN && id == 0x1C53_BB6B {
                    return Err("Cues inside the head".into());
                }
            }
            0x1F43_B675 => {
                let children = elements(file, start, end)?;
                let Some(&(0xE7, ts_start, ts_end)) = children.first() else {
                    return Err("a cluster without its Timestamp first".into());
                };
                let time = file[ts_start..ts_end]
                    .iter()
                    .fold(0u64, |a, b| (a << 8) | u64::from(*b));
                if time < last_time {
                    return Err(format!("cluster time {time} before {last_time}"));
                }
                last_time = time;
                for &(cid, bstart, bend) in &children[1..] {
                    if cid != 0xA3 || bend - bstart < 4 || file[bstart] != 0x81 {
                        return Err(format!("bad block {cid:x}"));
                    }
                    blocks += 1;
                }
            }
            other => return Err(format!("unexpected element {other:x} in the Segment")),
        }
    }
    Ok(blocks)
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Anything at all.
        prop::collection::vec(any::<u8>(), 0..40),
        // A VP8 frame start, often a keyframe header with any size.
        (
            any::<bool>(),
            any::<u16>(),
            any::<u16>(),
            prop::collection::vec(any::<u8>(), 0..30)
        )
            .prop_map(|(key, w, h, rest)| {
                let mut p = vec![0x10, if key { 0x00 } else { 0x01 }, 0, 0, 0x9D, 0x01, 0x2A];
                p.extend_from_slice(&w.to_le_bytes());
                p.extend_from_slice(&h.to_le_bytes());
                p.extend(rest);
                p
            }),
        // An Opus TOC with any config.
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..20)).prop_map(|(toc, rest)| {
            let mut p = vec![toc];
            p.extend(rest);
            p
        }),
        // H.264: an SPS, an IDR or an FU-A piece.
        (0u8..4, prop::collection::vec(any::<u8>(), 0..30)).prop_map(|(kind, rest)| {
            let head: &[u8] = match kind {
                0 => &[0x67, 0x42, 0xC0, 0x0C, 0xD9, 0x01, 0x41],
                1 => &[0x68, 0xCB],
                2 => &[0x65, 0x88],
                _ => &[0x7C, 0x85],
            };
            let mut p = head.to_vec();
            p.extend(rest);
            p
        }),
    ]
}

#[derive(Debug, Clone)]
struct Step {
    seq_step: i8,
    ts_step: u32,
    marker: bool,
    red: bool,
    payload: Vec<u8>,
    wait_ms: u16,
    /// Call `new_stream` before this packet.
    switch: bool,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (
            -3i8..6,
            prop_oneof![Just(0u32), Just(3000), Just(960), any::<u32>()],
            any::<bool>(),
            prop::bool::weighted(0.1),
            payload(),
            0u16..400,
            prop::bool::weighted(0.05),
        )
            .prop_map(
                |(seq_step, ts_step, marker, red, payload, wait_ms, switch)| Step {
                    seq_step,
                    ts_step,
                    marker,
                    red,
                    payload,
                    wait_ms,
                    switch,
                },
            ),
        0..120,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_input_gives_a_well_formed_file(
        codec in prop_oneof![Just(TrackCodec::Opus), Just(TrackCodec::Vp8), Just(TrackCodec::H264)],
        offset in 0u64..100_000,
        steps in steps(),
        cut in any::<prop::sample::Index>(),
    ) {
        let clock = if codec == TrackCodec::Opus { 48_000 } else { 90_000 };
        let mut muxer = TrackMuxer::new(codec, clock, offset).unwrap();
        let mut files = vec![Vec::new()];
        let mut finished = Vec::new();
        let (mut seq, mut ts, mut now) = (1_000i64, 0u32, offset);
        for s in &steps {
            seq = (seq + i64::from(s.seq_step)).max(0);
            ts = ts.wrapping_add(s.ts_step);
            now += u64::from(s.wait_ms);
            if s.switch {
                muxer.new_stream();
                seq += 5_000 * i64::from(s.seq_step);
            }
            let pushed = muxer.push(RtpIn {
                seq: seq as u64,
                timestamp: ts,
                marker: s.marker,
                red: s.red,
                payload: &s.payload,
                arrival_ms: now,
            });
            let pushed = pushed.unwrap();
            files.last_mut().unwrap().extend(muxer.take_output());
            if let Some(next) = pushed.next_segment {
                let done = std::mem::replace(&mut muxer, *next);
                finished.push(done.finish());
                files.push(muxer.take_output());
            }
        }
        finished.push(muxer.finish());
        for (mut file, fin) in files.into_iter().zip(finished) {
            prop_assert_eq!(fin.head.len(), HEAD_LEN);
            // The unfinished file cut anywhere: recovery never panics, and
            // what it makes of it is well-formed too.
            let cut_at = cut.index(file.len() + 1);
            if let Ok(rec) = recover(&file[..cut_at]) {
                let mut fixed = file[..rec.valid_len as usize].to_vec();
                fixed.extend_from_slice(&rec.tail);
                fixed[..HEAD_LEN].copy_from_slice(&rec.head);
                let blocks = check_file(&fixed).map_err(TestCaseError::fail)?;
                prop_assert_eq!(blocks as u64, rec.frames);
            } else {
                prop_assert!(cut_at < HEAD_LEN);
            }
            file.extend_from_slice(&fin.tail);
            prop_assert!(file.len() >= HEAD_LEN);
            file[..HEAD_LEN].copy_from_slice(&fin.head);
            let blocks = check_file(&file).map_err(TestCaseError::fail)?;
            prop_assert_eq!(blocks as u64, fin.frames);
            // A finished file recovers to itself (same frames, same size).
            let rec = recover(&file).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(rec.frames, fin.frames);
            prop_assert_eq!(rec.valid_len as usize + rec.tail.len(), file.len());
            prop_assert_eq!(&rec.head, &fin.head);
        }
    }
}
