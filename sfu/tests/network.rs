//! Care on bad networks (issue 5, item 7): a simulcast publisher and str0m
//! subscribers around the SFU, their links shaped in virtual time (see
//! `common/net.rs`), the SFU's adaptation measured.
//!
//! Every measured figure is printed as one line `NETSIM <scenario>
//! <name>=<value>` (run with `--nocapture`); BENCHMARKS.md takes them from
//! there. The bounds asserted are generous (about twice the goal); a test
//! measures everything before it asserts, and names every bound it missed.

mod common;

use std::time::{Duration, Instant};

use common::{
    Codecs, Dir, FRAME_INTERVAL, LAYERS, Link, LinkConfig, QueueLimit, Rx, Sim, UDP_IP_OVERHEAD,
    audio_seq,
};
use str0m::media::MediaKind;
use tuxa_protocol::{AudioOnlyReason, ParticipantId, ServerMsg};

const SEC: Duration = Duration::from_secs(1);
const Q: u8 = 0;
const F: u8 = 2;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn millis(d: Duration) -> u128 {
    d.as_millis()
}

/// Prints a figure in the form BENCHMARKS.md takes.
fn figure(scenario: &str, name: &str, value: impl std::fmt::Display) {
    println!("NETSIM {scenario} {name}={value}");
}

/// Bounds missed, all reported at the end of a test.
#[derive(Default)]
struct Misses(Vec<String>);

impl Misses {
    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            let w = what.into();
            println!("MISS {w}");
            self.0.push(w);
        }
    }

    fn done(self) {
        assert!(
            self.0.is_empty(),
            "bounds missed:\n  {}",
            self.0.join("\n  ")
        );
    }
}

// ---------------------------------------------------------------------------
// The link model on its own.

/// Offers `len`-byte datagrams every `every` for `dur`; returns the send and
/// arrival time of each that got through.
fn drive_link(
    link: &mut Link,
    t0: Instant,
    len: usize,
    every: Duration,
    dur: Duration,
) -> Vec<(Instant, Instant)> {
    let mut out = Vec::new();
    let mut t = t0;
    while t < t0 + dur {
        if let Some(at) = link.send(t, len, ms(10)) {
            assert!(link.arrive(at, len));
            out.push((t, at));
        }
        t += every;
    }
    out
}

#[test]
fn link_model_rate_loss_delay_and_queue() {
    let t0 = Instant::now();
    let mut m = Misses::default();

    // rural_3g offered 500 kbit/s of 1200-byte datagrams: a bottleneck.
    let mut l = Link::new(LinkConfig::rural_3g(), 42);
    let len = 1_200;
    let wire_bits = ((len + UDP_IP_OVERHEAD) * 8) as f64;
    let every = Duration::from_secs_f64(wire_bits / 500_000.0);
    let got = drive_link(&mut l, t0, len, every, 60 * SEC);
    let s = l.stats;
    let (first, last) = (got[0].1, got[got.len() - 1].1);
    let rate = (got.len() - 1) as f64 * wire_bits / (last - first).as_secs_f64();
    figure("selftest", "rural_3g_throughput_bps", rate as u64);
    m.check(
        (rate - 300_000.0).abs() < 0.02 * 300_000.0,
        format!("throughput {rate:.0} bit/s, configured 300000"),
    );
    let loss = s.lost_random as f64 / s.offered as f64;
    figure(
        "selftest",
        "rural_3g_random_loss_pct",
        format!("{:.2}", 100.0 * loss),
    );
    m.check(
        (loss - 0.05).abs() < 0.01,
        format!("random loss {loss:.4}, configured 0.05"),
    );
    m.check(
        s.dropped_queue > 0,
        "an overfull bottleneck drops at the tail",
    );
    // Queueing delay never above the 250 ms limit (plus one datagram).
    let tx = Duration::from_secs_f64(wire_bits / 300_000.0);
    let max_delay = got.iter().map(|(s, a)| *a - *s).max().unwrap();
    figure("selftest", "rural_3g_max_delay_ms", millis(max_delay));
    m.check(
        max_delay <= ms(75) + ms(250) + 2 * tx,
        format!("max one-way delay {max_delay:?}"),
    );
    m.check(
        max_delay >= ms(75) + ms(200),
        format!("queue never filled: {max_delay:?}"),
    );

    // Below the rate: no queue, delay = propagation + serialization.
    let mut l = Link::new(LinkConfig::rural_3g().with_loss(0.0), 7);
    let got = drive_link(&mut l, t0, 200, ms(20), 10 * SEC);
    let tx = Duration::from_nanos(((200 + UDP_IP_OVERHEAD) as u64 * 8 * 1_000_000_000) / 300_000);
    for (s, a) in &got {
        assert_eq!(
            *a - *s,
            ms(75) + tx,
            "an idle link adds only delay and serialization"
        );
    }
    assert_eq!(got.len(), 500);
    figure("selftest", "rural_3g_idle_delay_ms", millis(ms(75) + tx));

    // A byte-limited queue: never more than the limit waiting.
    let mut l = Link::new(
        LinkConfig::good()
            .with_rate(1_000_000)
            .with_queue(QueueLimit::Bytes(30_000)),
        1,
    );
    let mut t = t0;
    let mut worst = 0;
    for _ in 0..5_000 {
        l.send(t, 1_000, ms(10));
        worst = worst.max(l.backlog_bytes(t));
        t += ms(4); // 2 Mbit/s offered
    }
    m.check(
        worst <= 30_000,
        format!("backlog {worst} bytes over a 30000-byte queue"),
    );
    m.check(l.stats.dropped_queue > 2_000, format!("{:?}", l.stats));

    // very_weak's loss, and an outage loses everything, in flight too.
    let mut l = Link::new(LinkConfig::very_weak(), 3);
    drive_link(&mut l, t0, 100, ms(20), 200 * SEC);
    let loss = l.stats.lost_random as f64 / l.stats.offered as f64;
    figure(
        "selftest",
        "very_weak_random_loss_pct",
        format!("{:.2}", 100.0 * loss),
    );
    m.check(
        (loss - 0.02).abs() < 0.005,
        format!("very_weak loss {loss:.4}"),
    );
    let mut l = Link::new(LinkConfig::good(), 5);
    let at = l.send(t0, 100, ms(10)).expect("good link delivers");
    assert_eq!(
        at - t0,
        ms(10) + Duration::from_nanos(128 * 8 * 1_000_000_000 / 5_000_000)
    );
    l.set(LinkConfig::outage());
    assert!(!l.arrive(at, 100), "in flight when the link went out: lost");
    assert!(l.send(at, 100, ms(10)).is_none());
    l.set(LinkConfig::recovery());
    assert!(l.send(at, 100, ms(10)).is_some());

    // Same seed, same losses.
    let pattern = |seed| {
        let mut l = Link::new(LinkConfig::rural_3g(), seed);
        (0..1000)
            .map(|i| l.send(t0 + ms(20 * i), 100, ms(1)).is_some())
            .collect::<Vec<_>>()
    };
    assert_eq!(pattern(9), pattern(9));
    assert_ne!(pattern(9), pattern(10));
    m.done();
}

