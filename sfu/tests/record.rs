//! The recording tap (`sfu/src/record.rs`), in simulated time between str0m
//! clients: what a recorded room hands to the recorder.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Codecs, Sim, frame_layer};
use str0m::media::{MediaKind, Mid};
use tuxa_protocol::{ParticipantId, TrackSource};
use tuxa_sfu::{Recorded, RecordedRtp, RecordedTrack};

const SEC: Duration = Duration::from_secs(1);

/// Every client connected and heard by every other one.
fn call_up(sim: &Sim) -> bool {
    sim.all_connected()
        && sim.clients.iter().all(|rx| {
            sim.clients
                .iter()
                .filter(|tx| tx.pid != rx.pid)
                .all(|tx| !rx.frames_from(tx.pid, MediaKind::Video).is_empty())
        })
}

fn tracks(sim: &Sim) -> Vec<RecordedTrack> {
    sim.recorded
        .iter()
        .filter_map(|r| match r {
            Recorded::Track(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

fn packets(sim: &Sim, pid: ParticipantId, mid: Mid) -> Vec<RecordedRtp> {
    sim.recorded
        .iter()
        .filter_map(|r| match r {
            Recorded::Rtp(p) if p.participant == pid && p.mid == mid => Some(p.clone()),
            _ => None,
        })
        .collect()
}

/// Length of a VP8 payload descriptor (RFC 7741).
fn vp8_descriptor_len(p: &[u8]) -> usize {
    let mut i = 1;
    if p[0] & 0x80 != 0 {
        let x = p[1];
        i += 1;
        if x & 0x80 != 0 {
            i += if p[i] & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1;
        }
        if x & 0x30 != 0 {
            i += 1;
        }
    }
    i
}

/// The VP8 frames in a run of recorded packets, reassembled as a
/// depacketizer would (payload after the descriptor, up to the marker).
fn frames(pkts: &[RecordedRtp]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for p in pkts {
        cur.extend_from_slice(&p.payload[vp8_descriptor_len(&p.payload)..]);
        if p.marker {
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

/// Sequence numbers go up by one, and timestamps move on with the time of
/// arrival (within a frame interval or two): one stream, on one clock.
fn assert_one_stream(pkts: &[RecordedRtp]) {
    let t0 = (pkts[0].timestamp, pkts[0].arrived);
    for w in pkts.windows(2) {
        let at = |p: &RecordedRtp| (p.seq, p.timestamp, p.rid, p.arrived - t0.1);
        assert_eq!(
            w[1].seq,
            w[0].seq + 1,
            "a gap: {:?}",
            (at(&w[0]), at(&w[1]))
        );
        let ticks = f64::from(w[1].timestamp.wrapping_sub(t0.0)) / f64::from(w[1].clock_rate);
        let elapsed = (w[1].arrived - t0.1).as_secs_f64();
        assert!(
            (ticks - elapsed).abs() < 0.08,
            "the clock drifts from the arrivals: {ticks} s vs {elapsed} s at {:?}",
            at(&w[1])
        );
    }
}

#[test]
fn recording_hands_out_every_track_from_a_keyframe() {
    let mut sim = Sim::new();
    let a = sim.join("alice", 1, Codecs::Default);
    let b = sim.join("bob", 2, Codecs::Vp8On(120, 124));
    sim.run_until(3 * SEC, call_up).expect("call up");
    sim.run(SEC);
    assert!(
        sim.recorded.is_empty(),
        "nothing is recorded before the start"
    );

    let keys_before: Vec<usize> = sim
        .clients
        .iter()
        .map(|c| c.keyframe_requests.len())
        .collect();
    let t0 = sim.now;
    let room = sim.room.clone();
    sim.sfu.set_recording(t0, &room, true);
    sim.pump();
    assert!(sim.sfu.is_recording(&room));
    assert!(
        matches!(&sim.recorded[0], Recorded::Started { room: r, at } if *r == room && *at == t0),
        "{:?}",
        sim.recorded.first()
    );
    sim.run(3 * SEC);

    for i in [a, b] {
        let c = &sim.clients[i];
        // Asked for a keyframe at once (not after some subscriber's PLI).
        let asked = &c.keyframe_requests[keys_before[i]..];
        assert!(
            asked
                .first()
                .is_some_and(|(at, _)| *at - t0 < 100 * Duration::from_millis(1)),
            "{}: keyframe requests after the start: {asked:?}",
            c.name
        );

        let (amid, vmid) = (c.audio.unwrap(), c.video.unwrap());
        let ts: Vec<_> = tracks(&sim)
            .into_iter()
            .filter(|t| t.participant == c.pid)
            .collect();
        assert_eq!(ts.len(), 2, "{}: {ts:?}", c.name);
        let audio = ts.iter().find(|t| t.mid == amid).expect("audio announced");
        assert_eq!(
            (audio.kind, audio.source, audio.clock_rate),
            (MediaKind::Audio, TrackSource::Microphone, 48_000)
        );
        let video = ts.iter().find(|t| t.mid == vmid).expect("video announced");
        assert_eq!(
            (video.kind, video.source, video.clock_rate),
            (MediaKind::Video, TrackSource::Camera, 90_000)
        );
        assert_eq!(video.codec, str0m::format::Codec::Vp8);
        assert_eq!(video.room, room);

        // Audio: every frame sent since the start, byte for byte.
        let ap = packets(&sim, c.pid, amid);
        assert_one_stream(&ap);
        let first = c
            .sent_audio
            .iter()
            .position(|s| s.data == ap[0].payload)
            .expect("the first recorded audio was sent");
        assert!(c.sent_audio[first].at - t0 < 100 * Duration::from_millis(1));
        for (n, p) in ap.iter().enumerate() {
            assert_eq!(c.sent_audio[first + n].data, p.payload, "audio #{n}");
        }
        assert!(
            c.sent_audio.len() - (first + ap.len()) <= 3,
            "audio stops short"
        );

        // Video: from a keyframe on, every frame, byte for byte.
        let vp = packets(&sim, c.pid, vmid);
        assert!(vp[0].keyframe_start, "video starts at a keyframe");
        assert!(vp.iter().all(|p| p.rid.is_none()));
        assert_one_stream(&vp);
        let got = frames(&vp);
        let first = c
            .sent_video
            .iter()
            .position(|s| *s.data == *got[0])
            .expect("the first recorded frame was sent");
        assert!(c.sent_video[first].key);
        assert!(
            c.sent_video[first].at - t0 < 200 * Duration::from_millis(1),
            "the keyframe came {:?} after the start",
            c.sent_video[first].at - t0
        );
        for (n, f) in got.iter().enumerate() {
            assert_eq!(*c.sent_video[first + n].data, **f, "video frame #{n}");
        }
        assert!(got.len() >= 85, "{} frames in 3 s", got.len());
        assert!(c.sent_video.len() - (first + got.len()) <= 3);
        // Each track is announced before its first packet.
        let announced = sim.recorded.iter().position(
            |r| matches!(r, Recorded::Track(t) if t.participant == c.pid && t.mid == vmid),
        );
        let first_pkt = sim
            .recorded
            .iter()
            .position(|r| matches!(r, Recorded::Rtp(p) if p.participant == c.pid && p.mid == vmid));
        assert!(announced < first_pkt);
    }
}

#[test]
fn stopping_ends_what_is_handed_out_and_starting_twice_changes_nothing() {
    let mut sim = Sim::new();
    sim.join("alice", 1, Codecs::Default);
    sim.join("bob", 2, Codecs::Default);
    sim.run_until(3 * SEC, call_up).expect("call up");
    let room = sim.room.clone();
    let now = sim.now;
    sim.sfu.set_recording(now, &room, true);
    sim.run(SEC);
    let now = sim.now;
    sim.sfu.set_recording(now, &room, true);
    sim.pump();
    let started = |sim: &Sim| {
        sim.recorded
            .iter()
            .filter(|r| matches!(r, Recorded::Started { .. }))
            .count()
    };
    assert_eq!(started(&sim), 1, "started twice");
    sim.run(SEC);
    let now = sim.now;
    sim.sfu.set_recording(now, &room, false);
    sim.pump();
    assert!(!sim.sfu.is_recording(&room));
    let n = sim.recorded.len();
    assert!(matches!(&sim.recorded[n - 1], Recorded::Stopped { at, .. } if *at == now));
    let stats = sim.sfu.stats();
    sim.run(2 * SEC);
    assert_eq!(sim.recorded.len(), n, "{:?}", &sim.recorded[n..]);
    assert!(
        sim.sfu.stats().packets_forwarded > stats.packets_forwarded + 100,
        "the call goes on"
    );
    // Stopping what is not recorded says nothing.
    let now = sim.now;
    sim.sfu.set_recording(now, &room, false);
    sim.pump();
    assert_eq!(sim.recorded.len(), n);

    // Again: every track is announced anew, from a keyframe.
    let now = sim.now;
    sim.sfu.set_recording(now, &room, true);
    sim.run(SEC);
    assert_eq!(started(&sim), 2);
    let again: Vec<_> = sim.recorded[n..]
        .iter()
        .filter(|r| matches!(r, Recorded::Track(_)))
        .collect();
    assert_eq!(again.len(), 4, "{again:?}");
}

#[test]
fn a_participant_who_leaves_ends_its_tracks_and_a_newcomer_is_recorded() {
    let mut sim = Sim::new();
    let a = sim.join("alice", 1, Codecs::Default);
    let b = sim.join("bob", 2, Codecs::Default);
    sim.run_until(3 * SEC, call_up).expect("call up");
    let room = sim.room.clone();
    let now = sim.now;
    sim.sfu.set_recording(now, &room, true);
    sim.run(SEC);

    let bob = sim.clients[b].pid;
    let now = sim.now;
    sim.sfu.remove(now, bob);
    sim.pump();
    let ended: Vec<_> = sim
        .recorded
        .iter()
        .filter_map(|r| match r {
            Recorded::TrackEnded {
                participant,
                mid,
                at,
                room: r,
            } => {
                assert_eq!((*participant, *at, r), (bob, now, &room));
                Some(*mid)
            }
            _ => None,
        })
        .collect();
    let mut want = vec![sim.clients[b].audio.unwrap(), sim.clients[b].video.unwrap()];
    want.sort();
    let mut ended = ended;
    ended.sort();
    assert_eq!(ended, want);
    let n = sim.recorded.len();

    // Carol joins while the room is recorded: her tracks are, from a keyframe.
    let c = sim.join("carol", 3, Codecs::Default);
    sim.run(2 * SEC);
    let carol = sim.clients[c].pid;
    let after = &sim.recorded[n..];
    assert!(
        after
            .iter()
            .all(|r| !matches!(r, Recorded::Rtp(p) if p.participant == bob)),
        "nothing of bob after he left"
    );
    let vmid = sim.clients[c].video.unwrap();
    let vp = packets(&sim, carol, vmid);
    assert!(vp.len() > 30 && vp[0].keyframe_start, "{}", vp.len());
    assert!(!packets(&sim, sim.clients[a].pid, sim.clients[a].audio.unwrap()).is_empty());
}

/// A simulcast publisher alone in its room (so that every keyframe request
/// it gets is the recorder's); every layer arrives (it does not pause layers
/// nobody watches) unless a test turns one off.
fn simulcast_call() -> (Sim, usize) {
    let mut sim = Sim::new();
    let p = sim.add_simulcast_publisher("doctor", 1);
    sim.clients[p]
        .simulcast
        .as_mut()
        .unwrap()
        .honour_publish_layers = false;
    sim.publish_simulcast(p);
    sim.run_until(3 * SEC, |s| {
        s.clients[0].connected && s.rtp_at_sfu.len() >= 4
    })
    .expect("call up");
    sim.run(SEC);
    (sim, p)
}

/// (layer, frame number) of each recorded frame of the publisher's video.
fn recorded_layers(sim: &Sim, p: usize) -> Vec<(u8, u32)> {
    let c = &sim.clients[p];
    frames(&packets(sim, c.pid, c.video.unwrap()))
        .iter()
        .map(|f| frame_layer(f).expect("a layer frame"))
        .collect()
}

#[test]
fn simulcast_records_the_best_layer_that_arrives_and_switches_at_keyframes() {
    let (mut sim, p) = simulcast_call();
    let room = sim.room.clone();
    let t0 = sim.now;
    sim.sfu.set_recording(t0, &room, true);
    sim.run(2 * SEC);

    // Only "f" is recorded, from its keyframe, every frame.
    let got = recorded_layers(&sim, p);
    assert!(got.len() >= 50, "{} frames", got.len());
    assert!(got.iter().all(|(l, _)| *l == 2), "{got:?}");
    for w in got.windows(2) {
        assert_eq!(w[1].1, w[0].1 + 1, "frames missing");
    }
    let sp = sim.clients[p].simulcast.clone().unwrap();
    assert!(sp.layer("f").key_requests.iter().any(|t| *t >= t0));
    let pid = sim.clients[p].pid;
    let vmid = sim.clients[p].video.unwrap();
    let vp = packets(&sim, pid, vmid);
    assert!(vp[0].keyframe_start);
    assert!(vp.iter().all(|x| x.rid.as_deref() == Some("f")));
    let total: u64 = sp.layers.iter().map(|l| l.packets).sum();
    assert!(
        (vp.len() as u64) < total / 2,
        "one layer, not all: {} of {total}",
        vp.len()
    );

    // The browser drops its top layer (a slow CPU): "h" is recorded from its
    // keyframe on, as one stream with what came before.
    let before = got.len();
    sim.clients[p].simulcast.as_mut().unwrap().layers[2].active = false;
    let t1 = sim.now;
    sim.run(3 * SEC);
    let got = recorded_layers(&sim, p);
    let after = &got[before..];
    let first_h = after.iter().position(|(l, _)| *l == 1).expect("h recorded");
    assert!(after[..first_h].iter().all(|(l, _)| *l == 2));
    assert!(after[first_h..].iter().all(|(l, _)| *l == 1), "{after:?}");
    let sp = sim.clients[p].simulcast.clone().unwrap();
    let h_key = sp
        .layer("h")
        .keyframes
        .iter()
        .find(|t| **t > t1)
        .copied()
        .expect("a keyframe of h was sent");
    assert!(sp.layer("h").key_requests.iter().any(|t| *t > t1));
    assert!(h_key - t1 < 2 * SEC, "switched down after {:?}", h_key - t1);
    let vp = packets(&sim, pid, vmid);
    assert_one_stream(&vp);
    let switch = vp
        .iter()
        .position(|x| x.rid.as_deref() == Some("h"))
        .unwrap();
    assert!(vp[switch].keyframe_start, "switched at a keyframe");

    // The top layer comes back: recorded again from a keyframe asked for it.
    let before = got.len();
    let t2 = sim.now;
    sim.clients[p].simulcast.as_mut().unwrap().layers[2].active = true;
    sim.run(2 * SEC);
    let got = recorded_layers(&sim, p);
    let after = &got[before..];
    let first_f = after.iter().position(|(l, _)| *l == 2).expect("f again");
    assert!(after[first_f..].iter().all(|(l, _)| *l == 2), "{after:?}");
    let sp = sim.clients[p].simulcast.clone().unwrap();
    assert!(sp.layer("f").key_requests.iter().any(|t| *t >= t2));
    let vp = packets(&sim, pid, vmid);
    assert_one_stream(&vp);
    // One track for the recorder throughout.
    let announced: HashMap<_, _> = tracks(&sim)
        .into_iter()
        .map(|t| ((t.participant, t.mid), t.source))
        .collect();
    assert_eq!(announced.len(), 2, "{announced:?}");
    assert_eq!(announced[&(pid, vmid)], TrackSource::Camera);
}
