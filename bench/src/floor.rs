//! The forwarding floor: the least work an SFU must do per packet on this machine.
//!
//! Server: one thread, one UDP socket. A media datagram is a 12-byte RTP header followed by
//! AES-128-GCM ciphertext and tag (AAD = header, nonce from SSRC and sequence, like SRTP's GCM
//! mode). It is opened once; then for every other member of the room the header gets that
//! subscriber's SSRC and sequence number, the payload is sealed again under the subscriber's
//! key, and the datagram is sent with `sendto`. No DTLS, no ICE, no RTCP: keys are fixed.
//!
//! Control datagrams (first byte 0x01 join / 0x02 leave, then the room as u32) come from the
//! same sockets the clients use for media.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};

use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

pub const KEY_IN: [u8; 16] = [7; 16];
pub const KEY_OUT: [u8; 16] = [9; 16];
pub const TAG: usize = 16;
pub const HDR: usize = 12;

pub fn key(k: &[u8; 16]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_128_GCM, k).expect("a 16-byte key"))
}

pub fn nonce(hdr: &[u8]) -> Nonce {
    let mut n = [0u8; 12];
    n[2..6].copy_from_slice(&hdr[8..12]);
    n[10..12].copy_from_slice(&hdr[2..4]);
    n[6..10].copy_from_slice(&hdr[4..8]);
    Nonce::assume_unique_for_key(n)
}

struct Member {
    addr: SocketAddr,
    ssrc: u32,
    seq: u16,
}

/// Runs the floor forwarder on `socket` forever.
pub fn serve(socket: UdpSocket) -> std::io::Result<()> {
    let k_in = key(&KEY_IN);
    let k_out = key(&KEY_OUT);
    let mut rooms: HashMap<u32, Vec<Member>> = HashMap::new();
    let mut room_of: HashMap<SocketAddr, u32> = HashMap::new();
    let mut next_ssrc = 1u32;
    let mut buf = vec![0u8; 2048];
    let mut out = vec![0u8; 2048];
    loop {
        let (n, from) = socket.recv_from(&mut buf)?;
        match buf.first() {
            Some(0x01) if n >= 5 => {
                let room = u32::from_be_bytes(buf[1..5].try_into().unwrap_or_default());
                room_of.insert(from, room);
                let m = rooms.entry(room).or_default();
                if !m.iter().any(|x| x.addr == from) {
                    m.push(Member {
                        addr: from,
                        ssrc: next_ssrc,
                        seq: 0,
                    });
                    next_ssrc += 1;
                }
                let _ = socket.send_to(&[0x01], from);
            }
            Some(0x02) => {
                if let Some(room) = room_of.remove(&from)
                    && let Some(m) = rooms.get_mut(&room)
                {
                    m.retain(|x| x.addr != from);
                    if m.is_empty() {
                        rooms.remove(&room);
                    }
                }
            }
            Some(b) if b & 0xc0 == 0x80 && n >= HDR + TAG => {
                let Some(room) = room_of.get(&from) else {
                    continue;
                };
                let Some(members) = rooms.get_mut(room) else {
                    continue;
                };
                let (hdr, body) = buf[..n].split_at_mut(HDR);
                let Ok(plain) = k_in.open_in_place(nonce(hdr), Aad::from(&*hdr), body) else {
                    continue;
                };
                let plen = plain.len();
                for m in members.iter_mut().filter(|m| m.addr != from) {
                    m.seq = m.seq.wrapping_add(1);
                    out[..HDR].copy_from_slice(hdr);
                    out[2..4].copy_from_slice(&m.seq.to_be_bytes());
                    out[8..12].copy_from_slice(&m.ssrc.to_be_bytes());
                    out[HDR..HDR + plen].copy_from_slice(&body[..plen]);
                    let (h, rest) = out.split_at_mut(HDR);
                    let Ok(tag) = k_out.seal_in_place_separate_tag(
                        nonce(h),
                        Aad::from(&*h),
                        &mut rest[..plen],
                    ) else {
                        continue;
                    };
                    rest[plen..plen + TAG].copy_from_slice(tag.as_ref());
                    let _ = socket.send_to(&out[..HDR + plen + TAG], m.addr);
                }
            }
            _ => {}
        }
    }
}
