//! Link and address events from the kernel (rtnetlink multicast), so a deleted interface or a
//! removed address is noticed at once instead of at the next periodic check.

use futures::channel::mpsc::UnboundedReceiver;
use futures::StreamExt;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::MulticastGroup;

use crate::interface::InterfaceError;

type Messages = UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, netlink_sys::SocketAddr)>;

pub struct NetworkEvents {
    messages: Messages,
}

/// What the kernel told us, reduced to what matters for the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkEvent {
    /// A link was deleted or its state changed.
    Link,
    /// An address was removed.
    AddressRemoved,
}

impl NetworkEvents {
    /// Subscribes in the calling thread's network namespace; needs a tokio runtime.
    pub fn subscribe() -> Result<Self, InterfaceError> {
        let (conn, _handle, messages) = rtnetlink::new_multicast_connection(&[
            MulticastGroup::Link,
            MulticastGroup::Ipv4Ifaddr,
            MulticastGroup::Ipv6Ifaddr,
        ])
        .map_err(InterfaceError::Socket)?;
        tokio::spawn(conn);
        Ok(Self { messages })
    }

    /// The next event that may have left the interface incomplete; None if the socket closed.
    pub async fn next(&mut self) -> Option<NetworkEvent> {
        while let Some((message, _)) = self.messages.next().await {
            if let NetlinkPayload::InnerMessage(inner) = message.payload {
                match inner {
                    RouteNetlinkMessage::DelLink(_) | RouteNetlinkMessage::NewLink(_) => {
                        return Some(NetworkEvent::Link)
                    }
                    RouteNetlinkMessage::DelAddress(_) => {
                        return Some(NetworkEvent::AddressRemoved)
                    }
                    _ => {}
                }
            }
        }
        None
    }
}
