//! The interface that holds the local IPs, over rtnetlink.
//!
//! Upstream uses a `dummy` link. Kernels built without it answer EOPNOTSUPP; there we hold the
//! addresses on an `ifb` link instead, which like dummy has no peer and drops what it is sent:
//! only the local route the address creates matters, and that is the same on either kind.

use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{LinkFlags, LinkMessage};
use nix::errno::Errno::{self, EEXIST, ENODEV, EOPNOTSUPP};
use rtnetlink::{Handle, LinkDummy, LinkIfb, LinkUnspec};
use tokio::sync::Mutex;

/// Upstream counts a failure to read the interface's state (and here, to delete it) as
/// `errortype="interface_check"`, any other as `interface_add`.
#[derive(Debug, thiserror::Error)]
pub enum InterfaceError {
    #[error("netlink: cannot open a socket: {0}")]
    Socket(std::io::Error),
    #[error("interface {name}: cannot create: {reason}")]
    Create { name: String, reason: String },
    #[error("interface {name}: cannot add address {ip}: {reason}")]
    AddAddress {
        name: String,
        ip: IpAddr,
        reason: String,
    },
    #[error("interface {name}: cannot read its state: {reason}")]
    Check { name: String, reason: String },
    #[error("interface {name}: cannot delete: {reason}")]
    Delete { name: String, reason: String },
}

/// The kind of link we create: dummy when the kernel has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    Dummy,
    Ifb,
}

/// What an `ensure` pass found and changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InterfaceReport {
    pub created: Option<LinkKind>,
    pub set_up: bool,
    pub addresses_added: Vec<IpAddr>,
}

impl InterfaceReport {
    pub fn changed(&self) -> bool {
        self.created.is_some() || self.set_up || !self.addresses_added.is_empty()
    }
}

pub struct Interface {
    name: String,
    ips: Vec<IpAddr>,
    handle: Handle,
    /// Remembered after the first EOPNOTSUPP so the fallback is chosen (and warned about) once.
    kind: Mutex<LinkKind>,
}

fn reason(e: &rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
        other => other.to_string(),
    }
}

fn errno(e: &rtnetlink::Error) -> Option<Errno> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(Errno::from_raw(-m.raw_code())),
        _ => None,
    }
}

fn prefix_len(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

impl Interface {
    /// Opens a netlink connection in the calling thread's network namespace; needs a tokio runtime.
    pub fn new(name: &str, ips: &[IpAddr]) -> Result<Self, InterfaceError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(InterfaceError::Socket)?;
        tokio::spawn(conn);
        Ok(Self {
            name: name.to_string(),
            ips: ips.to_vec(),
            handle,
            kind: Mutex::new(LinkKind::Dummy),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    async fn find(&self) -> Result<Option<LinkMessage>, InterfaceError> {
        let found = self
            .handle
            .link()
            .get()
            .match_name(self.name.clone())
            .execute()
            .try_next()
            .await;
        match found {
            Ok(link) => Ok(link),
            Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
            Err(e) => Err(InterfaceError::Check {
                name: self.name.clone(),
                reason: reason(&e),
            }),
        }
    }

    async fn create(&self) -> Result<LinkKind, InterfaceError> {
        let mut kind = self.kind.lock().await;
        loop {
            let message = match *kind {
                LinkKind::Dummy => LinkDummy::new(&self.name).up().build(),
                LinkKind::Ifb => LinkIfb::new(&self.name).up().build(),
            };
            match self.handle.link().add(message).execute().await {
                Ok(()) => return Ok(*kind),
                // Someone (a peer agent) created it between our look and our add.
                Err(e) if errno(&e) == Some(EEXIST) => return Ok(*kind),
                Err(e) if errno(&e) == Some(EOPNOTSUPP) && *kind == LinkKind::Dummy => {
                    tracing::warn!(
                        interface = %self.name,
                        "kernel has no dummy link type; holding the local IPs on an ifb link instead"
                    );
                    *kind = LinkKind::Ifb;
                }
                Err(e) => {
                    return Err(InterfaceError::Create {
                        name: self.name.clone(),
                        reason: reason(&e),
                    })
                }
            }
        }
    }

    async fn addresses(&self, index: u32) -> Result<Vec<IpAddr>, InterfaceError> {
        let messages: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|e| InterfaceError::Check {
                name: self.name.clone(),
                reason: reason(&e),
            })?;
        Ok(messages
            .iter()
            .flat_map(|m| m.attributes.iter())
            .filter_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
            .collect())
    }

    async fn add_address(&self, index: u32, ip: IpAddr) -> Result<(), InterfaceError> {
        let mut request = self.handle.address().add(index, ip, prefix_len(&ip));
        // Without NODAD an IPv6 address stays tentative (unbindable) for the DAD period.
        if ip.is_ipv6() {
            request
                .message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match request.execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
            Err(e) => Err(InterfaceError::AddAddress {
                name: self.name.clone(),
                ip,
                reason: reason(&e),
            }),
        }
    }

    /// Creates the link if missing, brings it up, adds the local IPs it lacks. Leaves any other
    /// address on it alone.
    pub async fn ensure(&self) -> Result<InterfaceReport, InterfaceError> {
        let mut report = InterfaceReport::default();
        let link = match self.find().await? {
            Some(link) => link,
            None => {
                report.created = Some(self.create().await?);
                self.find().await?.ok_or_else(|| InterfaceError::Create {
                    name: self.name.clone(),
                    reason: "created, but not found afterwards".into(),
                })?
            }
        };
        let index = link.header.index;
        if !link.header.flags.contains(LinkFlags::Up) {
            self.handle
                .link()
                .change(LinkUnspec::new_with_index(index).up().build())
                .execute()
                .await
                .map_err(|e| InterfaceError::Create {
                    name: self.name.clone(),
                    reason: format!("cannot bring it up: {}", reason(&e)),
                })?;
            report.set_up = report.created.is_none();
        }
        let present = self.addresses(index).await?;
        for ip in &self.ips {
            if !present.contains(ip) {
                self.add_address(index, *ip).await?;
                report.addresses_added.push(*ip);
            }
        }
        Ok(report)
    }

    /// True when the link exists, is up and holds every local IP.
    pub async fn is_complete(&self) -> Result<bool, InterfaceError> {
        let Some(link) = self.find().await? else {
            return Ok(false);
        };
        if !link.header.flags.contains(LinkFlags::Up) {
            return Ok(false);
        }
        let present = self.addresses(link.header.index).await?;
        Ok(self.ips.iter().all(|ip| present.contains(ip)))
    }

    /// Deletes the link (and with it its addresses). Absent already is success.
    pub async fn remove(&self) -> Result<bool, InterfaceError> {
        let Some(link) = self.find().await? else {
            return Ok(false);
        };
        match self.handle.link().del(link.header.index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(ENODEV) => Ok(false),
            Err(e) => Err(InterfaceError::Delete {
                name: self.name.clone(),
                reason: reason(&e),
            }),
        }
    }
}