// ---------------------------------------------------------------------------
// The call: a doctor publishing simulcast, patients watching.

struct Call {
    sim: Sim,
    publisher: usize,
    subs: Vec<usize>,
}

impl Call {
    fn pub_pid(&self) -> ParticipantId {
        self.sim.clients[self.publisher].pid
    }

    fn video(&self, sub: usize) -> Vec<&Rx> {
        self.sim.clients[sub].frames_from(self.pub_pid(), MediaKind::Video)
    }

    fn audio(&self, sub: usize) -> Vec<&Rx> {
        self.sim.clients[sub].frames_from(self.pub_pid(), MediaKind::Audio)
    }

    /// When `sub` received the first frame of its final run of `layer`
    /// frames (every video frame since is of that layer), if it ends on it.
    fn final_run_of(&self, sub: usize, layer: u8, since: Instant) -> Option<Instant> {
        let v: Vec<_> = self
            .video(sub)
            .into_iter()
            .filter(|f| f.at >= since)
            .collect();
        let last_other = v.iter().rposition(|f| f.layer() != Some(layer));
        let start = last_other.map_or(0, |i| i + 1);
        // At least a second of frames, still coming: a few stale frames
        // before video stops are no run.
        let flowing = v.last().is_some_and(|f| self.sim.now - f.at <= SEC);
        (v.len() - start >= 30 && flowing).then(|| v[start].at)
    }

    fn signals_after(&self, i: usize, t: Instant) -> Vec<(Instant, ServerMsg)> {
        self.sim.clients[i]
            .signals
            .iter()
            .filter(|(at, _)| *at >= t)
            .cloned()
            .collect()
    }
}

/// Largest interval without a received frame in [from, to] (from `from` to
/// the first frame, between frames, and from the last to `to`).
fn worst_gap(frames: &[&Rx], from: Instant, to: Instant) -> Duration {
    let mut prev = from;
    let mut worst = Duration::ZERO;
    for f in frames.iter().filter(|f| f.at >= from && f.at <= to) {
        worst = worst.max(f.at - prev);
        prev = f.at;
    }
    worst.max(to - prev)
}

/// Of the audio frames sent in [from, to), the fraction that never arrived.
fn audio_loss(call: &Call, sub: usize, from: Instant, to: Instant) -> f64 {
    let sent: Vec<u32> = call.sim.clients[call.publisher]
        .sent_audio
        .iter()
        .filter(|s| s.at >= from && s.at < to)
        .filter_map(|s| audio_seq(&s.data))
        .collect();
    let got: std::collections::HashSet<u32> = call
        .audio(sub)
        .iter()
        .filter_map(|r| audio_seq(&r.data))
        .collect();
    let lost = sent.iter().filter(|s| !got.contains(s)).count();
    lost as f64 / sent.len().max(1) as f64
}

/// A doctor publishing three layers, `n` patients (str0m defaults, so TWCC
/// is negotiated; each offers a microphone but sends nothing unless a test
/// turns `media_on` back on), every link `good`.
fn call(n: usize) -> Call {
    let mut sim = Sim::new();
    sim.step = ms(1);
    let publisher = sim.add_simulcast_publisher("doctor", 1);
    sim.set_links(publisher, LinkConfig::good());
    sim.publish_simulcast(publisher);
    let names = ["patient", "nurse", "family"];
    let mut subs = Vec::new();
    for (k, name) in names.into_iter().enumerate().take(n) {
        let i = sim.add_client(name, 2 + k as u64, Codecs::Default);
        sim.set_links(i, LinkConfig::good());
        // They negotiate a microphone but stay quiet unless a test wants
        // their audio: a patient's downlink carries the doctor only.
        sim.clients[i].media_on = false;
        // A browser asks for a keyframe when it cannot decode, and keeps
        // checking connectivity while ICE is disconnected.
        sim.clients[i].auto_pli = true;
        sim.clients[i].keep_checking = true;
        sim.publish_audio_only(i);
        subs.push(i);
    }
    let mut call = Call {
        sim,
        publisher,
        subs,
    };
    let ok = {
        let c = &mut call;
        let pubp = c.pub_pid();
        let subs = c.subs.clone();
        c.sim.run_until(5 * SEC, |s| {
            s.all_connected()
                && subs.iter().all(|i| {
                    !s.clients[*i].frames_from(pubp, MediaKind::Audio).is_empty()
                        && !s.clients[*i].frames_from(pubp, MediaKind::Video).is_empty()
                })
        })
    };
    assert!(ok.is_some(), "the call did not come up within 5 s");
    call
}

/// Runs until every subscriber in `subs` has received 10 frames of the top
/// layer in a row, all from now on; returns how long that took, or None
/// after `max`.
fn reach_top(c: &mut Call, subs: &[usize], max: Duration) -> Option<Duration> {
    let pubp = c.pub_pid();
    let since = c.sim.now;
    c.sim.run_until(max, |s| {
        subs.iter().all(|i| {
            let v = s.clients[*i].frames_from(pubp, MediaKind::Video);
            v.len() >= 10
                && v[v.len() - 10..]
                    .iter()
                    .all(|f| f.layer() == Some(F) && f.at > since)
        })
    })
}

