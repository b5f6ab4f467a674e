//! The SFU's packet input from fuzzer bytes: datagrams from strangers'
//! addresses (and, now and then, time passing) against an SFU with one
//! participant that offered and has not connected yet. Never a panic, no
//! peer created, no stranger's address learnt, nothing sent to a stranger.
//! The bounded twin, with a call in progress, is `sfu/tests/prop_input.rs`.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use str0m::Rtc;
use str0m::media::{Direction, MediaKind};
use tuxa_protocol::{ParticipantId, RoomId};
use tuxa_sfu::{Sfu, SfuConfig, SfuOutput};

fn sfu_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 3478)
}

/// One participant's offer (a str0m client: audio and video to send), made
/// once: a client's DTLS certificate costs more than a run.
static OFFER: LazyLock<String> = LazyLock::new(|| {
    let mut client = Rtc::new(Instant::now());
    let mut api = client.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, _pending) = api.apply().expect("an offer with two m-lines");
    offer.to_sdp_string()
});

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut now = t0;
    let mut sfu = Sfu::new(SfuConfig {
        candidates: vec![sfu_addr()],
        tcp_candidates: Vec::new(),
    });
    let pid = ParticipantId(1);
    sfu.handle_offer(now, &RoomId::from_random([1; 10]), pid, &OFFER);
    while sfu.poll_output().is_some() {}
    assert_eq!(sfu.peer_count(), 1);

    // Records: [kind][address byte][length][bytes...]; kind 0xff is time.
    let mut rest = data;
    while let [kind, addr, len, tail @ ..] = rest {
        if *kind == 0xff {
            now += Duration::from_millis(u64::from(*addr) * 20);
            sfu.handle_timeout(now);
            rest = &tail[..];
        } else {
            let n = usize::from(*len).min(tail.len());
            let (datagram, after) = tail.split_at(n);
            let from = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, *addr)),
                4000 + u16::from(*kind),
            );
            sfu.handle_receive(now, from, sfu_addr(), datagram);
            rest = after;
        }
        while let Some(o) = sfu.poll_output() {
            if let SfuOutput::Transmit(t) = &o {
                assert!(
                    !t.destination.ip().to_string().starts_with("192.0.2."),
                    "sent to a stranger: {o:?}"
                );
            }
        }
    }
    assert!(sfu.peer_count() <= 1);
    assert_eq!(sfu.counts().addresses, 0, "a stranger's address was learnt");
});
