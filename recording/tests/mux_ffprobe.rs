//! The muxer's files checked by an independent tool: real VP8 and Opus made
//! by Debian's ffmpeg, packetized into RTP by str0m's packetizers, pushed with
//! reordering, a lost packet and a retransmission, and the result read back
//! with ffprobe/ffmpeg (frame counts, durations, decoding without error).
//!
//! ffmpeg is required (the test command installs it): these tests fail,
//! loudly, without it.

use std::path::{Path, PathBuf};
use std::process::Command;

use str0m::rtp::{RedEncoder, RedundantBlock};
use str0m::unversioned::{H264Packetizer, OpusPacketizer, Packetizer, Vp8Packetizer};
use tuxa_recording::mux::{Finished, HEAD_LEN, RtpIn, TrackCodec, TrackMuxer};
use tuxa_recording::recover::recover;

fn work_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tuxa-mux-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("{cmd} is required for this test (apt-get install ffmpeg): {e}")
    });
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// VP8 frames (data, keyframe) from ffmpeg's testsrc at 15 fps, a keyframe a second.
fn vp8_frames(dir: &Path, size: &str, seconds: u32) -> Vec<(Vec<u8>, bool)> {
    let ivf = dir.join(format!("src-{size}.ivf"));
    let src = format!("testsrc=size={size}:rate=15");
    let t = seconds.to_string();
    run(
        "ffmpeg",
        &[
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
            "15",
            "-b:v",
            "300k",
            "-f",
            "ivf",
            ivf.to_str().unwrap(),
        ],
    );
    let bytes = std::fs::read(&ivf).unwrap();
    assert_eq!(&bytes[..4], b"DKIF");
    let header_len = u16::from_le_bytes([bytes[6], bytes[7]]) as usize;
    let mut frames = Vec::new();
    let mut at = header_len;
    while at + 12 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let data = bytes[at + 12..at + 12 + len].to_vec();
        let key = data[0] & 1 == 0;
        frames.push((data, key));
        at += 12 + len;
    }
    frames
}

/// H.264 access units (Annex B, keyframe) from x264 at 15 fps, without
/// B-frames (as WebRTC sends), an IDR a second.
fn h264_frames(dir: &Path, size: &str, seconds: u32) -> Vec<(Vec<u8>, bool)> {
    let path = dir.join(format!("src-{size}.h264"));
    let src = format!("testsrc=size={size}:rate=15");
    let t = seconds.to_string();
    run(
        "ffmpeg",
        &[
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
            "libx264",
            "-profile:v",
            "baseline",
            "-pix_fmt",
            "yuv420p",
            "-bf",
            "0",
            "-g",
            "15",
            "-f",
            "h264",
            path.to_str().unwrap(),
        ],
    );
    let bytes = std::fs::read(&path).unwrap();
    // NAL units between start codes.
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= bytes.len() {
        if bytes[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut frames = Vec::new();
    let mut current = Vec::new();
    let mut key = false;
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).map_or(bytes.len(), |&next| {
            // Back over the next start code (3 or 4 bytes).
            let mut e = next - 3;
            if e > start && bytes[e - 1] == 0 {
                e -= 1;
            }
            e
        });
        let unit = &bytes[start..end];
        let kind = unit[0] & 0x1F;
        current.extend_from_slice(&[0, 0, 0, 1]);
        current.extend_from_slice(unit);
        key |= kind == 5;
        if kind == 1 || kind == 5 {
            frames.push((std::mem::take(&mut current), key));
            key = false;
        }
    }
    frames
}

/// Opus packets (20 ms each) of a 440 Hz sine, out of ffmpeg's Ogg.
fn opus_packets(dir: &Path, seconds: u32) -> Vec<Vec<u8>> {
    let ogg = dir.join("src.ogg");
    let src = format!("sine=frequency=440:duration={seconds}");
    run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            &src,
            "-c:a",
            "libopus",
            "-b:a",
            "32k",
            "-frame_duration",
            "20",
            "-f",
            "ogg",
            ogg.to_str().unwrap(),
        ],
    );
    let bytes = std::fs::read(&ogg).unwrap();
    let mut packets = Vec::new();
    let mut current = Vec::new();
    let mut at = 0;
    while at + 27 <= bytes.len() {
        assert_eq!(&bytes[at..at + 4], b"OggS");
        let segments = bytes[at + 26] as usize;
        let table = &bytes[at + 27..at + 27 + segments];
        let mut data = at + 27 + segments;
        for &lace in table {
            current.extend_from_slice(&bytes[data..data + lace as usize]);
            data += lace as usize;
            if lace < 255 {
                packets.push(std::mem::take(&mut current));
            }
        }
        at = data;
    }
    // OpusHead and OpusTags are not audio.
    assert!(packets[0].starts_with(b"OpusHead"));
    assert!(packets[1].starts_with(b"OpusTags"));
    packets.drain(..2);
    packets
}

