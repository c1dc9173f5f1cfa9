//! One A query over UDP, waiting for its reply until a deadline.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::message::{decode_reply, encode_query, Reply};

/// Sends one A query with ID `id` for `name` to `server` on `socket` and waits up to `timeout`
/// for the reply with that ID from that server (any RCODE); other datagrams are skipped. No
/// reply in time is an error naming the server and the name.
pub fn query(
    socket: &UdpSocket,
    id: u16,
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<Reply> {
    socket
        .send_to(&encode_query(id, name)?, server)
        .with_context(|| format!("sending a query for {name} to {server}"))?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no reply from {server} for {name} within {timeout:?}");
        }
        socket.set_read_timeout(Some(left))?;
        match socket.recv_from(&mut buf) {
            Ok((n, from)) if from == server => {
                if let Ok(reply) = decode_reply(&buf[..n]) {
                    if reply.id == id {
                        return Ok(reply);
                    }
                }
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => {
                return Err(e).with_context(|| format!("waiting for {server}'s reply for {name}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::encode_reply;

    #[test]
    fn the_reply_with_the_query_id_is_returned_and_others_are_skipped() -> Result<()> {
        let server = UdpSocket::bind("127.0.0.1:0")?;
        let addr = server.local_addr()?;
        let responder = std::thread::spawn(move || -> Result<()> {
            let mut buf = [0u8; 512];
            let (_, peer) = server.recv_from(&mut buf)?;
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            // A stale reply first (another ID), then the one asked for.
            server.send_to(&encode_reply(id ^ 1, "a.test", 0, &[[192, 0, 2, 9]]), peer)?;
            server.send_to(&encode_reply(id, "a.test", 0, &[[192, 0, 2, 1]]), peer)?;
            Ok(())
        });
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let reply = query(&socket, 42, addr, "a.test", Duration::from_secs(5))?;
        responder.join().expect("responder")?;
        assert_eq!(reply.id, 42);
        assert_eq!(reply.a, [Ipv4Addr::new(192, 0, 2, 1)]);
        Ok(())
    }

    #[test]
    fn no_reply_within_the_timeout_is_an_error_naming_server_and_name() -> Result<()> {
        let silent = UdpSocket::bind("127.0.0.1:0")?;
        let addr = silent.local_addr()?;
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let started = Instant::now();
        let err = query(&socket, 1, addr, "a.test", Duration::from_millis(100)).unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(100));
        let text = err.to_string();
        assert!(
            text.contains(&addr.to_string()) && text.contains("a.test"),
            "{text}"
        );
        Ok(())
    }
}