/// Prints, per second from `from` to `to`, the video frames `sub` got by
/// layer, its audio frames, the signals it got and its downlink's drops.
fn timeline(c: &Call, sub: usize, from: Instant, to: Instant) {
    let v = c.video(sub);
    let a = c.audio(sub);
    let mut t = from;
    while t < to {
        let n = t + SEC;
        let mut per = [0; 3];
        for f in v.iter().filter(|f| f.at >= t && f.at < n) {
            if let Some(l) = f.layer() {
                per[usize::from(l)] += 1;
            }
        }
        let audio = a.iter().filter(|f| f.at >= t && f.at < n).count();
        let sigs: Vec<String> = c.sim.clients[sub]
            .signals
            .iter()
            .filter(|(at, _)| *at >= t && *at < n)
            .filter(|(_, m)| !matches!(m, ServerMsg::Offer { .. } | ServerMsg::Answer { .. }))
            .map(|(_, m)| format!("{m:?}"))
            .collect();
        let (kbps, qdrop, lost, _) = c.sim.clients[sub].down.window(t, n);
        println!(
            "  {} +{:>2}s q={:>2} h={:>2} f={:>2} audio={:>2} down={:>4}kbit/s queue_drops={:>3} lost={:>2} {}",
            c.sim.clients[sub].name,
            (t - from).as_secs(),
            per[0],
            per[1],
            per[2],
            audio,
            kbps / 1000,
            qdrop,
            lost,
            sigs.join(" ")
        );
        t = n;
    }
    println!(
        "  {} downlink: {:?}",
        c.sim.clients[sub].name, c.sim.clients[sub].down.stats
    );
    if std::env::var_os("NETSIM_DETAIL").is_some() {
        for f in v.iter().filter(|f| f.at >= from && f.at < to) {
            println!(
                "    video +{} ms {} key={} contiguous={} pic={:?} frame={:?}",
                millis(f.at - from),
                layer_name(f.layer()),
                f.keyframe,
                f.contiguous,
                f.picture_id.map(|p| p & 0x7fff),
                common::frame_layer(&f.data).map(|x| x.1)
            );
        }
        for (at, m) in &c.sim.clients[sub].signals {
            if *at >= from && *at < to {
                println!("    signal +{} ms {m:?}", millis(*at - from));
            }
        }
    }
}

fn layer_name(l: Option<u8>) -> &'static str {
    l.map_or("?", |l| LAYERS[usize::from(l)].0)
}

// ---------------------------------------------------------------------------
// The harness's simulcast publisher.

/// The publisher sends three layers at their rates, the SFU receives all
/// three, a keyframe request for a layer gets a keyframe on it, and a
/// subscriber gets tagged frames, Chrome's picture ids and TWCC.
#[test]
fn simulcast_publisher_sends_three_layers_and_subscribers_negotiate_twcc() {
    let mut c = call(1);
    // Every layer all the time, whatever the SFU asks: the rates are the
    // publisher's own.
    c.sim.clients[c.publisher]
        .simulcast
        .as_mut()
        .unwrap()
        .honour_publish_layers = false;
    let s = c.subs[0];
    let t0 = c.sim.now;
    c.sim.run(5 * SEC);
    let secs = (c.sim.now - t0).as_secs_f64();
    let p = c.publisher;
    let mut m = Misses::default();
    let sp = c.sim.clients[p].simulcast.clone().unwrap();
    let _ = secs;
    let _ = &sp;
    let total = (c.sim.now - c.sim.t0).as_secs_f64();
    for (l, (rid, bytes)) in sp.layers.iter().zip(LAYERS) {
        let at_sfu = c.sim.layer_packets_at_sfu(p, rid);
        let bps = l.bytes as f64 * 8.0 / total;
        figure("publisher", &format!("layer_{rid}_bps"), bps as u64);
        figure("publisher", &format!("layer_{rid}_packets_at_sfu"), at_sfu);
        m.check(
            at_sfu > 0 && at_sfu + 50 >= l.packets,
            format!("{rid}: {at_sfu} of {} packets reached the SFU", l.packets),
        );
        let goal = bytes as f64 * 8.0 * 1_000.0 / FRAME_INTERVAL.as_millis() as f64;
        m.check(
            (bps - goal).abs() < 0.3 * goal,
            format!("{rid}: {bps:.0} bit/s, meant {goal:.0}"),
        );
    }
    let audio = &c.sim.clients[p].sent_audio;
    let pps = audio.len() as f64 / total;
    let abps = audio.iter().map(|a| a.data.len()).sum::<usize>() as f64 * 8.0 / total;
    figure("publisher", "audio_pps", format!("{pps:.1}"));
    figure("publisher", "audio_bps", abps as u64);
    m.check((pps - 50.0).abs() < 2.0, format!("audio {pps} packets/s"));
    m.check(
        (abps - 32_000.0).abs() < 8_000.0,
        format!("audio {abps} bit/s"),
    );

    // A keyframe request from the subscriber reaches the publisher by rid
    // (of the layer the subscriber gets) and is answered on that layer.
    let rx_mid = c.sim.clients[s]
        .rx_mid(c.pub_pid(), MediaKind::Video)
        .unwrap();
    let t_pli = c.sim.now;
    c.sim.clients[s].send_pli(rx_mid);
    // Within the SFU's keyframe-request window (its own request when the
    // subscriber reached f may have just gone out).
    c.sim.run(tuxa_sfu::KEYFRAME_REQUEST_INTERVAL + ms(300));
    let sp = c.sim.clients[p].simulcast.clone().unwrap();
    let layer_got = c.video(s).last().and_then(|f| f.layer());
    let asked: Vec<_> = sp
        .layers
        .iter()
        .filter(|l| l.key_requests.iter().any(|t| *t >= t_pli))
        .map(|l| l.rid.to_string())
        .collect();
    figure("publisher", "pli_reached_layers", asked.join(","));
    m.check(
        asked == [layer_name(layer_got)],
        format!(
            "a PLI for {} reached the publisher for {asked:?}",
            layer_name(layer_got)
        ),
    );
    m.check(
        c.video(s).iter().any(|f| f.at > t_pli && f.keyframe),
        "the subscriber got a keyframe after its PLI",
    );
    for l in &sp.layers {
        for r in &l.key_requests {
            m.check(
                l.keyframes
                    .iter()
                    .any(|k| *k >= *r && *k <= *r + FRAME_INTERVAL + ms(2)),
                format!(
                    "{}: no keyframe after the request at {:?}",
                    &*l.rid,
                    *r - c.sim.t0
                ),
            );
        }
    }

    // The subscriber's frames carry their layer and Chrome's 15-bit ids.
    let v = c.video(s);
    m.check(v.len() > 100, format!("{} video frames", v.len()));
    m.check(v.iter().all(|f| f.layer().is_some()), "every frame tagged");
    m.check(
        v.iter().all(|f| f.picture_id.is_some()),
        "every frame has a picture id",
    );
    figure(
        "publisher",
        "subscriber_layer",
        layer_name(v.last().and_then(|f| f.layer())),
    );
    let answers = &c.sim.clients[s].answers;
    m.check(
        answers
            .iter()
            .any(|a| a.contains("transport-cc") && a.contains("transport-wide-cc")),
        "the subscriber's answer negotiates TWCC",
    );
    // Byte for byte: each frame is what the publisher made for that layer.
    for f in &v {
        let (l, n) = common::frame_layer(&f.data).unwrap();
        let key = common::is_vp8_keyframe(&f.data);
        let bytes = LAYERS[usize::from(l)].1;
        let len = f.data.len();
        m.check(
            if key {
                len == 3 * bytes
            } else {
                len >= bytes * 70 / 100 && len <= bytes * 130 / 100 + 1
            },
            format!("frame {n} of layer {l}: {len} bytes"),
        );
    }
    for cl in &c.sim.clients {
        m.check(
            cl.errors.is_empty(),
            format!("{}: {:?}", cl.name, cl.errors),
        );
    }
    m.done();
}