#[derive(Clone, Debug)]
struct Pkt {
    seq: u64,
    timestamp: u32,
    marker: bool,
    red: bool,
    payload: Vec<u8>,
    arrival_ms: u64,
    /// Index of the frame it carries.
    frame: usize,
}

/// RTP packets of the frames, in sending order; RTP timestamps start close
/// to the 32-bit wrap so that it happens in the middle of the stream.
fn packetize(
    frames: &[Vec<u8>],
    packetizer: &mut dyn Packetizer,
    mtu: usize,
    ticks_per_frame: u32,
    ms_per_frame: f64,
    first_seq: u64,
) -> Vec<Pkt> {
    let ts0 = u32::MAX - ticks_per_frame * (frames.len() as u32 / 2);
    let mut out = Vec::new();
    let mut seq = first_seq;
    for (i, frame) in frames.iter().enumerate() {
        let parts = packetizer.packetize(mtu, frame).unwrap();
        let n = parts.len();
        for (j, payload) in parts.into_iter().enumerate() {
            out.push(Pkt {
                seq,
                timestamp: ts0.wrapping_add(ticks_per_frame * i as u32),
                marker: j + 1 == n,
                red: false,
                payload,
                arrival_ms: (i as f64 * ms_per_frame) as u64,
                frame: i,
            });
            seq += 1;
        }
    }
    out
}

fn push_all(muxer: &mut TrackMuxer, packets: &[Pkt], file: &mut Vec<u8>) -> bool {
    let mut keyframe_wanted = false;
    for p in packets {
        let pushed = muxer
            .push(RtpIn {
                seq: p.seq,
                timestamp: p.timestamp,
                marker: p.marker,
                red: p.red,
                payload: &p.payload,
                arrival_ms: p.arrival_ms,
            })
            .unwrap();
        keyframe_wanted |= pushed.keyframe_wanted;
        assert!(pushed.next_segment.is_none());
        file.extend(muxer.take_output());
    }
    keyframe_wanted
}

fn write_finished(path: &Path, mut file: Vec<u8>, fin: &Finished) {
    assert!(file.len() >= HEAD_LEN || file.is_empty());
    file.extend_from_slice(&fin.tail);
    assert_eq!(fin.head.len(), HEAD_LEN);
    file[..HEAD_LEN].copy_from_slice(&fin.head);
    std::fs::write(path, file).unwrap();
}

#[derive(Debug)]
struct Probe {
    codec: String,
    width: Option<u64>,
    height: Option<u64>,
    frames: u64,
    start: f64,
    /// Absent in a file never finished (no Duration, unknown Segment size).
    duration: Option<f64>,
}

fn probe(path: &Path) -> Probe {
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-count_frames",
            "-show_streams",
            "-show_format",
            "-of",
            "flat",
            path.to_str().unwrap(),
        ],
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lookup = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(|v| v.trim_matches('"').to_string())
    };
    let field = |key: &str| {
        lookup(key).unwrap_or_else(|| panic!("{key} missing in ffprobe's output:\n{text}"))
    };
    let num = |key: &str| lookup(key).and_then(|v| v.parse::<f64>().ok());
    let probe = Probe {
        codec: field("streams.stream.0.codec_name"),
        width: num("streams.stream.0.width").map(|w| w as u64),
        height: num("streams.stream.0.height").map(|h| h as u64),
        frames: field("streams.stream.0.nb_read_frames").parse().unwrap(),
        start: num("format.start_time").unwrap(),
        duration: num("format.duration"),
    };
    eprintln!("{}: {probe:?}", path.display());
    probe
}

/// Decodes the whole file: ffmpeg must print no error.
fn assert_decodes(path: &Path) {
    let out = run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            path.to_str().unwrap(),
            "-f",
            "null",
            "-",
        ],
    );
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        errors.trim().is_empty(),
        "{} does not decode cleanly: {errors}",
        path.display()
    );
}

