//! Whether *this* CoreDNS has its DNS socket bound. With another node-cache on the node both
//! CoreDNS processes share port 53 (SO_REUSEPORT) and either may answer a probe, so an answer
//! alone does not prove that ours is up. The kernel's socket tables do: a UDP socket bound to
//! the address whose inode is one of the child's file descriptors.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::net::{IpAddr, SocketAddr};

/// Socket inodes among `pid`'s open file descriptors, with the descriptor's number, read as
/// the process's owner (see [`crate::owner_identity`]). A link we may not read is an error,
/// never an empty set: "no socket" must not be concluded from missing evidence.
pub(crate) fn socket_fds(pid: u32) -> io::Result<HashMap<u64, i32>> {
    crate::owner_identity::reading_as_owner_of(pid, || read_socket_fds(pid))
}

fn read_socket_fds(pid: u32) -> io::Result<HashMap<u64, i32>> {
    let mut inodes = HashMap::new();
    for fd in fs::read_dir(format!("/proc/{pid}/fd"))? {
        let fd = fd?;
        let Ok(number) = fd.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let target = match fs::read_link(fd.path()) {
            Ok(target) => target,
            // Closed between the listing and the read: not one of its sockets any more.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("/proc/{pid}/fd: {e}"))),
        };
        let target = target.to_string_lossy();
        if let Some(n) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
        {
            if let Ok(inode) = n.parse() {
                inodes.insert(inode, number);
            }
        }
    }
    Ok(inodes)
}

fn socket_inodes(pid: u32) -> io::Result<HashSet<u64>> {
    Ok(socket_fds(pid)?.into_keys().collect())
}

/// `/proc/net/udp{,6}` writes the local address as the in-memory bytes of the address in hex,
/// 32-bit words in host order (little-endian here), then `:PORT` in hex.
fn encode_local(addr: &SocketAddr) -> String {
    let words = |bytes: &[u8]| -> String {
        bytes
            .chunks(4)
            .map(|w| format!("{:02X}{:02X}{:02X}{:02X}", w[3], w[2], w[1], w[0]))
            .collect()
    };
    let ip = match addr.ip() {
        IpAddr::V4(v4) => words(&v4.octets()),
        IpAddr::V6(v6) => words(&v6.octets()),
    };
    format!("{ip}:{:04X}", addr.port())
}

fn udp_table(pid: u32, addr: &SocketAddr) -> io::Result<String> {
    let table = match addr {
        SocketAddr::V4(_) => "udp",
        SocketAddr::V6(_) => "udp6",
    };
    fs::read_to_string(format!("/proc/{pid}/net/{table}"))
}

/// One row of `/proc/net/udp{,6}`: the socket's inode and its receive queue in bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UdpRow {
    pub inode: u64,
    pub rx_queue: u64,
}

/// The rows of sockets bound to `local` (as [`encode_local`] writes it).
fn rows_bound_to(rows: &str, local: &str) -> Vec<UdpRow> {
    rows.lines()
        .skip(1)
        .filter_map(|row| {
            let cols: Vec<&str> = row.split_whitespace().collect();
            if cols.get(1) != Some(&local) {
                return None;
            }
            let rx_queue = cols.get(4)?.split_once(':')?.1;
            Some(UdpRow {
                inode: cols.get(9)?.parse().ok()?,
                rx_queue: u64::from_str_radix(rx_queue, 16).ok()?,
            })
        })
        .collect()
}

/// The UDP sockets bound to `addr` in `pid`'s network namespace.
pub(crate) fn udp_sockets_on(pid: u32, addr: &SocketAddr) -> io::Result<Vec<UdpRow>> {
    Ok(rows_bound_to(&udp_table(pid, addr)?, &encode_local(addr)))
}

/// Whether process `pid` holds a UDP socket bound to `addr`.
pub fn has_udp_socket_on(pid: u32, addr: SocketAddr) -> io::Result<bool> {
    let rows = udp_table(pid, &addr)?;
    Ok(bound_inode_in(
        &rows,
        &encode_local(&addr),
        &socket_inodes(pid)?,
    ))
}

fn bound_inode_in(rows: &str, local: &str, inodes: &HashSet<u64>) -> bool {
    rows_bound_to(rows, local)
        .iter()
        .any(|row| inodes.contains(&row.inode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_encoded_as_the_kernel_prints_them() {
        assert_eq!(
            encode_local(&"169.254.20.10:53".parse().unwrap()),
            "0A14FEA9:0035"
        );
        assert_eq!(
            encode_local(&"[fd00::a]:53".parse().unwrap()),
            "000000FD00000000000000000A000000:0035"
        );
    }

    #[test]
    fn our_own_bound_socket_is_found_and_a_foreign_one_is_not() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        assert!(has_udp_socket_on(std::process::id(), addr).unwrap());
        let other: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(!has_udp_socket_on(std::process::id(), other).unwrap());
        let rows = "h\n 1: 0100007F:0001 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 4242 2 0000000000000000 0\n";
        let inodes: HashSet<u64> = [4242].into();
        assert!(bound_inode_in(rows, "0100007F:0001", &inodes));
        assert!(
            !bound_inode_in(rows, "0100007F:0001", &HashSet::new()),
            "not our inode"
        );
        let queued = "h\n 1: 0A14FEA9:0035 00000000:0000 07 00000000:00000340 00:00000000 00000000 0 0 77 2 0000000000000000 0\n";
        assert_eq!(
            rows_bound_to(queued, "0A14FEA9:0035"),
            vec![UdpRow {
                inode: 77,
                rx_queue: 0x340
            }]
        );
    }
}