/// The link model against str0m's own estimator: a publisher whose str0m
/// runs BWE on TWCC feedback from the SFU sees its uplink's bottleneck
/// (good: well above what it sends; rural_3g: near 300 kbit/s). If this
/// fails, what the SFU's estimator does on these links means nothing.
#[test]
fn str0m_estimator_sees_the_simulated_bottleneck() {
    let mut m = Misses::default();
    let mut sim = Sim::new();
    sim.step = ms(1);
    let p = sim.add_simulcast_publisher_with_bwe("doctor", 1);
    // The test alone decides what is sent.
    sim.clients[p]
        .simulcast
        .as_mut()
        .unwrap()
        .honour_publish_layers = false;
    sim.set_links(p, LinkConfig::good());
    sim.publish_simulcast(p);
    let s = sim.add_client("patient", 2, Codecs::Default);
    sim.set_links(s, LinkConfig::good());
    sim.publish_audio_only(s);
    sim.run(15 * SEC);
    let last = |sim: &Sim| sim.clients[p].bwe.last().map(|(_, b)| *b);
    let good = last(&sim);
    figure(
        "selftest",
        "str0m_estimate_good_bps",
        good.map_or("none".into(), |b| b.to_string()),
    );
    m.check(
        good.is_some_and(|b| b >= 1_000_000),
        format!("good uplink estimate {good:?}"),
    );

    sim.set_link(p, Dir::Up, LinkConfig::rural_3g());
    let t1 = sim.now;
    // Like a browser, the sender adapts: below 400 kbit/s it sends only q.
    let first_below = sim.run_until(15 * SEC, |s| {
        s.clients[p]
            .bwe
            .last()
            .is_some_and(|(t, b)| *t >= t1 && *b <= 400_000)
    });
    for l in &mut sim.clients[p].simulcast.as_mut().unwrap().layers[1..] {
        l.active = false;
    }
    sim.run(20 * SEC);
    let weak = last(&sim);
    let settled: Vec<u64> = sim.clients[p]
        .bwe
        .iter()
        .filter(|(t, _)| *t >= sim.now - 10 * SEC)
        .map(|(_, b)| *b)
        .collect();
    println!("estimates over the last 10 s: {settled:?}");
    figure(
        "selftest",
        "str0m_estimate_rural_3g_bps",
        weak.map_or("none".into(), |b| b.to_string()),
    );
    figure(
        "selftest",
        "str0m_estimate_below_400k_after_ms",
        first_below.map_or("never".into(), |d| millis(d).to_string()),
    );
    m.check(
        weak.is_some_and(|b| (100_000..=450_000).contains(&b)),
        format!("rural_3g uplink estimate {weak:?}"),
    );
    m.done();
}

// ---------------------------------------------------------------------------
// Step down.

