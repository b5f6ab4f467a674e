//! An unfinished track file made whole again.
//!
//! A file the muxer never finished (the server killed, the disk full) is a
//! head with an unknown Segment size and no Duration, then whole clusters,
//! maybe the start of one more. It already plays; [`recover`] reads it and
//! gives what [`TrackMuxer::finish`] would have: the length to keep (up to the
//! end of the last whole cluster), Cues to append there, and a head of the
//! same length with the Segment's size, the Duration and a SeekHead, so that
//! players can seek in it and show its length. Sans IO: the caller reads
//! (and unseals) the bytes and writes the result.
//!
//! [`TrackMuxer::finish`]: crate::mux::TrackMuxer::finish

use crate::ebml::{self, id};
use crate::mux::{Final, HEAD_LEN, build_head, cues_element, opus_duration_ms};

/// What to do to the file: keep its first `valid_len` bytes, append `tail`,
/// and write `head` over its first [`HEAD_LEN`] bytes.
#[derive(Debug)]
pub struct Recovered {
    /// Bytes that are whole clusters (from the start of the file).
    pub valid_len: u64,
    /// The Cues, to append after `valid_len`.
    pub tail: Vec<u8>,
    /// Exactly [`HEAD_LEN`] bytes.
    pub head: Vec<u8>,
    /// Frames in the whole clusters.
    pub frames: u64,
    /// The first frame's time on the recording clock (ms).
    pub start_ms: Option<u64>,
    /// From the first frame to the end of the last (ms; a video file's last
    /// frame counted as long as the gap before it).
    pub duration_ms: u64,
}

/// Why a file cannot be recovered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoverError {
    /// Shorter than the head: nothing of the recording was written.
    #[error("the file is shorter than its head ({0} bytes)")]
    NoHead(usize),
    /// The head is not one the muxer writes.
    #[error("not a track file written by tuxa's muxer")]
    NotOurs,
}

/// Reads an unfinished (or finished) track file; see the module documentation.
pub fn recover(file: &[u8]) -> Result<Recovered, RecoverError> {
    if file.len() < HEAD_LEN {
        return Err(RecoverError::NoHead(file.len()));
    }
    let (ebml_id, ebml_data, Some(ebml_size)) =
        ebml::read_header(file, 0).ok_or(RecoverError::NotOurs)?
    else {
        return Err(RecoverError::NotOurs);
    };
    let header_end = ebml_data + usize::try_from(ebml_size).map_err(|_| RecoverError::NotOurs)?;
    if ebml_id != id::EBML || header_end > HEAD_LEN {
        return Err(RecoverError::NotOurs);
    }
    let (seg_id, seg_start, _) =
        ebml::read_header(file, header_end).ok_or(RecoverError::NotOurs)?;
    if seg_id != id::SEGMENT || seg_start != header_end + 12 {
        return Err(RecoverError::NotOurs);
    }
    // Tracks, copied as it is; the codec from its CodecID.
    let mut tracks = None;
    let mut at = seg_start;
    while at < HEAD_LEN {
        let (eid, data, Some(size)) = ebml::read_header(file, at).ok_or(RecoverError::NotOurs)?
        else {
            return Err(RecoverError::NotOurs);
        };
        let end = data + usize::try_from(size).map_err(|_| RecoverError::NotOurs)?;
        if end > HEAD_LEN {
            return Err(RecoverError::NotOurs);
        }
        if eid == id::TRACKS {
            tracks = Some(&file[at..end]);
        }
        at = end;
    }
    let tracks = tracks.ok_or(RecoverError::NotOurs)?;
    let opus = tracks.windows(6).any(|w| w == b"A_OPUS");

    let mut valid = HEAD_LEN;
    let mut cues = Vec::new();
    let mut frames = 0u64;
    let mut first_ms = None;
    let (mut last_ms, mut last_len) = (0u64, 0u64);
    while let Some((cid, data, Some(size))) = ebml::read_header(file, valid) {
        let Some(end) = usize::try_from(size).ok().and_then(|s| data.checked_add(s)) else {
            break;
        };
        if cid != id::CLUSTER || end > file.len() {
            break;
        }
        let Some(blocks) = cluster_blocks(&file[data..end]) else {
            break;
        };
        let Some(&(cluster_ms, first_key, _)) = blocks.first() else {
            valid = end;
            continue;
        };
        if first_key {
            cues.push((cluster_ms, (valid - seg_start) as u64));
        }
        for (ms, _, payload) in blocks {
            match first_ms {
                None => first_ms = Some(ms),
                Some(_) => last_len = ms.saturating_sub(last_ms),
            }
            if opus {
                last_len = opus_duration_ms(payload, 48_000).unwrap_or(last_len);
            }
            last_ms = ms;
            frames += 1;
        }
        valid = end;
    }
    let tail = cues_element(&cues);
    let end_ms = if first_ms.is_some() {
        last_ms + last_len
    } else {
        0
    };
    let head = build_head(
        &file[..header_end],
        tracks,
        Some(Final {
            segment_size: (valid - seg_start + tail.len()) as u64,
            end_ms,
            cues_pos: (!tail.is_empty()).then_some((valid - seg_start) as u64),
        }),
    );
    Ok(Recovered {
        valid_len: valid as u64,
        tail,
        head,
        frames,
        start_ms: first_ms,
        duration_ms: first_ms.map_or(0, |first| end_ms - first),
    })
}

/// A cluster's blocks: (time ms, keyframe, frame bytes); `None` if malformed.
fn cluster_blocks(cluster: &[u8]) -> Option<Vec<(u64, bool, &[u8])>> {
    let mut at = 0;
    let mut time = None;
    let mut blocks = Vec::new();
    while at < cluster.len() {
        let (eid, data, size) = ebml::read_header(cluster, at)?;
        let end = data.checked_add(usize::try_from(size?).ok()?)?;
        let body = cluster.get(data..end)?;
        match eid {
            id::TIMESTAMP => time = Some(ebml::read_uint(body)?),
            id::SIMPLE_BLOCK => {
                // Track number 1 (one byte), relative time, flags.
                if body.len() < 4 || body[0] != 0x81 {
                    return None;
                }
                let relative = i16::from_be_bytes([body[1], body[2]]);
                let ms = time?.checked_add_signed(i64::from(relative))?;
                blocks.push((ms, body[3] & 0x80 != 0, &body[4..]));
            }
            _ => {}
        }
        at = end;
    }
    Some(blocks)
}
