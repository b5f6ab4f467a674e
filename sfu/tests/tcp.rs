//! ICE-TCP in simulated time: a str0m client with only an active TCP candidate reaches the SFU's
//! passive TCP candidate (the framing is the owner's job, so packets pass whole here), and
//! everything the SFU sends it is marked `Protocol::Tcp` for the owner to route.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tuxa_protocol::{ParticipantId, RoomId, ServerMsg};
use tuxa_sfu::{Sfu, SfuConfig, SfuOutput};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn client_with_only_tcp_connects_over_tcp() {
    let udp = addr("10.0.0.1:5000");
    let tcp = addr("10.0.0.1:5001");
    let client_addr = addr("10.0.0.2:40000");
    let pid = ParticipantId(1);
    let mut now = Instant::now();
    let mut sfu = Sfu::new(SfuConfig {
        candidates: vec![udp],
        tcp_candidates: vec![tcp],
    });

    let mut rtc = Rtc::builder()
        .clear_codecs()
        .enable_opus(true, false)
        .build(now);
    let cand = Candidate::builder()
        .tcp()
        .host(client_addr)
        .tcptype(TcpType::Active)
        .build()
        .unwrap();
    rtc.add_local_candidate(cand).unwrap();
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = api.apply().unwrap();

    sfu.handle_offer(
        now,
        &RoomId::from_random([7; 10]),
        pid,
        &offer.to_sdp_string(),
    );
    let mut answer = None;
    while let Some(o) = sfu.poll_output() {
        if let SfuOutput::Signal(p, ServerMsg::Answer { sdp }) = o {
            assert_eq!(p, pid);
            answer = Some(sdp);
        }
    }
    let answer = answer.expect("an answer");
    assert!(
        answer.contains("10.0.0.1 5001 typ host tcptype passive"),
        "{answer}"
    );
    assert!(
        answer.contains(" udp "),
        "the UDP candidate stays: {answer}"
    );
    rtc.sdp_api()
        .accept_answer(
            pending,
            str0m::change::SdpAnswer::from_sdp_string(&answer).unwrap(),
        )
        .unwrap();

    // Garbage from a stranger is not taken.
    assert!(!sfu.handle_receive_on(now, Protocol::Tcp, addr("10.0.0.9:1"), tcp, b"hello"));

    let mut connected = false;
    let mut from_sfu = 0;
    let end = now + Duration::from_secs(10);
    while now < end && !connected {
        // Client → SFU.
        loop {
            match rtc.poll_output().unwrap() {
                Output::Transmit(t) => {
                    assert_eq!(t.proto, Protocol::Tcp, "the client has only TCP");
                    assert_eq!(t.destination, tcp);
                    sfu.handle_receive_on(now, Protocol::Tcp, client_addr, tcp, &t.contents);
                }
                Output::Event(Event::Connected) => connected = true,
                Output::Event(_) => {}
                Output::Timeout(_) => break,
            }
        }
        // SFU → client.
        sfu.handle_timeout(now);
        while let Some(o) = sfu.poll_output() {
            if let SfuOutput::Transmit(t) = o {
                assert_eq!(t.proto, Protocol::Tcp, "to a TCP client, over TCP");
                assert_eq!((t.source, t.destination), (tcp, client_addr));
                from_sfu += 1;
                let input = Input::Receive(
                    now,
                    Receive {
                        proto: Protocol::Tcp,
                        source: tcp,
                        destination: client_addr,
                        contents: (&t.contents[..]).try_into().unwrap(),
                    },
                );
                rtc.handle_input(input).unwrap();
            }
        }
        now += Duration::from_millis(5);
        rtc.handle_input(Input::Timeout(now)).unwrap();
    }
    assert!(connected, "ICE + DTLS over TCP within 10 s (simulated)");
    assert!(from_sfu > 0);
}
