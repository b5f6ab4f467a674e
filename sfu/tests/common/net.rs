//! The link model: one bottleneck per direction per client, in virtual time.
//!
//! A datagram offered to a link at `now` is, in this order: lost if the link
//! is out (outage), lost at random (seeded, deterministic), dropped at the
//! tail if the bottleneck queue is full, else serialized at the link rate
//! behind what is queued and delivered after the propagation delay. The queue
//! is not a list of packets but the time the bottleneck is busy until
//! (`busy_until`): a FIFO at a constant rate is fully described by it.
//! Datagrams already in flight when a link goes out are lost on arrival.
//!
//! The profiles model a patient's access link (the SFU's side of the network
//! is ideal): the one-way delay of each direction is half the profile's RTT.

use std::time::{Duration, Instant};

/// IPv4 + UDP header bytes added to each datagram on the wire (what a rate
/// limiter counts).
pub const UDP_IP_OVERHEAD: usize = 28;

/// Which way a datagram goes, from the client's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client → SFU.
    Up,
    /// SFU → client.
    Down,
}

/// How full the bottleneck queue may get before it drops what arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueLimit {
    Bytes(usize),
    /// The time it takes to drain the queue at the link rate.
    Delay(Duration),
}

/// One direction of a link. `rate_bps: None` is an unlimited link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    pub name: &'static str,
    pub rate_bps: Option<u64>,
    pub queue: QueueLimit,
    /// One-way propagation delay. None: the simulation's `latency` (the
    /// ideal link of the existing tests).
    pub delay: Option<Duration>,
    /// Probability of losing a datagram, 0.0..=1.0.
    pub loss: f64,
    /// Total loss, including what is in flight.
    pub outage: bool,
}

impl LinkConfig {
    /// No rate limit, no loss, the simulation's latency.
    pub fn ideal() -> LinkConfig {
        LinkConfig {
            name: "ideal",
            rate_bps: None,
            queue: QueueLimit::Delay(Duration::from_millis(250)),
            delay: None,
            loss: 0.0,
            outage: false,
        }
    }

    /// 5 Mbit/s, 20 ms RTT, no loss.
    pub fn good() -> LinkConfig {
        LinkConfig {
            name: "good",
            rate_bps: Some(5_000_000),
            queue: QueueLimit::Delay(Duration::from_millis(250)),
            delay: Some(Duration::from_millis(10)),
            loss: 0.0,
            outage: false,
        }
    }

    /// 300 kbit/s, 150 ms RTT, 5 % loss.
    pub fn rural_3g() -> LinkConfig {
        LinkConfig {
            name: "rural_3g",
            rate_bps: Some(300_000),
            queue: QueueLimit::Delay(Duration::from_millis(250)),
            delay: Some(Duration::from_millis(75)),
            loss: 0.05,
            outage: false,
        }
    }

    /// 80 kbit/s, 150 ms RTT, 2 % loss: audio fits, the lowest video layer
    /// with it does not.
    pub fn very_weak() -> LinkConfig {
        LinkConfig {
            name: "very_weak",
            rate_bps: Some(80_000),
            queue: QueueLimit::Delay(Duration::from_millis(300)),
            delay: Some(Duration::from_millis(75)),
            loss: 0.02,
            outage: false,
        }
    }

    /// Nothing gets through.
    pub fn outage() -> LinkConfig {
        LinkConfig {
            name: "outage",
            loss: 1.0,
            outage: true,
            ..LinkConfig::good()
        }
    }

    /// Back to `good` after a bad spell.
    pub fn recovery() -> LinkConfig {
        LinkConfig {
            name: "recovery",
            ..LinkConfig::good()
        }
    }

    pub fn with_rate(mut self, bps: u64) -> LinkConfig {
        self.rate_bps = Some(bps);
        self
    }

    pub fn with_loss(mut self, loss: f64) -> LinkConfig {
        self.loss = loss;
        self
    }

    pub fn with_delay(mut self, d: Duration) -> LinkConfig {
        self.delay = Some(d);
        self
    }

    pub fn with_queue(mut self, q: QueueLimit) -> LinkConfig {
        self.queue = q;
        self
    }
}

/// A small deterministic PRNG (splitmix64), seeded per link.
#[derive(Debug, Clone)]
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Prng {
        Prng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What a link did, for the self-test and for reports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LinkStats {
    pub offered: u64,
    pub offered_bytes: u64,
    pub delivered: u64,
    /// Wire bytes (with UDP/IP overhead) of what was delivered.
    pub delivered_bytes: u64,
    pub lost_random: u64,
    pub dropped_queue: u64,
    pub lost_outage: u64,
    /// Sum and maximum of (arrival − send) of what was scheduled.
    pub delay_sum: Duration,
    pub delay_max: Duration,
    pub first_delivery: Option<Instant>,
    pub last_delivery: Option<Instant>,
}

/// What became of one datagram offered to a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Delivered,
    LostRandom,
    DroppedQueue,
    LostOutage,
}

