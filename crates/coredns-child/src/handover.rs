//! Handing our share of a shared DNS port to a peer without losing a query.
//!
//! Two CoreDNS processes bound to the same address (SO_REUSEPORT) split its UDP packets by a
//! hash of the sender. Stopping one loses what the kernel has queued on its socket and, until
//! that socket closes, every new packet the hash still sends it. A *connected* UDP socket only
//! matches packets from its peer, so connecting CoreDNS's socket (through a duplicate of its
//! descriptor, `pidfd_getfd`) takes it out of the group's choice at once: new queries go to the
//! peer, while CoreDNS still reads what is queued and still sends its answers (`sendmsg` with an
//! explicit destination works on a connected socket). Once the queue is empty a graceful
//! SIGTERM lets the queries in flight finish.
//!
//! Duplicating another process's descriptor needs ptrace access to it: its user's ids (taken
//! on a thread of ours with `CAP_SETUID`/`CAP_SETGID`, see [`crate::owner_identity`]) or
//! `CAP_SYS_PTRACE`; without either the caller falls back to stopping CoreDNS outright.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{connect, SockaddrStorage};

use crate::sockets::{socket_fds, udp_sockets_on};

/// CoreDNS's sockets taken out of their reuseport groups.
#[derive(Debug)]
pub struct Detached {
    pid: u32,
    sockets: Vec<(SocketAddr, u64)>,
}

impl Detached {
    pub fn count(&self) -> usize {
        self.sockets.len()
    }

    /// Bytes still queued on the detached sockets, waiting for CoreDNS to read them.
    pub fn queued_bytes(&self) -> io::Result<u64> {
        let mut queued = 0;
        for (addr, inode) in &self.sockets {
            queued += udp_sockets_on(self.pid, addr)?
                .iter()
                .filter(|row| row.inode == *inode)
                .map(|row| row.rx_queue)
                .sum::<u64>();
        }
        Ok(queued)
    }
}

/// Stops the kernel from handing process `pid` new packets on its UDP sockets bound to
/// `addrs`. Each socket is connected to its own address, a sender no query comes from.
pub fn stop_receiving(pid: u32, addrs: &[SocketAddr]) -> io::Result<Detached> {
    let fds = socket_fds(pid)?;
    let mut targets = Vec::new();
    for addr in addrs {
        for row in udp_sockets_on(pid, addr)? {
            if let Some(&target) = fds.get(&row.inode) {
                targets.push((*addr, row.inode, target));
            }
        }
    }
    let duplicates = crate::owner_identity::attaching_as_owner_of(pid, || {
        let pidfd = pidfd_open(pid)?;
        targets
            .iter()
            .map(|(_, _, target)| pidfd_getfd(&pidfd, *target))
            .collect::<io::Result<Vec<OwnedFd>>>()
    })?;
    let mut sockets = Vec::new();
    for ((addr, inode, _), socket) in targets.iter().zip(duplicates) {
        connect(socket.as_raw_fd(), &SockaddrStorage::from(*addr)).map_err(|e| {
            io::Error::new(io::Error::from(e).kind(), format!("connect {addr}: {e}"))
        })?;
        sockets.push((*addr, *inode));
    }
    Ok(Detached { pid, sockets })
}

fn check(ret: libc::c_long, what: &str) -> io::Result<RawFd> {
    if ret < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    RawFd::try_from(ret).map_err(|_| io::Error::other(format!("{what}: descriptor out of range")))
}

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    #[allow(unsafe_code)]
    // SAFETY: pidfd_open takes two integers and returns a new descriptor (or -1), which we own.
    unsafe {
        let fd = check(
            libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0),
            "pidfd_open",
        )?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

fn pidfd_getfd(pidfd: &OwnedFd, target: RawFd) -> io::Result<OwnedFd> {
    #[allow(unsafe_code)]
    // SAFETY: pidfd_getfd takes a valid pidfd and two integers and returns a new descriptor in
    // our table (or -1), which we own; the duplicate shares the socket, not our memory.
    unsafe {
        let fd = check(
            libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0),
            "pidfd_getfd",
        )?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    fn reuseport_socket(addr: SocketAddr) -> UdpSocket {
        use nix::sys::socket::{
            bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType,
        };
        let fd = socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::empty(),
            None,
        )
        .unwrap();
        setsockopt(&fd, sockopt::ReusePort, &true).unwrap();
        bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).unwrap();
        UdpSocket::from(fd)
    }

    /// Two sockets share a loopback port; once one is detached every new packet reaches the
    /// other, and the detached one can still send.
    #[test]
    fn a_detached_socket_gets_no_new_packets_and_can_still_answer() {
        let first = reuseport_socket("127.0.0.1:0".parse().unwrap());
        let addr = first.local_addr().unwrap();
        let second = reuseport_socket(addr);
        for s in [&first, &second] {
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
        }
        let detached = stop_receiving(std::process::id(), &[addr]).unwrap();
        assert_eq!(
            detached.count(),
            2,
            "both sockets of this process are found"
        );
        // Detach leaves them connected to themselves; a fresh pair shows the steering.
        drop((first, second));
        let kept = reuseport_socket("127.0.0.1:0".parse().unwrap());
        let addr = kept.local_addr().unwrap();
        let leaving = reuseport_socket(addr);
        let leaving_fd = leaving.as_raw_fd();
        // Detach only `leaving`: connect it as stop_receiving would.
        connect(leaving_fd, &SockaddrStorage::from(addr)).unwrap();
        kept.set_nonblocking(true).unwrap();
        leaving.set_nonblocking(true).unwrap();
        let senders: Vec<UdpSocket> = (0..64)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for s in &senders {
            s.send_to(b"q", addr).unwrap();
        }
        let drain = |s: &UdpSocket| {
            let mut n = 0;
            let mut buf = [0u8; 8];
            while s.recv(&mut buf).is_ok() {
                n += 1;
            }
            n
        };
        let mut got = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while got < senders.len() && std::time::Instant::now() < deadline {
            got += drain(&kept);
        }
        assert_eq!(got, senders.len(), "every query reaches the kept socket");
        assert_eq!(drain(&leaving), 0, "none reaches the detached one");
        leaving
            .send_to(b"a", senders[0].local_addr().unwrap())
            .unwrap();
        senders[0]
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(
            senders[0].recv(&mut buf).unwrap(),
            1,
            "the answer still goes out"
        );
    }
}
