//! Real media for a test peer: VP8 frames and Opus packets encoded by
//! Debian's ffmpeg (libvpx, libopus), read out of IVF and Ogg, so that what
//! the server records can be decoded and counted by an independent tool
//! (ffprobe). A peer given [`RealMedia`] in [`crate::PeerOptions::real_media`]
//! sends these instead of the synthetic frames of [`crate::frames`], through
//! str0m's (or webrtc-rs's) own VP8 and Opus packetizers.
//!
//! ffmpeg is required (`scripts/test-all.sh` installs it): without it
//! [`RealMedia::encode`] fails, loudly.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};

/// One encoded VP8 frame.
#[derive(Debug, Clone)]
pub struct VideoFrame {
    pub data: Vec<u8>,
    pub key: bool,
}

/// A few seconds of encoded video and audio, sent in a loop.
#[derive(Debug)]
pub struct RealMedia {
    /// VP8 at [`RealMedia::FPS`], a keyframe every second.
    pub video: Vec<VideoFrame>,
    /// Opus, 20 ms a packet.
    pub audio: Vec<Vec<u8>>,
}

impl RealMedia {
    /// The frame rate the video is encoded at; a peer sends one frame per
    /// `video_frame_interval` (33 ms by default, ≈ 30 fps).
    pub const FPS: u32 = 30;

    /// Encodes `seconds` of ffmpeg's `testsrc` (`size`, e.g. "320x240") and
    /// a 440 Hz sine into VP8 and Opus, in `dir`.
    pub fn encode(dir: &Path, size: &str, seconds: u32) -> anyhow::Result<RealMedia> {
        std::fs::create_dir_all(dir)?;
        let ivf = dir.join("src.ivf");
        let ogg = dir.join("src.ogg");
        let t = seconds.to_string();
        let src = format!("testsrc=size={size}:rate={}", Self::FPS);
        let g = Self::FPS.to_string();
        ffmpeg(&[
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            &src,
            "-t",
            &t,
            "-c:v",
            "libvpx",
            "-g",
            &g,
            "-b:v",
            "300k",
            "-deadline",
            "realtime",
            "-f",
            "ivf",
            path(&ivf)?,
        ])?;
        let sine = format!("sine=frequency=440:duration={seconds}");
        ffmpeg(&[
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            &sine,
            "-c:a",
            "libopus",
            "-b:a",
            "32k",
            "-frame_duration",
            "20",
            "-f",
            "ogg",
            path(&ogg)?,
        ])?;
        let video = ivf_frames(&std::fs::read(&ivf)?)?;
        let audio = ogg_opus_packets(&std::fs::read(&ogg)?)?;
        ensure!(
            video.first().is_some_and(|f| f.key),
            "the first VP8 frame is a keyframe"
        );
        ensure!(!audio.is_empty(), "no Opus packets");
        Ok(RealMedia { video, audio })
    }
}

fn path(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("a UTF-8 path")
}

/// Runs ffmpeg (or ffprobe, by `cmd`) and returns its stdout.
pub fn run_tool(cmd: &str, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("{cmd} is required for this test (apt-get install ffmpeg)"))?;
    if !out.status.success() {
        bail!(
            "{cmd} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

fn ffmpeg(args: &[&str]) -> anyhow::Result<()> {
    run_tool("ffmpeg", args).map(|_| ())
}

/// The frames of an IVF file.
fn ivf_frames(bytes: &[u8]) -> anyhow::Result<Vec<VideoFrame>> {
    ensure!(bytes.len() >= 32 && &bytes[..4] == b"DKIF", "not IVF");
    let header_len = u16::from_le_bytes([bytes[6], bytes[7]]) as usize;
    let mut frames = Vec::new();
    let mut at = header_len;
    while at + 12 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into()?) as usize;
        let data = bytes
            .get(at + 12..at + 12 + len)
            .context("a truncated IVF frame")?
            .to_vec();
        // VP8 payload header: bit 0 of the first byte is 0 on a keyframe.
        let key = data.first().is_some_and(|b| b & 1 == 0);
        frames.push(VideoFrame { data, key });
        at += 12 + len;
    }
    Ok(frames)
}

/// The Opus packets of an Ogg file (without OpusHead and OpusTags).
fn ogg_opus_packets(bytes: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut packets = Vec::new();
    let mut current = Vec::new();
    let mut at = 0;
    while at + 27 <= bytes.len() {
        ensure!(&bytes[at..at + 4] == b"OggS", "not an Ogg page at {at}");
        let segments = bytes[at + 26] as usize;
        let table = bytes
            .get(at + 27..at + 27 + segments)
            .context("a truncated Ogg page")?;
        let mut data = at + 27 + segments;
        for &lace in table {
            current.extend_from_slice(
                bytes
                    .get(data..data + lace as usize)
                    .context("a truncated Ogg segment")?,
            );
            data += lace as usize;
            if lace < 255 {
                packets.push(std::mem::take(&mut current));
            }
        }
        at = data;
    }
    ensure!(
        packets.len() > 2
            && packets[0].starts_with(b"OpusHead")
            && packets[1].starts_with(b"OpusTags"),
        "not Ogg Opus"
    );
    packets.drain(..2);
    Ok(packets)
}

/// Where the next real frame comes from (a peer's cursor into [`RealMedia`]).
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    video: usize,
    audio: usize,
}

impl Cursor {
    pub fn audio(&mut self, media: &RealMedia) -> Vec<u8> {
        let p = media.audio[self.audio % media.audio.len()].clone();
        self.audio = (self.audio + 1) % media.audio.len();
        p
    }

    /// The next VP8 frame. `key_wanted`: a keyframe was asked for, so the
    /// stream goes back to the last keyframe at or before the cursor (an
    /// encoder cannot make one on demand from a file; repeating a GOP from its
    /// keyframe is a valid VP8 stream).
    pub fn video(&mut self, media: &RealMedia, key_wanted: bool) -> (Vec<u8>, bool) {
        let n = media.video.len();
        let mut i = self.video % n;
        if key_wanted {
            while !media.video[i].key {
                i -= 1; // frame 0 is a keyframe (checked in `encode`)
            }
        }
        let f = &media.video[i];
        self.video = (i + 1) % n;
        (f.data.clone(), f.key)
    }
}

/// A scratch directory for a test, emptied first.
pub fn work_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("tuxa-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
