//! Receiving with the kernel's arrival time (`SO_TIMESTAMPNS`).
//!
//! All clients run on one generator thread, so a datagram may wait in its socket while the
//! thread serves other clients; "frame complete at the receiver" then measures the generator as
//! much as the server. The kernel stamps each datagram when it reaches the receiving socket, so
//! send time → that stamp is the path through the server (and loopback) alone.

use std::io::{ErrorKind, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use nix::sys::time::TimeSpec;
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::media::now_ns;

/// Asks the kernel to stamp every datagram `socket` receives.
pub fn enable(socket: &UdpSocket) -> std::io::Result<()> {
    setsockopt(socket, sockopt::ReceiveTimestampns, &true).map_err(std::io::Error::from)
}

/// The wall clock minus the benchmark's monotonic epoch, in ns (measured once: the two clocks
/// do not drift apart measurably over a run).
fn offset_ns() -> i128 {
    static O: OnceLock<i128> = OnceLock::new();
    *O.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        wall - now_ns() as i128
    })
}

/// Receives one datagram: (length, source, arrival in ns since the media epoch). Without a
/// kernel stamp the arrival is now.
pub async fn recv(socket: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr, u64)> {
    loop {
        socket.readable().await?;
        let fd = socket.as_raw_fd();
        match socket.try_io(Interest::READABLE, || recv_one(fd, buf)) {
            Ok(r) => return Ok(r),
            Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

fn recv_one(fd: i32, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr, u64)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(TimeSpec);
    let msg = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT)
        .map_err(std::io::Error::from)?;
    let mut arrived = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmTimestampns(t) = c {
                let wall = t.tv_sec() as i128 * 1_000_000_000 + t.tv_nsec() as i128;
                arrived = Some((wall - offset_ns()).max(0) as u64);
            }
        }
    }
    let source = msg
        .address
        .as_ref()
        .and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| SocketAddr::V4(SocketAddrV4::from(*v4)))
                .or_else(|| {
                    a.as_sockaddr_in6()
                        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
                })
        })
        .ok_or_else(|| std::io::Error::other("datagram without a source address"))?;
    Ok((msg.bytes, source, arrived.unwrap_or_else(now_ns)))
}