/// A patient on good reaches `f`; their downlink turns rural_3g: only `q`
/// within 3 s (asserted 6 s), audio never silent over 200 ms (asserted 400),
/// and another patient on good keeps `f` throughout.
#[test]
fn step_down_to_the_lowest_layer_on_rural_3g() {
    let sc = "rural_3g";
    let mut c = call(2);
    let (weak, fine) = (c.subs[0], c.subs[1]);
    let mut m = Misses::default();
    let subs = c.subs.clone();
    let top = reach_top(&mut c, &subs, 20 * SEC);
    // From the start of the call (connecting included).
    let since_start = c.sim.now - c.sim.t0;
    figure(
        sc,
        "top_layer_from_start_ms",
        top.map_or("never".into(), |_| millis(since_start).to_string()),
    );
    m.check(
        top.is_some(),
        format!(
            "both subscribers on f within 20 s of connecting (weak on {}, fine on {})",
            layer_name(c.video(weak).last().and_then(|f| f.layer())),
            layer_name(c.video(fine).last().and_then(|f| f.layer()))
        ),
    );

    c.sim.set_link(weak, Dir::Down, LinkConfig::rural_3g());
    let t1 = c.sim.now;
    c.sim.run(15 * SEC);
    let end = c.sim.now;
    timeline(&c, weak, t1 - 2 * SEC, end);

    let q_since = c.final_run_of(weak, Q, t1);
    let q_after = q_since.map(|t| t - t1);
    figure(
        sc,
        "lowest_layer_after_ms",
        q_after.map_or("never".into(), |d| millis(d).to_string()),
    );
    let last = c.video(weak).last().map(|f| (f.at, f.layer()));
    m.check(
        q_after.is_some_and(|d| d <= 6 * SEC),
        format!(
            "only q within 6 s (last frame {:?} on {})",
            last.map(|l| l.0 - t1),
            layer_name(last.and_then(|l| l.1))
        ),
    );
    let q_frames = c
        .video(weak)
        .iter()
        .filter(|f| f.at > end - 5 * SEC)
        .count();
    figure(sc, "q_fps_last_5s", format!("{:.1}", q_frames as f64 / 5.0));
    m.check(
        q_frames >= 50,
        format!("q keeps flowing: {q_frames} frames in the last 5 s"),
    );

    let audio_only = c
        .signals_after(weak, t1)
        .into_iter()
        .find_map(|(at, msg)| match msg {
            ServerMsg::AudioOnly { on: true, .. } => Some(at - t1),
            _ => None,
        });
    figure(
        sc,
        "audio_only_after_ms",
        audio_only.map_or("never".into(), |d| millis(d).to_string()),
    );
    m.check(
        audio_only.is_none(),
        format!("audio_only on a link that carries q, after {audio_only:?}"),
    );
    // At the cliff (5 Mbit/s to 300 kbit/s with the top layer in flight) the
    // bottleneck's queue overflows before any sender can react: audio is
    // lost with the video until the estimate falls (goal 200 ms; the bound
    // is that it comes back). Once settled on q, the 200 ms goal holds.
    let gap = worst_gap(&c.audio(weak), t1, end);
    let settled = worst_gap(&c.audio(weak), t1 + 5 * SEC, end);
    let loss = audio_loss(&c, weak, t1, end - SEC);
    figure(sc, "worst_audio_gap_ms", millis(gap));
    figure(sc, "worst_audio_gap_settled_ms", millis(settled));
    figure(sc, "audio_loss_pct", format!("{:.1}", 100.0 * loss));
    m.check(gap <= ms(1500), format!("audio gap {gap:?}"));
    // Settled, the gaps left are audio queued behind a keyframe burst in the
    // 250 ms bottleneck queue (a keyframe of q takes ~0.3 s of this link).
    m.check(
        settled <= ms(600),
        format!("audio gap {settled:?} once settled"),
    );

    // The other patient: f throughout, no stall.
    let other: Vec<_> = c.video(fine).into_iter().filter(|f| f.at >= t1).collect();
    let off_top = other.iter().filter(|f| f.layer() != Some(F)).count();
    let vgap = worst_gap(&other, t1, end);
    figure(sc, "other_subscriber_off_top_frames", off_top);
    figure(sc, "other_subscriber_worst_video_gap_ms", millis(vgap));
    m.check(
        off_top == 0 && other.len() > 400,
        format!(
            "other subscriber: {off_top} of {} frames not f",
            other.len()
        ),
    );
    m.check(
        vgap <= ms(300),
        format!("other subscriber's video stalled {vgap:?}"),
    );

    picture_ids_continue(&c, weak, sc, &mut m);
    m.done();
}

/// A patient who joins on rural_3g (not one whose link worsens): video
/// within a few seconds, on `q`, and it stays; audio clean. The SFU's
/// starting estimate is above this link, so the first seconds overshoot.
#[test]
fn joining_on_rural_3g_gets_the_lowest_layer() {
    join_on("join_rural_3g", LinkConfig::rural_3g());
}

/// The same link without its random loss: tells a reaction to loss from a
/// reaction to the rate.
#[test]
fn joining_on_rural_3g_without_loss_gets_the_lowest_layer() {
    join_on(
        "join_rural_3g_no_loss",
        LinkConfig::rural_3g().with_loss(0.0),
    );
}

fn join_on(sc: &str, down: LinkConfig) {
    let mut sim = Sim::new();
    sim.step = ms(1);
    let publisher = sim.add_simulcast_publisher("doctor", 1);
    sim.set_links(publisher, LinkConfig::good());
    sim.publish_simulcast(publisher);
    let s = sim.add_client("patient", 2, Codecs::Default);
    sim.set_links(s, LinkConfig::good());
    sim.set_link(s, Dir::Down, down);
    sim.clients[s].media_on = false;
    sim.clients[s].auto_pli = true;
    sim.publish_audio_only(s);
    let t0 = sim.now;
    sim.run(20 * SEC);
    let c = Call {
        sim,
        publisher,
        subs: vec![s],
    };
    let mut m = Misses::default();
    timeline(&c, s, t0, c.sim.now);
    let first_video = c.video(s).first().map(|f| f.at - t0);
    figure(
        sc,
        "first_video_ms",
        first_video.map_or("never".into(), |d| millis(d).to_string()),
    );
    let q_since = c.final_run_of(s, Q, t0).map(|t| t - t0);
    figure(
        sc,
        "only_q_from_ms",
        q_since.map_or("never".into(), |d| millis(d).to_string()),
    );
    m.check(
        q_since.is_some_and(|d| d <= 10 * SEC),
        format!("on q for good within 10 s: {q_since:?}"),
    );
    let end = c.sim.now;
    let q_frames = c.video(s).iter().filter(|f| f.at > end - 5 * SEC).count();
    figure(sc, "q_fps_last_5s", format!("{:.1}", q_frames as f64 / 5.0));
    m.check(q_frames >= 50, format!("{q_frames} frames in the last 5 s"));
    let audio_only = c
        .signals_after(s, t0)
        .into_iter()
        .find_map(|(at, msg)| match msg {
            ServerMsg::AudioOnly { on: true, .. } => Some(at - t0),
            _ => None,
        });
    figure(
        sc,
        "audio_only_after_ms",
        audio_only.map_or("never".into(), |d| millis(d).to_string()),
    );
    m.check(
        audio_only.is_none(),
        format!("audio_only on a link that carries q ({audio_only:?})"),
    );
    let settle = t0 + 10 * SEC;
    let gap = worst_gap(&c.audio(s), settle, end);
    let loss = audio_loss(&c, s, settle, end - SEC);
    figure(sc, "worst_audio_gap_after_10s_ms", millis(gap));
    figure(
        sc,
        "audio_loss_pct_after_10s",
        format!("{:.1}", 100.0 * loss),
    );
    // As in the step-down test: what is left is audio behind a keyframe of q
    // in the 250 ms bottleneck queue.
    m.check(gap <= ms(600), format!("audio gap {gap:?}"));
    m.done();
}

/// Across a layer switch the subscriber's VP8 picture ids continue (the SFU
/// rewrites them): at each change of layer the id moves forward by a little.
fn picture_ids_continue(c: &Call, sub: usize, sc: &str, m: &mut Misses) {
    let v = c.video(sub);
    let mut switches = 0;
    let mut bad = Vec::new();
    for w in v.windows(2) {
        if w[0].layer() != w[1].layer() {
            switches += 1;
            let (a, b) = (w[0].picture_id.unwrap_or(0), w[1].picture_id.unwrap_or(0));
            let step = b.wrapping_sub(a) & 0x7fff;
            if step == 0 || step > 200 {
                bad.push((
                    layer_name(w[0].layer()),
                    layer_name(w[1].layer()),
                    a & 0x7fff,
                    b & 0x7fff,
                ));
            }
        }
    }
    figure(sc, "layer_switches", switches);
    figure(sc, "picture_id_jumps_at_switches", bad.len());
    m.check(
        bad.is_empty(),
        format!("picture id not continued at switches: {bad:?}"),
    );
}

