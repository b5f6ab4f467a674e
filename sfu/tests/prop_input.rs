//! Property tests of the SFU's packet input (`Sfu::handle_receive`): random
//! datagrams from random addresses — shaped like STUN (first byte 0–3, some
//! with a real peer's ICE ufrag), DTLS (20–63), RTP and RTCP (128–191), or
//! anything (RFC 7983's classes) — interleaved with time passing, never
//! panic, never create a peer or teach the SFU an address, and leave a call
//! in progress as it was.
//!
//! Bounded for the ordinary `cargo test` (the call set-up is the expensive
//! part, so the call property runs fewer cases); `fuzz/` has the same input
//! as a cargo-fuzz target. Failing seeds are kept in
//! `prop_input.proptest-regressions` (committed) and replayed first.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::{Codecs, Sim, client_addr, sfu_addr};
use proptest::prelude::*;
use str0m::media::MediaKind;
use tuxa_protocol::ServerMsg;
use tuxa_sfu::{Sfu, SfuConfig};

/// What a datagram looks like, by its first byte (RFC 7983 §7).
#[derive(Debug, Clone)]
enum Shape {
    /// STUN: a binding request (or another method or class), with a
    /// USERNAME of a real peer's ufrag (`ufrag` true) or a made-up one, a
    /// MESSAGE-INTEGRITY that cannot be right, a FINGERPRINT right or wrong,
    /// and a length field right or wrong.
    Stun {
        method_class: u16,
        ufrag: bool,
        remote: String,
        colon: bool,
        integrity: [u8; 20],
        fingerprint: bool,
        right_length: bool,
        extra: Vec<u8>,
    },
    /// DTLS: a record header (content type 20–63, DTLS 1.0/1.2 or junk
    /// version) and a body, e.g. a ClientHello-looking handshake.
    Dtls {
        first: u8,
        version: u16,
        body: Vec<u8>,
    },
    /// RTP (second byte not an RTCP type) or RTCP (200–206): version 2
    /// header, random SSRC and payload.
    Rtp {
        first: u8,
        second: u8,
        body: Vec<u8>,
    },
    /// Anything at all.
    Raw(Vec<u8>),
}

fn shape() -> impl Strategy<Value = Shape> {
    let body = prop::collection::vec(any::<u8>(), 0..300);
    prop_oneof![
        3 => (
            prop_oneof![Just(0x0001u16), Just(0x0101), Just(0x0111), Just(0x0011), any::<u16>().prop_map(|v| v & 0x3fff)],
            any::<bool>(),
            "[a-zA-Z0-9+/]{0,12}",
            prop::bool::weighted(0.9),
            any::<[u8; 20]>(),
            any::<bool>(),
            prop::bool::weighted(0.9),
            prop::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(method_class, ufrag, remote, colon, integrity, fingerprint, right_length, extra)| {
                Shape::Stun { method_class, ufrag, remote, colon, integrity, fingerprint, right_length, extra }
            }),
        2 => (
            prop_oneof![20u8..=23, 20u8..=63],
            prop_oneof![Just(0xfefdu16), Just(0xfeff), any::<u16>()],
            body.clone(),
        )
            .prop_map(|(first, version, body)| Shape::Dtls { first, version, body }),
        2 => (
            128u8..=191,
            prop_oneof![any::<u8>(), 192u8..=223, 200u8..=206],
            body.clone(),
        )
            .prop_map(|(first, second, body)| Shape::Rtp { first, second, body }),
        1 => prop::collection::vec(any::<u8>(), 0..300).prop_map(Shape::Raw),
        // The first byte alone decides the class: the others' edges.
        1 => (prop::sample::select(vec![0u8, 3, 4, 19, 20, 63, 64, 127, 128, 191, 192, 255]), body)
            .prop_map(|(b, mut body)| { body.insert(0, b); Shape::Raw(body) }),
    ]
}

/// STUN attributes (RFC 8489 §14, RFC 8445 §16.1).
const USERNAME: u16 = 0x0006;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const FINGERPRINT: u16 = 0x8028;
const PRIORITY: u16 = 0x0024;
const ICE_CONTROLLING: u16 = 0x802a;
const MAGIC_COOKIE: u32 = 0x2112_a442;

fn attr(out: &mut Vec<u8>, ty: u16, value: &[u8]) {
    out.extend_from_slice(&ty.to_be_bytes());
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
    while out.len() & 3 != 0 {
        out.push(0);
    }
}

