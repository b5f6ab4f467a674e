//! Load generator clients for the floor: the same frames as the str0m peers, cut into RTP-sized
//! packets (≤ 1,150 payload bytes, marker on the last) and sealed with the floor's fixed key.

use std::net::SocketAddr;
use std::time::Duration;

use aws_lc_rs::aead::Aad;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::floor::{HDR, KEY_IN, KEY_OUT, TAG, key, nonce};
use crate::media::{self, AUDIO_INTERVAL, Kind, Shared, VIDEO_INTERVAL, now_ns};

const MTU_PAYLOAD: usize = 1150;

pub async fn run(
    server: SocketAddr,
    room: u32,
    id: u32,
    publish: bool,
    col: Shared,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let started = now_ns();
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    crate::rxts::enable(&socket)?;
    let mut join = vec![0x01];
    join.extend_from_slice(&room.to_be_bytes());
    let mut buf = vec![0u8; 2048];
    // Join, retrying until acknowledged.
    loop {
        socket.send_to(&join, server).await?;
        match tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buf)).await {
            Ok(Ok((1, _))) if buf[0] == 0x01 => break,
            _ => {}
        }
    }
    let k_in = key(&KEY_IN);
    let k_out = key(&KEY_OUT);
    let ssrc = 0x1000_0000 | id;
    let mut seq: u16 = 0;
    let (mut seq_a, mut seq_v) = (0u32, 0u32);
    let mut a_tick = tokio::time::interval(AUDIO_INTERVAL);
    let mut v_tick = tokio::time::interval(VIDEO_INTERVAL);
    a_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    v_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Video frames are reassembled per publisher: (frame seq, chunks seen).
    let mut got_video = false;
    let mut pkt = vec![0u8; 2048];
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = a_tick.tick(), if publish => {
                seq_a += 1;
                let f = media::frame(Kind::Audio, id, seq_a, false);
                send_frame(&socket, server, &k_in, ssrc, &mut seq, 111, &f, &mut pkt).await;
                col.lock().unwrap().on_sent(Kind::Audio, id, false);
            }
            _ = v_tick.tick(), if publish => {
                seq_v += 1;
                let key = seq_v == 1;
                let f = media::frame(Kind::Video, id, seq_v, key);
                send_frame(&socket, server, &k_in, ssrc, &mut seq, 96, &f, &mut pkt).await;
                col.lock().unwrap().on_sent(Kind::Video, id, key);
            }
            r = crate::rxts::recv(&socket, &mut buf) => {
                let Ok((n, _, arrived)) = r else { continue };
                if n < HDR + TAG || !media::is_rtp(&buf[..n]) {
                    continue;
                }
                let (hdr, body) = buf[..n].split_at_mut(HDR);
                let Ok(plain) = k_out.open_in_place(nonce(hdr), Aad::from(&*hdr), body) else {
                    continue;
                };
                let marker = hdr[1] & 0x80 != 0;
                let kind = if hdr[1] & 0x7f == 96 { Kind::Video } else { Kind::Audio };
                let mut c = col.lock().unwrap();
                c.on_rtp(true);
                // Each packet carries the frame's mark at its start (4-byte chunk header
                // first); the frame counts as received at its last packet.
                if marker && plain.len() >= 4 {
                    if kind == Kind::Video && !got_video {
                        got_video = true;
                        c.first_video += 1;
                        c.ttff_ms.push((now_ns() - started) as f64 / 1e6);
                    }
                    c.on_frame(kind, &plain[4..], arrived);
                }
            }
        }
    }
    let _ = socket.send_to(&[0x02], server).await;
    Ok(())
}

/// Sends a frame as packets: [chunk header: the frame's mark region copied][data].
#[allow(clippy::too_many_arguments)]
async fn send_frame(
    socket: &UdpSocket,
    server: SocketAddr,
    k: &aws_lc_rs::aead::LessSafeKey,
    ssrc: u32,
    seq: &mut u16,
    pt: u8,
    frame: &[u8],
    pkt: &mut [u8],
) {
    // Every packet starts with 4 bytes of chunk index, then the frame's first 30 bytes (VP8
    // header + mark) so the last packet alone identifies the frame, then its share of the
    // frame; total sizes match the str0m peers' packets.
    let head = frame.len().min(media::VP8_HDR + media::MARK_LEN);
    let chunks = frame.len().div_ceil(MTU_PAYLOAD);
    let per = frame.len().div_ceil(chunks);
    for i in 0..chunks {
        let part = &frame[i * per..((i + 1) * per).min(frame.len())];
        *seq = seq.wrapping_add(1);
        pkt[0] = 0x80;
        pkt[1] = pt | if i + 1 == chunks { 0x80 } else { 0 };
        pkt[2..4].copy_from_slice(&seq.to_be_bytes());
        pkt[4..8].copy_from_slice(&0u32.to_be_bytes());
        pkt[8..12].copy_from_slice(&ssrc.to_be_bytes());
        let mut len = HDR;
        pkt[len..len + 4].copy_from_slice(&(i as u32).to_be_bytes());
        len += 4;
        pkt[len..len + head].copy_from_slice(&frame[..head]);
        len += head;
        let plen = part.len().saturating_sub(head + 4).max(1);
        pkt[len..len + plen].copy_from_slice(&part[..plen.min(part.len())]);
        len += plen;
        let (h, rest) = pkt.split_at_mut(HDR);
        let body_len = len - HDR;
        let Ok(tag) = k.seal_in_place_separate_tag(nonce(h), Aad::from(&*h), &mut rest[..body_len])
        else {
            continue;
        };
        rest[body_len..body_len + TAG].copy_from_slice(tag.as_ref());
        let _ = socket.send_to(&pkt[..len + TAG], server).await;
    }
}