// ---------------------------------------------------------------------------
// Audio only.

/// very_weak: video stops within 5 s (asserted 10) and the subscriber is told
/// why (`audio_only` on, weak_network), audio goes on; recovery: told
/// `audio_only` off and back on `f` within 15 s (asserted 30).
#[test]
fn very_weak_goes_audio_only_and_recovers() {
    let sc = "very_weak";
    let mut c = call(1);
    let s = c.subs[0];
    let mut m = Misses::default();
    let top = reach_top(&mut c, &[s], 20 * SEC);
    m.check(top.is_some(), "subscriber on f before the link weakens");

    c.sim.set_link(s, Dir::Down, LinkConfig::very_weak());
    let t1 = c.sim.now;
    c.sim.run(20 * SEC);
    let t2 = c.sim.now;
    timeline(&c, s, t1 - 2 * SEC, t2);

    let told = c
        .signals_after(s, t1)
        .into_iter()
        .find_map(|(at, msg)| match msg {
            ServerMsg::AudioOnly { on: true, reason } => Some((at, reason)),
            _ => None,
        });
    figure(
        sc,
        "audio_only_signal_after_ms",
        told.map_or("never".into(), |(at, _)| millis(at - t1).to_string()),
    );
    m.check(
        told.is_some_and(|(at, r)| r == AudioOnlyReason::WeakNetwork && at - t1 <= 10 * SEC),
        format!("audio_only on (weak_network) within 10 s: {told:?}"),
    );
    let last_video = c.video(s).iter().filter(|f| f.at >= t1).map(|f| f.at).max();
    let stopped = last_video.map_or(Duration::ZERO, |t| t - t1);
    figure(sc, "video_stopped_after_ms", millis(stopped));
    // The signal is the goal (5 s); frames already queued in str0m's pacer
    // (which drains at the collapsed estimate) still trickle in after it.
    m.check(
        stopped <= 12 * SEC,
        format!("video still arriving {stopped:?} after the drop"),
    );
    // Audio continues: after the first 10 s, few losses and no long gap.
    let settle = t1 + 10 * SEC;
    let loss = audio_loss(&c, s, settle, t2 - SEC);
    let gap = worst_gap(&c.audio(s), settle, t2);
    figure(
        sc,
        "audio_loss_pct_audio_only",
        format!("{:.1}", 100.0 * loss),
    );
    figure(sc, "worst_audio_gap_audio_only_ms", millis(gap));
    // Goal: no gap over 200 ms. The 80 kbit/s bottleneck's 300 ms queue holds
    // 3 KB, so each probe str0m sends to find a way back to video costs some
    // voice packets; runs differ (2–18 % measured). The bound is that the
    // voice carries on.
    m.check(
        loss < 0.25,
        format!("audio loss {loss:.3} while audio-only"),
    );
    // Goal 200 ms; str0m's probes for a way back (toward the lowest layer)
    // briefly overfill an 80 kbit/s link.
    m.check(
        gap <= ms(800),
        format!("audio gap {gap:?} while audio-only"),
    );
    let gap_all = worst_gap(&c.audio(s), t1, t2);
    figure(sc, "worst_audio_gap_ms", millis(gap_all));

    c.sim.set_link(s, Dir::Down, LinkConfig::recovery());
    let back = reach_top(&mut c, &[s], 40 * SEC);
    let told_off = c
        .signals_after(s, t2)
        .into_iter()
        .find_map(|(at, msg)| match msg {
            ServerMsg::AudioOnly { on: false, reason } => Some((at, reason)),
            _ => None,
        });
    figure(
        "recovery",
        "audio_only_off_after_ms",
        told_off.map_or("never".into(), |(at, _)| millis(at - t2).to_string()),
    );
    let first_video = c.video(s).iter().find(|f| f.at >= t2).map(|f| f.at - t2);
    figure(
        "recovery",
        "video_back_after_ms",
        first_video.map_or("never".into(), |d| millis(d).to_string()),
    );
    figure(
        "recovery",
        "top_layer_after_ms",
        back.map_or("never".into(), |d| millis(d).to_string()),
    );
    m.check(told_off.is_some(), "audio_only off after recovery");
    m.check(
        back.is_some_and(|d| d <= 30 * SEC),
        format!("back on f within 30 s: {back:?}"),
    );
    m.done();
}

// ---------------------------------------------------------------------------
// Outage.

/// 10 s of total loss both ways: audio and video resume within 3 s of the
/// link's return (asserted 6), both ways, without a new offer.
#[test]
fn a_ten_second_outage_resumes_without_a_new_offer() {
    outage_then_resume("outage_10s", 10 * SEC);
}

/// The same for 20 s: longer than str0m takes to call ICE disconnected on
/// the SFU's side (about 13 s here), so only the SFU's grace period
/// (`ICE_GRACE`) keeps the transport; a 10 s outage does not reach it. The
/// SFU forgets the disconnect only on an ICE state change, that is when the
/// client checks again: the harness client does (`keep_checking`, as a
/// browser), but only once its own str0m has called ICE disconnected, about
/// 2 s after the link is back; a browser checks sooner.
#[test]
fn a_twenty_second_outage_resumes_within_the_grace_period() {
    outage_then_resume("outage_20s", 20 * SEC);
}

