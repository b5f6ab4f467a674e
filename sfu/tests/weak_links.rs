//! Weak links (issue 16): a patient behind a link that falls and recovers,
//! in virtual time. The browser run that found these problems: tbf at
//! 300 kbit/s with 5 % random loss and a queue of about 300 ms, then
//! 80 kbit/s, then 300 kbit/s again.
//!
//! Every figure is printed as `NETSIM <scenario> <name>=<value>` (run with
//! `--nocapture`), like `network.rs`; BENCHMARKS.md takes them from there.

mod common;

use std::time::{Duration, Instant};

use common::{Codecs, Dir, LinkConfig, QueueLimit, Rx, Sim};
use str0m::media::MediaKind;
use tuxa_protocol::ServerMsg;

const SEC: Duration = Duration::from_secs(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn figure(scenario: &str, name: &str, value: impl std::fmt::Display) {
    println!("NETSIM {scenario} {name}={value}");
}

/// The browser test's narrow link: 300 kbit/s, 5 % loss, 300 ms queue.
fn narrow() -> LinkConfig {
    LinkConfig::rural_3g().with_queue(QueueLimit::Delay(ms(300)))
}

/// 80 kbit/s with the same loss: audio fits, the lowest video does not.
fn very_narrow() -> LinkConfig {
    LinkConfig::very_weak().with_loss(0.05)
}

struct Run {
    sim: Sim,
    publisher: usize,
    patient: usize,
}

impl Run {
    fn video(&self) -> Vec<&Rx> {
        let p = self.sim.clients[self.publisher].pid;
        self.sim.clients[self.patient].frames_from(p, MediaKind::Video)
    }

    fn audio(&self) -> Vec<&Rx> {
        let p = self.sim.clients[self.publisher].pid;
        self.sim.clients[self.patient].frames_from(p, MediaKind::Audio)
    }

    /// The `audio_only` signals the patient got from `from` on: (when, on).
    fn audio_only(&self, from: Instant) -> Vec<(Instant, bool)> {
        self.sim.clients[self.patient]
            .signals
            .iter()
            .filter(|(at, _)| *at >= from)
            .filter_map(|(at, m)| match m {
                ServerMsg::AudioOnly { on, .. } => Some((*at, *on)),
                _ => None,
            })
            .collect()
    }
}

/// A doctor publishing q/h/f on a good link; a patient whose downlink is
/// `first` from the start.
fn start(first: LinkConfig) -> Run {
    let mut sim = Sim::new();
    sim.step = ms(1);
    // Like a browser: a lost voice packet is concealed, not waited for.
    sim.audio_reordering = Some(0);
    let publisher = sim.add_simulcast_publisher("doctor", 1);
    sim.set_links(publisher, LinkConfig::good());
    sim.publish_simulcast(publisher);
    let patient = sim.add_client("patient", 2, Codecs::Default);
    sim.set_links(patient, LinkConfig::good());
    sim.set_link(patient, Dir::Down, first);
    sim.clients[patient].media_on = false;
    sim.clients[patient].auto_pli = true;
    sim.clients[patient].keep_checking = true;
    sim.publish_audio_only(patient);
    Run {
        sim,
        publisher,
        patient,
    }
}

/// Largest interval without a frame in [from, to].
fn worst_gap(frames: &[&Rx], from: Instant, to: Instant) -> Duration {
    let mut prev = from;
    let mut worst = Duration::ZERO;
    for f in frames.iter().filter(|f| f.at >= from && f.at <= to) {
        worst = worst.max(f.at - prev);
        prev = f.at;
    }
    worst.max(to - prev)
}

/// Per second: video frames, audio frames, audio_only signals.
fn timeline(r: &Run, from: Instant, to: Instant) {
    let v = r.video();
    let a = r.audio();
    let sig = r.audio_only(from);
    let mut t = from;
    while t < to {
        let n = t + SEC;
        let vf = v.iter().filter(|f| f.at >= t && f.at < n).count();
        let af = a.iter().filter(|f| f.at >= t && f.at < n).count();
        let s: Vec<_> = sig
            .iter()
            .filter(|(at, _)| *at >= t && *at < n)
            .map(|(_, on)| {
                if *on {
                    "AUDIO_ONLY_ON"
                } else {
                    "AUDIO_ONLY_OFF"
                }
            })
            .collect();
        let (kbps, qdrop, lost, _) = r.sim.clients[r.patient].down.window(t, n);
        println!(
            "  +{:>2}s video={vf:>2} audio={af:>2} down={:>4}kbit/s queue_drops={qdrop:>3} lost={lost:>2} {}",
            (t - from).as_secs(),
            kbps / 1000,
            s.join(" ")
        );
        t = n;
    }
}

/// What the 300 → 80 → 300 kbit/s run measured after the fall (from `t1`,
/// when the link fell to 80 kbit/s, to `end`).
struct Recovery {
    /// Episodes of audio-only (signals `on`) after the fall.
    episodes: usize,
    /// Shortest time between an `off` and the next `on`.
    shortest_reentry: Option<Duration>,
    /// When audio-only ended the last time (None: never ended).
    ended: Option<Instant>,
    /// The slowest, over every end of audio-only, from the end to the first
    /// video frame (None: an end with no frame after it).
    first_frame: Option<Duration>,
    /// Worst video gap in the 15 s after each end's first frame (cut short
    /// by the run's end), the worst over every end.
    worst_freeze: Option<Duration>,
}

/// 20 s settled at 300 kbit/s, 15 s at 80 kbit/s, then 300 kbit/s for
/// `after` (the link recovers at `t2`).
fn fall_and_recover(sc: &str, after: Duration) -> (Run, Recovery) {
    let mut r = start(narrow());
    r.sim.run(20 * SEC);
    let t1 = r.sim.now;
    r.sim.set_link(r.patient, Dir::Down, very_narrow());
    r.sim.run(15 * SEC);
    let t2 = r.sim.now;
    r.sim.set_link(r.patient, Dir::Down, narrow());
    r.sim.run(after);
    let end = r.sim.now;
    println!("{sc}: 300 kbit/s until +0, 80 kbit/s until +15 s, then 300 kbit/s");
    timeline(&r, t1 - 5 * SEC, end);

    let sig = r.audio_only(t1);
    let episodes = sig.iter().filter(|(_, on)| *on).count();
    let shortest_reentry = sig
        .windows(2)
        .filter(|w| !w[0].1 && w[1].1)
        .map(|w| w[1].0 - w[0].0)
        .min();
    let ended = sig.iter().rev().find(|(_, on)| !on).map(|(at, _)| *at);
    let v = r.video();
    let mut first_frame = Some(Duration::ZERO);
    let mut worst_freeze = Some(Duration::ZERO);
    for (e, _) in sig.iter().filter(|(_, on)| !on) {
        let first = v.iter().find(|f| f.at >= *e).map(|f| f.at);
        let freeze = first.map(|f| worst_gap(&v, f, (f + 15 * SEC).min(end)));
        first_frame = first_frame
            .zip(first.map(|f| f - *e))
            .map(|(a, b)| a.max(b));
        worst_freeze = worst_freeze.zip(freeze).map(|(a, b)| a.max(b));
    }
    if ended.is_none() {
        (first_frame, worst_freeze) = (None, None);
    }
    let show = |d: Option<Duration>| d.map_or("never".to_string(), |d| d.as_millis().to_string());
    for (at, on) in &sig {
        println!(
            "  audio_only {} at +{} ms",
            if *on { "on" } else { "off" },
            (*at - t1).as_millis()
        );
    }
    figure(sc, "audio_only_episodes", episodes);
    figure(sc, "shortest_reentry_ms", show(shortest_reentry));
    figure(
        sc,
        "audio_only_off_after_recovery_ms",
        show(ended.map(|e| e.saturating_duration_since(t2))),
    );
    figure(sc, "first_frame_after_off_ms", show(first_frame));
    figure(sc, "worst_freeze_15s_after_ms", show(worst_freeze));
    (
        r,
        Recovery {
            episodes,
            shortest_reentry,
            ended,
            first_frame,
            worst_freeze,
        },
    )
}

/// Runs differ (str0m draws SSRCs and ICE credentials at random, so the
/// packets, the losses they meet and the estimate differ): three of them.
const RUNS: usize = 3;

/// Item 1: one audio-only episode for one fall, and once it ends it does
/// not come back while the link holds 300 kbit/s (30 s after it returns,
/// longer than the hold-down).
#[test]
fn one_audio_only_episode_per_fall() {
    let mut bad = Vec::new();
    for run in 0..RUNS {
        let (_, got) = fall_and_recover("fall_300_80_300", 30 * SEC);
        assert!(
            got.episodes >= 1,
            "run {run}: 80 kbit/s never went audio-only"
        );
        assert!(
            got.ended.is_some(),
            "run {run}: audio-only never ended at 300 kbit/s"
        );
        if got.episodes != 1 {
            bad.push(format!(
                "run {run}: {} episodes, shortest re-entry {:?}",
                got.episodes, got.shortest_reentry
            ));
        }
    }
    assert!(bad.is_empty(), "audio-only flapped: {bad:?}");
}

/// Item 2: from every end of audio-only, the first video frame within 2 s
/// and no freeze over 2 s in the 15 s after it.
#[test]
fn video_comes_back_without_a_long_stall() {
    let mut bad = Vec::new();
    for run in 0..RUNS {
        let (_, got) = fall_and_recover("recover_300", 30 * SEC);
        let first = got.first_frame;
        let freeze = got.worst_freeze;
        if first.is_none_or(|d| d > 2 * SEC) || freeze.is_none_or(|d| d > 2 * SEC) {
            bad.push(format!(
                "run {run}: first frame {first:?} after audio-only ended, worst freeze {freeze:?}"
            ));
        }
    }
    assert!(bad.is_empty(), "slow or stalling recovery: {bad:?}");
}

/// Every interval between audio frames over `min` in [from, to], as
/// (start after `from`, length), for the timelines.
fn audio_gaps(frames: &[&Rx], from: Instant, to: Instant, min: Duration) -> Vec<(u128, u128)> {
    let mut prev = from;
    let mut out = Vec::new();
    for f in frames.iter().filter(|f| f.at >= from && f.at <= to) {
        if f.at - prev > min {
            out.push(((prev - from).as_millis(), (f.at - prev).as_millis()));
        }
        prev = f.at;
    }
    out
}

/// What a cliff costs the voice: the patient on 5 Mbit/s receiving the top
/// layer, then `rural_3g` (300 kbit/s, 5 % loss, 250 ms queue) at once.
/// Returns the worst audio gap in the 5 s after the cliff, in the same 5 s
/// from [`REACTED`] on, and once settled (the 10 s after that).
fn cliff(sc: &str) -> (Duration, Duration, Duration) {
    let mut r = start(LinkConfig::good());
    let pubp = r.sim.clients[r.publisher].pid;
    let patient = r.patient;
    let top = r.sim.run_until(20 * SEC, |s| {
        let v = s.clients[patient].frames_from(pubp, MediaKind::Video);
        v.len() >= 10 && v[v.len() - 10..].iter().all(|f| f.layer() == Some(2))
    });
    assert!(
        top.is_some(),
        "{sc}: the patient never reached the top layer"
    );
    r.sim.run(2 * SEC);
    let t1 = r.sim.now;
    r.sim.set_link(r.patient, Dir::Down, LinkConfig::rural_3g());
    r.sim.run(15 * SEC);
    let end = r.sim.now;
    println!("{sc}: 5 Mbit/s until +2 s, then rural_3g");
    timeline(&r, t1 - 2 * SEC, end);
    let a = r.audio();
    println!(
        "  audio gaps over 100 ms (start, length): {:?}",
        audio_gaps(&a, t1, end, ms(100))
    );
    let at_cliff = worst_gap(&a, t1, t1 + 5 * SEC);
    let reacted = worst_gap(&a, t1 + REACTED, t1 + 5 * SEC);
    let settled = worst_gap(&a, t1 + 5 * SEC, end);
    figure(sc, "worst_audio_gap_at_cliff_ms", at_cliff.as_millis());
    figure(sc, "worst_audio_gap_after_reaction_ms", reacted.as_millis());
    figure(sc, "worst_audio_gap_settled_ms", settled.as_millis());
    (at_cliff, reacted, settled)
}

/// When a sender can have acted on a cliff, at the earliest: str0m's first
/// estimate after it came 0.30–0.34 s after the cliff in these runs, and
/// what the bottleneck then holds (250 ms of queue) is gone 0.25 s later.
/// Before that, which voice packets find room in the overflowing queue is
/// up to the queue (see BENCHMARKS.md, "Weak links").
const REACTED: Duration = Duration::from_millis(600);

/// Item 3: audio first at a cliff. The goal is no gap over 200 ms at all;
/// what the SFU decides is the voice from [`REACTED`] on (before, the SFU
/// followed the estimate down step by step and each step's layer, and its
/// keyframes, overflowed the queue again: gaps of 218–396 ms at +0.7–1 s),
/// and on the settled 3G link. The whole first 5 s is held to twice the
/// goal; its figure is printed.
#[test]
fn audio_first_at_a_cliff() {
    let mut bad = Vec::new();
    for run in 0..RUNS {
        let (cliff, reacted, settled) = cliff("cliff_5m_300k");
        if cliff > ms(400) || reacted > ms(200) || settled > ms(200) {
            bad.push(format!(
                "run {run}: audio gap {cliff:?} in the 5 s after the cliff, {reacted:?} from \
                 {REACTED:?} after it, {settled:?} settled"
            ));
        }
    }
    assert!(bad.is_empty(), "audio gaps over the bounds: {bad:?}");
}