/// One direction of a client's link: configuration and bottleneck state.
#[derive(Debug, Clone)]
pub struct Link {
    pub config: LinkConfig,
    /// When the bottleneck finishes sending what is queued.
    busy_until: Option<Instant>,
    rng: Prng,
    pub stats: LinkStats,
    /// Every datagram's fate: (when it was sent or lost, wire bytes, fate);
    /// a delivered one is logged at its arrival.
    pub log: Vec<(Instant, u32, Fate)>,
}

impl Link {
    pub fn new(config: LinkConfig, seed: u64) -> Link {
        Link {
            config,
            busy_until: None,
            rng: Prng::new(seed),
            stats: LinkStats::default(),
            log: Vec::new(),
        }
    }

    /// Changes the link from now on. What is queued drains as scheduled.
    pub fn set(&mut self, config: LinkConfig) {
        self.config = config;
    }

    /// Bytes waiting in the bottleneck queue at `now`.
    pub fn backlog_bytes(&self, now: Instant) -> usize {
        match (self.busy_until, self.config.rate_bps) {
            (Some(b), Some(rate)) if b > now => {
                ((b - now).as_secs_f64() * rate as f64 / 8.0) as usize
            }
            _ => 0,
        }
    }

    /// Offers a datagram of `len` bytes (UDP payload) at `now`: its arrival
    /// time, or None when it is lost or dropped.
    pub fn send(&mut self, now: Instant, len: usize, default_delay: Duration) -> Option<Instant> {
        let c = self.config;
        self.stats.offered += 1;
        self.stats.offered_bytes += len as u64;
        let wire = len + UDP_IP_OVERHEAD;
        if c.outage {
            self.stats.lost_outage += 1;
            self.log.push((now, wire as u32, Fate::LostOutage));
            return None;
        }
        // Drawn for every datagram, so the loss pattern does not depend on
        // whether the configured loss is 0 for a while.
        let draw = self.rng.next_f64();
        if draw < c.loss {
            self.stats.lost_random += 1;
            self.log.push((now, wire as u32, Fate::LostRandom));
            return None;
        }
        let delay = c.delay.unwrap_or(default_delay);
        let at = match c.rate_bps {
            None => now + delay,
            Some(rate) => {
                let start = self.busy_until.filter(|b| *b > now).unwrap_or(now);
                let queued = start - now;
                let full = match c.queue {
                    QueueLimit::Delay(d) => queued > d,
                    QueueLimit::Bytes(b) => self.backlog_bytes(now) + wire > b,
                };
                if full {
                    self.stats.dropped_queue += 1;
                    self.log.push((now, wire as u32, Fate::DroppedQueue));
                    return None;
                }
                let tx = Duration::from_nanos((wire as u64 * 8 * 1_000_000_000) / rate.max(1));
                let done = start + tx;
                self.busy_until = Some(done);
                done + delay
            }
        };
        let d = at - now;
        self.stats.delay_sum += d;
        self.stats.delay_max = self.stats.delay_max.max(d);
        Some(at)
    }

    /// A datagram scheduled on this link arrives at `now`: whether it gets
    /// through (an outage since it was sent takes it).
    pub fn arrive(&mut self, now: Instant, len: usize) -> bool {
        let wire = len + UDP_IP_OVERHEAD;
        if self.config.outage {
            self.stats.lost_outage += 1;
            self.log.push((now, wire as u32, Fate::LostOutage));
            return false;
        }
        self.log.push((now, wire as u32, Fate::Delivered));
        self.stats.delivered += 1;
        self.stats.delivered_bytes += (len + UDP_IP_OVERHEAD) as u64;
        self.stats.first_delivery.get_or_insert(now);
        self.stats.last_delivery = Some(now);
        true
    }
}

impl Link {
    /// Delivered bits/s and datagrams dropped (queue, random, outage) in
    /// [from, to).
    pub fn window(&self, from: Instant, to: Instant) -> (u64, u64, u64, u64) {
        let (mut bytes, mut q, mut r, mut o) = (0u64, 0, 0, 0);
        for (at, len, fate) in &self.log {
            if *at < from || *at >= to {
                continue;
            }
            match fate {
                Fate::Delivered => bytes += u64::from(*len),
                Fate::DroppedQueue => q += 1,
                Fate::LostRandom => r += 1,
                Fate::LostOutage => o += 1,
            }
        }
        let secs = (to - from).as_secs_f64().max(1e-9);
        ((bytes as f64 * 8.0 / secs) as u64, q, r, o)
    }
}