/// CRC-32 (IEEE), for STUN's FINGERPRINT.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// The datagram's bytes; `ufrags` are the SFU's ICE ufrags of real peers.
fn bytes(shape: &Shape, ufrags: &[String], salt: u64) -> Vec<u8> {
    match shape {
        Shape::Stun {
            method_class,
            ufrag,
            remote,
            colon,
            integrity,
            fingerprint,
            right_length,
            extra,
        } => {
            let mut m = Vec::new();
            m.extend_from_slice(&method_class.to_be_bytes());
            m.extend_from_slice(&[0, 0]);
            m.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
            m.extend_from_slice(&salt.to_be_bytes());
            m.extend_from_slice(&[1, 2, 3, 4]);
            let local = match (ufrag, ufrags.is_empty()) {
                (true, false) => ufrags[salt as usize % ufrags.len()].clone(),
                _ => "zzzz".to_owned(),
            };
            let user = if *colon {
                format!("{local}:{remote}")
            } else {
                format!("{local}{remote}")
            };
            attr(&mut m, USERNAME, user.as_bytes());
            attr(&mut m, PRIORITY, &0x6e7f_00ffu32.to_be_bytes());
            attr(&mut m, ICE_CONTROLLING, &salt.to_be_bytes());
            m.extend_from_slice(extra);
            attr(&mut m, MESSAGE_INTEGRITY, integrity);
            if *fingerprint {
                // The length covers the fingerprint when it is computed.
                let len = (m.len() - 20 + 8) as u16;
                m[2..4].copy_from_slice(&len.to_be_bytes());
                let fp = crc32(&m) ^ 0x5354_554e;
                attr(&mut m, FINGERPRINT, &fp.to_be_bytes());
            }
            let len = if *right_length {
                (m.len() - 20) as u16
            } else {
                (m.len() as u16).wrapping_mul(3)
            };
            m[2..4].copy_from_slice(&len.to_be_bytes());
            m
        }
        Shape::Dtls {
            first,
            version,
            body,
        } => {
            let mut m = vec![*first];
            m.extend_from_slice(&version.to_be_bytes());
            m.extend_from_slice(&[0, 0]); // epoch
            m.extend_from_slice(&salt.to_be_bytes()[2..]); // sequence number
            m.extend_from_slice(&(body.len() as u16).to_be_bytes());
            m.extend_from_slice(body);
            m
        }
        Shape::Rtp {
            first,
            second,
            body,
        } => {
            let mut m = vec![*first, *second];
            m.extend_from_slice(&(salt as u16).to_be_bytes());
            m.extend_from_slice(&(salt as u32).to_be_bytes());
            m.extend_from_slice(&((salt >> 32) as u32).to_be_bytes());
            m.extend_from_slice(body);
            m
        }
        Shape::Raw(b) => b.clone(),
    }
}

/// A stranger's address: never one of the simulated clients (10.0.0.N).
fn stranger() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| {
            let ip = if ip[0] == 10 {
                [11, ip[1], ip[2], ip[3]]
            } else {
                ip
            };
            SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)
        }),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
        // One of a few, so that an address is seen more than once.
        (1u8..4).prop_map(|n| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, n)), 4000)),
    ]
}

#[derive(Debug, Clone)]
enum Event {
    Datagram {
        from: SocketAddr,
        shape: Shape,
        salt: u64,
    },
    /// Time passes (milliseconds).
    Wait(u64),
}

fn event(from: impl Strategy<Value = SocketAddr>) -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (from, shape(), any::<u64>())
            .prop_map(|(from, shape, salt)| Event::Datagram { from, shape, salt }),
        1 => prop_oneof![0u64..20, 20u64..2_000].prop_map(Event::Wait),
    ]
}