fn outage_then_resume(sc: &str, outage: Duration) {
    let mut c = call(2);
    let (out, other) = (c.subs[0], c.subs[1]);
    let mut m = Misses::default();
    // This patient talks: their audio must reach the others again too.
    c.sim.clients[out].media_on = true;
    c.sim.run(3 * SEC);
    let offers = c.sim.clients[out].offers_made;
    let out_pid = c.sim.clients[out].pid;

    c.sim.set_links(out, LinkConfig::outage());
    let t1 = c.sim.now;
    c.sim.run(outage);
    c.sim.set_links(out, LinkConfig::recovery());
    let t2 = c.sim.now;
    c.sim.run(10 * SEC);

    let first = |v: Vec<&Rx>| v.iter().find(|f| f.at >= t2).map(|f| f.at - t2);
    let audio = first(c.audio(out));
    let video = first(c.video(out));
    let up = first(c.sim.clients[other].frames_from(out_pid, MediaKind::Audio));
    let show = |d: Option<Duration>| d.map_or("never".into(), |d| millis(d).to_string());
    figure(sc, "audio_resumed_after_ms", show(audio));
    figure(sc, "video_resumed_after_ms", show(video));
    figure(sc, "uplink_audio_resumed_after_ms", show(up));
    for (what, d) in [
        ("audio", audio),
        ("video", video),
        ("its audio to the others", up),
    ] {
        m.check(
            d.is_some_and(|d| d <= 6 * SEC),
            format!("{what} resumed: {d:?}"),
        );
    }
    let ice: Vec<String> = c.sim.clients[out]
        .ice
        .iter()
        .map(|s| format!("{s:?}"))
        .collect();
    println!("client ICE states: {ice:?}");
    let rechecks: Vec<u128> = c.sim.clients[out]
        .rechecks
        .iter()
        .map(|t| millis(*t - t1))
        .collect();
    println!("client re-added the SFU's candidate at (ms after the outage began): {rechecks:?}");
    let gone = c.sim.gone.contains(&out_pid);
    if gone {
        // The harness keeps no time for Gone: the others' TrackUnpublished
        // for this participant says when.
        let at = c.sim.clients[other]
            .signals
            .iter()
            .find(|(_, msg)| {
                matches!(msg, ServerMsg::TrackUnpublished { participant_id, .. } if *participant_id == out_pid)
            })
            .map(|(at, _)| *at);
        figure(
            sc,
            "gone_after_outage_start_ms",
            at.map_or("?".into(), |at| millis(at - t1).to_string()),
        );
    }
    m.check(
        !gone,
        format!("the SFU gave up on the participant ({outage:?} outage)"),
    );
    m.check(
        c.sim.clients[out].offers_made == offers,
        "a new offer was needed",
    );
    let answers_after = c
        .signals_after(out, t1)
        .iter()
        .filter(|(_, msg)| matches!(msg, ServerMsg::Answer { .. }))
        .count();
    m.check(answers_after == 0, "the SFU answered a new offer");
    m.check(
        c.sim.clients[out].rtc.is_alive(),
        "the client's own transport gave up",
    );
    // The other patient never noticed.
    let v: Vec<_> = c.video(other).into_iter().filter(|f| f.at >= t1).collect();
    let gap = worst_gap(&v, t1, c.sim.now);
    figure(sc, "other_subscriber_worst_video_gap_ms", millis(gap));
    m.check(
        gap <= ms(300),
        format!("other subscriber's video stalled {gap:?}"),
    );
    m.done();
}

/// A 40 s outage: the SFU gives the participant up (Gone) before it ends,
/// but not within the first 10 s; the others carry on.
#[test]
fn a_forty_second_outage_ends_the_participant() {
    let sc = "outage_40s";
    let mut c = call(2);
    let (out, other) = (c.subs[0], c.subs[1]);
    let mut m = Misses::default();
    c.sim.run(3 * SEC);
    let out_pid = c.sim.clients[out].pid;
    c.sim.set_links(out, LinkConfig::outage());
    let t1 = c.sim.now;
    let took = c.sim.run_until(40 * SEC, |s| s.gone.contains(&out_pid));
    figure(
        sc,
        "gone_after_ms",
        took.map_or("never".into(), |d| millis(d).to_string()),
    );
    m.check(took.is_some(), "no Gone within the 40 s outage");
    m.check(
        took.is_none_or(|d| d > 10 * SEC),
        format!("Gone already after {took:?}"),
    );
    m.check(
        !c.sim.sfu.has_peer(out_pid) || took.is_none(),
        "Gone but still a peer",
    );
    let end = c.sim.now;
    c.sim.run(2 * SEC);
    let v: Vec<_> = c.video(other).into_iter().filter(|f| f.at >= t1).collect();
    let gap = worst_gap(&v, t1, c.sim.now);
    figure(sc, "other_subscriber_worst_video_gap_ms", millis(gap));
    m.check(
        gap <= ms(300),
        format!("other subscriber's video stalled {gap:?}"),
    );
    let _ = end;
    m.done();
}

// ---------------------------------------------------------------------------
// Pausing layers nobody takes.

/// The only subscriber drops to rural_3g: the publisher is told to send its
/// video without `f`; after recovery, with `f` again.
#[test]
fn layers_nobody_takes_are_paused_and_resumed() {
    let sc = "publish_layers";
    let mut c = call(1);
    let s = c.subs[0];
    let p = c.publisher;
    let mut m = Misses::default();
    let top = reach_top(&mut c, &[s], 20 * SEC);
    m.check(top.is_some(), "subscriber on f first");
    let vmid = c.sim.clients[p].video.unwrap().to_string();

    c.sim.set_link(s, Dir::Down, LinkConfig::rural_3g());
    let t1 = c.sim.now;
    c.sim.run(15 * SEC);
    let layers_msgs = |c: &Call, since: Instant| -> Vec<(Instant, String, Vec<String>)> {
        c.signals_after(p, since)
            .into_iter()
            .filter_map(|(at, msg)| match msg {
                ServerMsg::PublishLayers { mid, active } => Some((at, mid, active)),
                _ => None,
            })
            .collect()
    };
    let msgs = layers_msgs(&c, t1);
    for (at, mid, active) in &msgs {
        println!(
            "publish_layers at +{} ms: {mid} {active:?}",
            millis(*at - t1)
        );
    }
    let paused = msgs
        .iter()
        .find(|(_, mid, a)| *mid == vmid && !a.iter().any(|r| r == "f"));
    figure(
        sc,
        "f_paused_after_ms",
        paused.map_or("never".into(), |(at, ..)| millis(*at - t1).to_string()),
    );
    if let Some((_, _, a)) = paused {
        figure(sc, "active_while_weak", a.join(","));
    }
    m.check(
        paused.is_some(),
        format!("no publish_layers without f for {vmid}: {msgs:?}"),
    );
    // The publisher (honouring it) stopped f.
    let f_before = c.sim.layer_packets_at_sfu(p, "f");
    c.sim.run(2 * SEC);
    let f_after = c.sim.layer_packets_at_sfu(p, "f");
    m.check(
        paused.is_none() || f_after - f_before < 20,
        format!("f still sent: {} packets in 2 s", f_after - f_before),
    );

    c.sim.set_link(s, Dir::Down, LinkConfig::recovery());
    let t2 = c.sim.now;
    let back = reach_top(&mut c, &[s], 40 * SEC);
    let msgs = layers_msgs(&c, t2);
    let resumed = msgs
        .iter()
        .find(|(_, mid, a)| *mid == vmid && a.iter().any(|r| r == "f"));
    figure(
        sc,
        "f_resumed_after_ms",
        resumed.map_or("never".into(), |(at, ..)| millis(*at - t2).to_string()),
    );
    figure(
        sc,
        "top_layer_after_recovery_ms",
        back.map_or("never".into(), |d| millis(d).to_string()),
    );
    m.check(
        resumed.is_some(),
        format!("no publish_layers with f after recovery: {msgs:?}"),
    );
    m.check(
        back.is_some_and(|d| d <= 30 * SEC),
        format!("back on f within 30 s: {back:?}"),
    );
    m.done();
}