fn within_5_percent(got: f64, want: f64) -> bool {
    (got - want).abs() <= want * 0.05
}

#[test]
fn vp8_with_reordering_a_retransmission_and_a_loss_plays_what_was_decodable() {
    let dir = work_dir("vp8");
    let frames = vp8_frames(&dir, "320x240", 4);
    assert_eq!(frames.len(), 60);
    let datas: Vec<Vec<u8>> = frames.iter().map(|f| f.0.clone()).collect();
    let mut packets = packetize(
        &datas,
        &mut Vp8Packetizer::default(),
        400,
        6000,
        1000.0 / 15.0,
        1_000,
    );

    // The loss: one packet of an inter frame in the second second. That frame
    // and every frame after it up to the next keyframe cannot be decoded.
    let lost_frame = (16..frames.len()).find(|&i| !frames[i].1).unwrap();
    let next_key = (lost_frame..frames.len()).find(|&i| frames[i].1).unwrap();
    let lost_at = packets.iter().position(|p| p.frame == lost_frame).unwrap();
    let lost = packets.remove(lost_at);
    // ... which arrives again, as a retransmission, long after it was given up.
    let mut too_late = lost.clone();
    too_late.arrival_ms += 2_000;
    let late_at = packets
        .iter()
        .position(|p| p.arrival_ms >= too_late.arrival_ms)
        .unwrap();
    packets.insert(late_at, too_late);

    // A retransmission in time: the last keyframe's first packet arrives
    // 150 ms late, after later packets, and is still used.
    let key_frame = frames.iter().rposition(|f| f.1).unwrap();
    let resent_at = packets.iter().position(|p| p.frame == key_frame).unwrap();
    let mut resent = packets.remove(resent_at);
    resent.arrival_ms += 150;
    let insert_at = packets
        .iter()
        .position(|p| p.arrival_ms > resent.arrival_ms)
        .unwrap();
    packets.insert(insert_at, resent);

    // Reordering: a few neighbours swapped.
    for i in [3, 40, 77, 120] {
        if i + 1 < packets.len() {
            packets.swap(i, i + 1);
        }
    }

    let offset_ms = 2_500;
    let mut muxer = TrackMuxer::new(TrackCodec::Vp8, 90_000, offset_ms).unwrap();
    let mut file = Vec::new();
    let keyframe_wanted = push_all(&mut muxer, &packets, &mut file);
    assert!(keyframe_wanted, "the loss must ask for a keyframe");
    let fin = muxer.finish();

    let expected = (frames.len() - (next_key - lost_frame)) as u64;
    assert_eq!(
        fin.frames, expected,
        "lost frame {lost_frame}, next keyframe {next_key}"
    );
    assert_eq!(fin.dropped_frames, (next_key - lost_frame) as u64);
    assert_eq!(fin.start_ms, Some(offset_ms));
    assert_eq!((fin.width, fin.height), (Some(320), Some(240)));
    assert!(
        within_5_percent(fin.duration_ms as f64, 4000.0),
        "{}",
        fin.duration_ms
    );

    let path = dir.join("vp8.webm");
    write_finished(&path, file, &fin);
    let p = probe(&path);
    assert_eq!(p.codec, "vp8");
    assert_eq!((p.width, p.height), (Some(320), Some(240)));
    assert!(
        within_5_percent(p.frames as f64, expected as f64),
        "{p:?}, expected {expected}"
    );
    assert!((p.start - 2.5).abs() < 0.01, "{p:?}");
    assert!(
        within_5_percent(p.duration.unwrap() - p.start, 4.0),
        "{p:?}"
    );
    assert_decodes(&path);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_track_joined_between_keyframes_starts_at_its_first_keyframe_on_the_room_clock() {
    let dir = work_dir("join");
    let frames = vp8_frames(&dir, "320x240", 3);
    let datas: Vec<Vec<u8>> = frames.iter().map(|f| f.0.clone()).collect();
    let mut packets = packetize(
        &datas,
        &mut Vp8Packetizer::default(),
        1000,
        6000,
        1000.0 / 15.0,
        0,
    );
    // The recording starts in the middle of the first second's inter frames.
    let joined = 5;
    let first_key = (joined..frames.len()).find(|&i| frames[i].1).unwrap();
    assert!(first_key > joined);
    packets.retain(|p| p.frame >= joined);

    let offset_ms = 10_000;
    let mut muxer = TrackMuxer::new(TrackCodec::Vp8, 90_000, offset_ms).unwrap();
    assert!(muxer.waiting_for_keyframe());
    let mut file = Vec::new();
    let first = muxer
        .push(RtpIn {
            seq: packets[0].seq,
            timestamp: packets[0].timestamp,
            marker: packets[0].marker,
            red: false,
            payload: &packets[0].payload,
            arrival_ms: offset_ms,
        })
        .unwrap();
    assert!(
        first.keyframe_wanted,
        "a track that starts without a keyframe asks for one"
    );
    let rest: Vec<Pkt> = packets[1..]
        .iter()
        .map(|p| Pkt {
            arrival_ms: p.arrival_ms + offset_ms,
            ..p.clone()
        })
        .collect();
    let _ = push_all(&mut muxer, &rest, &mut file);
    assert!(!muxer.waiting_for_keyframe());
    let fin = muxer.finish();
    assert_eq!(fin.frames, (frames.len() - first_key) as u64);
    // Its first packet was at 10 s; its first frame written is the keyframe,
    // (first_key - joined) frames later.
    let want_start = offset_ms + ((first_key - joined) as u64 * 1000) / 15;
    assert_eq!(fin.start_ms, Some(want_start));

    let path = dir.join("join.webm");
    write_finished(&path, file, &fin);
    let p = probe(&path);
    assert!((p.start * 1000.0 - want_start as f64).abs() < 2.0, "{p:?}");
    assert_eq!(p.frames, fin.frames, "{p:?}");
    assert_decodes(&path);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_switch_to_another_rtp_stream_continues_the_file_in_time() {
    let dir = work_dir("switch");
    let frames = vp8_frames(&dir, "320x240", 4);
    let datas: Vec<Vec<u8>> = frames.iter().map(|f| f.0.clone()).collect();
    let half = 30;
    assert!(frames[half].1, "the switch happens at a keyframe");
    let ms_per_frame = 1000.0 / 15.0;
    let old = packetize(
        &datas[..half],
        &mut Vp8Packetizer::default(),
        1000,
        6000,
        ms_per_frame,
        1_000,
    );
    // Explicit (a simulcast layer switch told by the caller; sequence numbers
    // close to the old ones) and detected (a far jump: a restarted stream).
    for (explicit, first_seq) in [(true, 200), (false, 900_000)] {
        let mut new = packetize(
            &datas[half..],
            &mut Vp8Packetizer::default(),
            1000,
            6000,
            ms_per_frame,
            first_seq,
        );
        for p in &mut new {
            p.timestamp = p.timestamp.wrapping_add(0x1234_5678);
            p.arrival_ms += (half as f64 * ms_per_frame) as u64;
        }
        let mut muxer = TrackMuxer::new(TrackCodec::Vp8, 90_000, 0).unwrap();
        let mut file = Vec::new();
        let _ = push_all(&mut muxer, &old, &mut file);
        if explicit {
            muxer.new_stream();
        }
        let _ = push_all(&mut muxer, &new, &mut file);
        let fin = muxer.finish();
        assert_eq!(fin.frames, frames.len() as u64, "explicit: {explicit}");
        assert!(
            within_5_percent(fin.duration_ms as f64, 4000.0),
            "{}",
            fin.duration_ms
        );

        let path = dir.join(format!("switch-{explicit}.webm"));
        write_finished(&path, file, &fin);
        let p = probe(&path);
        assert_eq!(p.frames, frames.len() as u64, "{p:?}");
        assert!(
            within_5_percent(p.duration.unwrap() - p.start, 4.0),
            "{p:?}"
        );
        assert_decodes(&path);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn h264_in_matroska_with_a_loss_plays_what_was_decodable() {
    let dir = work_dir("h264");
    let frames = h264_frames(&dir, "320x240", 4);
    assert_eq!(frames.len(), 60);
    assert!(frames[0].1);
    let datas: Vec<Vec<u8>> = frames.iter().map(|f| f.0.clone()).collect();
    let mut packets = packetize(
        &datas,
        &mut H264Packetizer::default(),
        600,
        6000,
        1000.0 / 15.0,
        9,
    );
    let lost_frame = (20..frames.len()).find(|&i| !frames[i].1).unwrap();
    let next_key = (lost_frame..frames.len()).find(|&i| frames[i].1).unwrap();
    let lost_at = packets.iter().position(|p| p.frame == lost_frame).unwrap();
    packets.remove(lost_at);
    for i in [5, 50, 80] {
        packets.swap(i, i + 1);
    }

    let mut muxer = TrackMuxer::new(TrackCodec::H264, 90_000, 0).unwrap();
    let mut file = Vec::new();
    assert!(push_all(&mut muxer, &packets, &mut file));
    let fin = muxer.finish();
    let expected = (frames.len() - (next_key - lost_frame)) as u64;
    assert_eq!(
        fin.frames, expected,
        "lost frame {lost_frame}, next keyframe {next_key}"
    );
    assert_eq!((fin.width, fin.height), (Some(320), Some(240)));

    let path = dir.join("h264.mkv");
    write_finished(&path, file, &fin);
    let p = probe(&path);
    assert_eq!(p.codec, "h264");
    assert_eq!((p.width, p.height), (Some(320), Some(240)));
    assert!(
        within_5_percent(p.frames as f64, expected as f64),
        "{p:?}, expected {expected}"
    );
    assert!(
        within_5_percent(p.duration.unwrap() - p.start, 4.0),
        "{p:?}"
    );
    assert_decodes(&path);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn opus_with_red_and_a_loss_keeps_every_other_packet_in_time() {
    let dir = work_dir("opus");
    let opus = opus_packets(&dir, 4);
    // 4 s of 20 ms packets (libopus adds one for its look-ahead).
    let sent = opus.len();
    assert!((200..=201).contains(&sent), "{sent}");
    let mut packets = packetize(&opus, &mut OpusPacketizer, 1200, 960, 20.0, 70_000);
    // Every third packet is RED around its primary, with the previous one redundant.
    for i in (3..packets.len()).step_by(3) {
        let previous = opus[packets[i].frame - 1].clone();
        packets[i].payload = RedEncoder::encode(
            111,
            &packets[i].payload,
            &[RedundantBlock {
                pt: 111,
                timestamp_offset: 960,
                payload: previous,
            }],
        );
        packets[i].red = true;
    }
    // Two losses: frame 101's is repeated in frame 102's RED and comes back
    // from it; frame 52's is not (53 is not RED) and stays a gap.
    packets.retain(|p| p.frame != 101 && p.frame != 52);
    packets.swap(10, 11);
    packets.swap(150, 152);

    let mut muxer = TrackMuxer::new(TrackCodec::Opus, 48_000, 0).unwrap();
    let mut file = Vec::new();
    let keyframe_wanted = push_all(&mut muxer, &packets, &mut file);
    assert!(!keyframe_wanted, "audio never asks for a keyframe");
    let fin = muxer.finish();
    assert_eq!(fin.lost_packets, 2);
    assert_eq!(fin.recovered_frames, 1);
    assert_eq!(fin.frames, sent as u64 - 1);
    assert_eq!(fin.start_ms, Some(0));
    assert_eq!(fin.duration_ms, sent as u64 * 20);

    let path = dir.join("opus.webm");
    write_finished(&path, file, &fin);
    let p = probe(&path);
    assert_eq!(p.codec, "opus");
    assert!(
        within_5_percent(p.frames as f64, sent as f64 - 1.0),
        "{p:?}"
    );
    assert!(
        within_5_percent(p.duration.unwrap() - p.start, sent as f64 * 0.02),
        "{p:?}"
    );
    assert_decodes(&path);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_resolution_change_starts_a_second_file_and_both_decode() {
    let dir = work_dir("resize");
    let mut frames = vp8_frames(&dir, "320x240", 2);
    let small = vp8_frames(&dir, "160x120", 2);
    assert!(small[0].1);
    let first_len = frames.len();
    frames.extend(small);
    let datas: Vec<Vec<u8>> = frames.iter().map(|f| f.0.clone()).collect();
    let packets = packetize(
        &datas,
        &mut Vp8Packetizer::default(),
        1000,
        6000,
        1000.0 / 15.0,
        5,
    );

    let mut muxer = TrackMuxer::new(TrackCodec::Vp8, 90_000, 0).unwrap();
    let mut files = vec![Vec::new()];
    let mut finished = Vec::new();
    for p in &packets {
        let pushed = muxer
            .push(RtpIn {
                seq: p.seq,
                timestamp: p.timestamp,
                marker: p.marker,
                red: false,
                payload: &p.payload,
                arrival_ms: p.arrival_ms,
            })
            .unwrap();
        files.last_mut().unwrap().extend(muxer.take_output());
        if let Some(next) = pushed.next_segment {
            let done = std::mem::replace(&mut muxer, *next);
            finished.push(done.finish());
            files.push(muxer.take_output());
        }
    }
    finished.push(muxer.finish());
    assert_eq!(finished.len(), 2, "one file per resolution");
    assert_eq!(finished[0].frames, first_len as u64);
    assert_eq!(finished[1].frames, (frames.len() - first_len) as u64);
    assert_eq!(
        (finished[1].width, finished[1].height),
        (Some(160), Some(120))
    );
    // The second file starts where the first ended, on the same clock.
    let second_start = finished[1].start_ms.unwrap();
    assert!(second_start.abs_diff(2000) <= 1, "{second_start}");

    for (i, (file, fin)) in files.into_iter().zip(&finished).enumerate() {
        let path = dir.join(format!("seg{i}.webm"));
        write_finished(&path, file, fin);
        let p = probe(&path);
        let (w, h) = if i == 0 { (320, 240) } else { (160, 120) };
        assert_eq!((p.width, p.height), (Some(w), Some(h)), "{p:?}");
        assert!(
            within_5_percent(p.frames as f64, fin.frames as f64),
            "{p:?}"
        );
        assert!(
            within_5_percent(p.duration.unwrap() - p.start, 2.0),
            "{p:?}"
        );
        assert_decodes(&path);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_file_cut_after_a_cluster_still_decodes_up_to_the_cut() {
    let dir = work_dir("cut");
    let frames = vp8_frames(&dir, "320x240", 4);
    let datas: Vec<Vec<u8>> = frames.iter().map(|f| f.0.clone()).collect();
    let packets = packetize(
        &datas,
        &mut Vp8Packetizer::default(),
        1000,
        6000,
        1000.0 / 15.0,
        0,
    );

    let mut muxer = TrackMuxer::new(TrackCodec::Vp8, 90_000, 0).unwrap();
    let mut file = Vec::new();
    let mut cut = None;
    for p in &packets {
        let _ = muxer
            .push(RtpIn {
                seq: p.seq,
                timestamp: p.timestamp,
                marker: p.marker,
                red: false,
                payload: &p.payload,
                arrival_ms: p.arrival_ms,
            })
            .unwrap();
        file.extend(muxer.take_output());
        // The "crash": the file as it is on disk after two seconds.
        if cut.is_none() && p.frame >= 30 && muxer.frames_in_output() > 0 {
            cut = Some((file.clone(), muxer.frames_in_output()));
        }
    }
    let (cut, frames_in_cut) = cut.unwrap();
    assert!(frames_in_cut > 0 && frames_in_cut < frames.len() as u64);
    // Never finished: unknown Segment size, no Duration, no Cues.
    let path = dir.join("cut.webm");
    std::fs::write(&path, &cut).unwrap();
    let p = probe(&path);
    assert_eq!(p.frames, frames_in_cut, "{p:?}");
    assert_decodes(&path);

    // Recovered: the same frames, now with a length and Cues.
    let rec = recover(&cut).unwrap();
    assert_eq!(rec.valid_len, cut.len() as u64);
    assert_eq!(rec.frames, frames_in_cut);
    let mut fixed = cut.clone();
    fixed.extend_from_slice(&rec.tail);
    fixed[..HEAD_LEN].copy_from_slice(&rec.head);
    let path = dir.join("recovered.webm");
    std::fs::write(&path, &fixed).unwrap();
    let p = probe(&path);
    assert_eq!(p.frames, frames_in_cut, "{p:?}");
    let seconds = frames_in_cut as f64 / 15.0;
    assert!(
        within_5_percent(p.duration.unwrap() - p.start, seconds),
        "{p:?}"
    );
    assert_eq!(rec.duration_ms, (seconds * 1000.0).round() as u64);
    assert_decodes(&path);

    // Cut in the middle of the open cluster, too: what is whole still plays,
    // and recovery keeps exactly the whole clusters.
    let fin = muxer.finish();
    let mut whole = file;
    whole.extend_from_slice(&fin.tail);
    let torn = &whole[..cut.len() + 100];
    let path = dir.join("torn.webm");
    std::fs::write(&path, torn).unwrap();
    let p = probe(&path);
    assert!(p.frames >= frames_in_cut, "{p:?}");
    assert_eq!(recover(torn).unwrap().valid_len, cut.len() as u64);
    let _ = std::fs::remove_dir_all(&dir);
}