/// The SFU's ICE ufrag from the answer it sent a client.
fn sfu_ufrag(signals: &[(Instant, ServerMsg)]) -> Option<String> {
    signals.iter().find_map(|(_, m)| match m {
        ServerMsg::Answer { sdp } => sdp
            .lines()
            .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
            .map(|u| u.trim().to_owned()),
        _ => None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// An SFU with nobody in it: nothing is learnt, nothing is sent.
    #[test]
    fn an_empty_sfu_ignores_every_datagram(events in prop::collection::vec(event(stranger()), 1..40)) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut sfu = Sfu::new(SfuConfig {
            candidates: vec![sfu_addr()],
            tcp_candidates: Vec::new(),
        });
        let mut sent = 0;
        for e in &events {
            match e {
                Event::Datagram { from, shape, salt } => {
                    let data = bytes(shape, &[], *salt);
                    prop_assert!(!sfu.handle_receive_on(
                        now,
                        str0m::net::Protocol::Udp,
                        *from,
                        sfu_addr(),
                        &data
                    ));
                    sent += 1;
                }
                Event::Wait(ms) => {
                    now += Duration::from_millis(*ms);
                    sfu.handle_timeout(now);
                }
            }
            if let Some(o) = sfu.poll_output() {
                prop_assert!(false, "an empty SFU said {o:?}");
            }
        }
        let counts = sfu.counts();
        prop_assert_eq!(counts, tuxa_sfu::SfuCounts::default());
        prop_assert_eq!(sfu.stats().datagrams_unmatched, sent);
    }

    /// A peer that has offered but not connected yet (ICE has not started):
    /// strangers' datagrams, STUN with its ufrag among them, do not bind an
    /// address to it or create another peer.
    #[test]
    fn an_offer_waiting_for_ice_learns_no_stranger(events in prop::collection::vec(event(stranger()), 1..40)) {
        let mut sim = Sim::new();
        let a = sim.add_client("alice", 1, Codecs::Default);
        sim.publish(a);
        let ufrags: Vec<String> = sfu_ufrag(&sim.clients[a].signals).into_iter().collect();
        prop_assert_eq!(ufrags.len(), 1, "the SFU answered alice");
        // Alice is off the network: ICE never starts, the SFU's clock moves.
        sim.clients[a].unplugged = true;
        let before = sim.sfu.stats().datagrams_unmatched;
        let mut sent = 0;
        for e in &events {
            match e {
                Event::Datagram { from, shape, salt } => {
                    let data = bytes(shape, &ufrags, *salt);
                    let now = sim.now;
                    sim.sfu.handle_receive(now, *from, sfu_addr(), &data);
                    sent += 1;
                }
                Event::Wait(ms) => sim.run(Duration::from_millis((*ms).min(200))),
            }
            sim.pump();
        }
        prop_assert_eq!(sim.sfu.peer_count(), 1);
        prop_assert_eq!(sim.sfu.counts().addresses, 0);
        prop_assert_eq!(sim.sfu.stats().datagrams_unmatched - before, sent);
        prop_assert_eq!(sim.undeliverable, 0, "nothing was sent to a stranger");
    }
}

proptest! {
    // Each case sets up a real call (about 20 ms of CPU): fewer cases.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A call in progress: strangers' datagrams (STUN with either peer's
    /// ufrag among them) are all refused, teach the SFU no address, create
    /// no peer, draw no reply, and the call carries on.
    #[test]
    fn strangers_cannot_enter_or_disturb_a_call(events in prop::collection::vec(event(stranger()), 1..60)) {
        let mut sim = Sim::new();
        let a = sim.join("alice", 1, Codecs::Default);
        let b = sim.join("bob", 2, Codecs::Vp8On(120, 124));
        sim.run_until(Duration::from_secs(3), |s| s.all_connected())
            .expect("the call connects");
        let ufrags: Vec<String> = [a, b]
            .iter()
            .filter_map(|&i| sfu_ufrag(&sim.clients[i].signals))
            .collect();
        prop_assert_eq!(ufrags.len(), 2);
        sim.run(Duration::from_millis(300));
        let counts = sim.sfu.counts();
        let before = sim.sfu.stats().datagrams_unmatched;
        let mut sent = 0;
        for e in &events {
            match e {
                Event::Datagram { from, shape, salt } => {
                    let data = bytes(shape, &ufrags, *salt);
                    let now = sim.now;
                    sim.sfu.handle_receive(now, *from, sfu_addr(), &data);
                    sent += 1;
                    sim.pump();
                }
                Event::Wait(ms) => sim.run(Duration::from_millis((*ms).min(300))),
            }
        }
        prop_assert_eq!(sim.sfu.peer_count(), 2);
        prop_assert_eq!(sim.sfu.counts().addresses, counts.addresses);
        prop_assert_eq!(sim.sfu.counts().rooms, 1);
        prop_assert_eq!(sim.sfu.stats().datagrams_unmatched - before, sent);
        prop_assert_eq!(sim.undeliverable, 0, "nothing was sent to a stranger");
        prop_assert!(sim.gone.is_empty(), "{:?}", sim.gone);
        // Both still hear each other afterwards.
        let heard = |sim: &Sim| {
            [(a, b), (b, a)].iter().map(|&(rx, tx)| {
                sim.clients[rx].frames_from(sim.clients[tx].pid, MediaKind::Audio).len()
            }).collect::<Vec<_>>()
        };
        let then = heard(&sim);
        sim.run(Duration::from_millis(500));
        let later = heard(&sim);
        for (t, l) in then.iter().zip(&later) {
            prop_assert!(l >= &(t + 20), "audio stopped: {then:?} → {later:?}");
        }
    }

    /// The same datagrams as if from the participants' own addresses (a
    /// spoofer on the path): the SFU may lose that transport, but it never
    /// panics, creates no peer and learns no address.
    #[test]
    fn spoofed_datagrams_from_participants_do_not_grow_the_tables(
        events in prop::collection::vec(event(prop_oneof![Just(client_addr(2)), Just(client_addr(3))]), 1..60),
    ) {
        let mut sim = Sim::new();
        let a = sim.join("alice", 1, Codecs::Default);
        let b = sim.join("bob", 2, Codecs::Default);
        sim.run_until(Duration::from_secs(3), |s| s.all_connected())
            .expect("the call connects");
        let ufrags: Vec<String> = [a, b]
            .iter()
            .filter_map(|&i| sfu_ufrag(&sim.clients[i].signals))
            .collect();
        let counts = sim.sfu.counts();
        for e in &events {
            match e {
                Event::Datagram { from, shape, salt } => {
                    let data = bytes(shape, &ufrags, *salt);
                    let now = sim.now;
                    sim.sfu.handle_receive(now, *from, sfu_addr(), &data);
                    sim.pump();
                }
                Event::Wait(ms) => sim.run(Duration::from_millis((*ms).min(300))),
            }
        }
        prop_assert!(sim.sfu.peer_count() <= 2);
        prop_assert!(sim.sfu.counts().addresses <= counts.addresses);
        prop_assert_eq!(sim.undeliverable, 0);
    }
}