/// A publisher's browser drops its top layer by itself (its uplink or CPU
/// cannot carry it; the SFU never asked): the subscriber on that layer is
/// moved to one that still arrives, without a long freeze, and back when
/// the layer returns.
#[test]
fn a_layer_the_publisher_stops_moves_its_subscribers() {
    let sc = "publisher_drops_f";
    let mut c = call(1);
    let s = c.subs[0];
    let p = c.publisher;
    let mut m = Misses::default();
    let top = reach_top(&mut c, &[s], 20 * SEC);
    m.check(top.is_some(), "subscriber on f first");
    let set_f = |c: &mut Call, on: bool| {
        let sp = c.sim.clients[p]
            .simulcast
            .as_mut()
            .expect("simulcast publisher");
        sp.honour_publish_layers = false;
        for l in &mut sp.layers {
            if &*l.rid == "f" {
                l.active = on;
            }
        }
    };
    set_f(&mut c, false);
    let t1 = c.sim.now;
    c.sim.run(8 * SEC);
    let after: Vec<_> = c.video(s).into_iter().filter(|f| f.at >= t1).collect();
    let moved = after
        .iter()
        .find(|f| f.layer().is_some_and(|l| l < F))
        .map(|f| f.at - t1);
    let gap = worst_gap(&after, t1, c.sim.now);
    figure(
        sc,
        "moved_down_after_ms",
        moved.map_or("never".into(), |d| millis(d).to_string()),
    );
    figure(sc, "worst_video_gap_ms", millis(gap));
    m.check(
        moved.is_some_and(|d| d <= 4 * SEC),
        format!("moved off the stopped f after {moved:?}"),
    );
    m.check(gap <= 2 * SEC, format!("video froze {gap:?}"));
    let last_5s: Vec<_> = after.iter().filter(|f| f.at >= t1 + 3 * SEC).collect();
    m.check(
        last_5s.len() > 100 && last_5s.iter().all(|f| f.layer() == Some(1)),
        format!(
            "settled on h: {:?}",
            last_5s.iter().map(|f| f.layer()).collect::<Vec<_>>()
        ),
    );

    set_f(&mut c, true);
    let t2 = c.sim.now;
    c.sim.run(20 * SEC);
    let back = c
        .video(s)
        .into_iter()
        .find(|f| f.at >= t2 && f.layer() == Some(F))
        .map(|f| f.at - t2);
    figure(
        sc,
        "back_on_f_after_ms",
        back.map_or("never".into(), |d| millis(d).to_string()),
    );
    // Goal: the top layer within 15 s of its return (as after a recovery).
    m.check(
        back.is_some_and(|d| d <= 15 * SEC),
        format!("back on f after {back:?}"),
    );
    m.done();
}

/// Keyframe requests are throttled per layer: a subscriber on q and one on
/// f asking at the same moment each get a keyframe of their own layer at
/// once. (With one throttle per track, the second request waited out the
/// first one's window, and the subscriber its half second of frozen video.)
#[test]
fn keyframe_requests_are_throttled_per_layer() {
    let mut c = call(2);
    let (weak, fine) = (c.subs[0], c.subs[1]);
    let subs = c.subs.clone();
    assert!(reach_top(&mut c, &subs, 20 * SEC).is_some(), "both on f");
    c.sim
        .set_link(weak, Dir::Down, LinkConfig::rural_3g().with_loss(0.0));
    let t1 = c.sim.now;
    let pubp = c.pub_pid();
    assert!(
        c.sim
            .run_until(15 * SEC, |s| {
                let v = s.clients[weak].frames_from(pubp, MediaKind::Video);
                v.len() >= 30
                    && v[v.len() - 30..]
                        .iter()
                        .all(|f| f.at > t1 && f.layer() == Some(Q))
            })
            .is_some(),
        "the weak subscriber settles on q"
    );
    // Past any window that the switches opened.
    c.sim.run(tuxa_sfu::KEYFRAME_REQUEST_INTERVAL + ms(100));
    let t = c.sim.now;
    for s in [weak, fine] {
        let rx_mid = c.sim.clients[s]
            .rx_mid(c.pub_pid(), MediaKind::Video)
            .unwrap();
        c.sim.clients[s].send_pli(rx_mid);
    }
    c.sim.run(ms(100));
    let sp = c.sim.clients[c.publisher].simulcast.clone().unwrap();
    let soon = |rid: &str| {
        sp.layer(rid)
            .key_requests
            .iter()
            .any(|r| *r >= t && *r <= t + 2 * c.sim.latency + ms(20))
    };
    assert!(
        soon("q"),
        "the q subscriber's request reached the publisher at once"
    );
    assert!(
        soon("f"),
        "the f subscriber's request reached the publisher at once"
    );
    assert!(
        !sp.layer("h").key_requests.iter().any(|r| *r >= t),
        "nobody asked for h"
    );
    // The weak link's delay and queue hold the keyframe a while longer.
    c.sim.run(ms(900));
    for s in [weak, fine] {
        assert!(
            c.video(s).iter().any(|f| f.at > t && f.keyframe),
            "subscriber {s} got its keyframe"
        );
    }
}
