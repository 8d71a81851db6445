//! The dummy interface `swyd-ipvs0` that holds the virtual addresses, over rtnetlink. Only
//! that interface and only addresses on it are ever touched.

use futures_util::TryStreamExt as _;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, LinkDummy};
use std::net::IpAddr;
use switchyard_core::plan::IpFamily;
use switchyard_core::DataplaneError;

/// The interface's name (kube-proxy's is `kube-ipvs0`; a different name keeps both apart).
pub const DUMMY: &str = "swyd-ipvs0";

fn failed(step: String, e: rtnetlink::Error) -> DataplaneError {
    let errno = match &e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    };
    DataplaneError::KernelRejected {
        object: step,
        service: None,
        errno,
        message: e.to_string(),
    }
}

/// An rtnetlink connection, its task running on the current tokio runtime. The socket is
/// opened in the calling thread's network namespace.
#[derive(Debug)]
pub struct Rtnl {
    handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Rtnl {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Rtnl {
    pub fn open() -> Result<Self, DataplaneError> {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|source| DataplaneError::Io {
                step: "opening an rtnetlink socket".into(),
                source,
            })?;
        Ok(Self {
            handle,
            task: tokio::spawn(conn),
        })
    }

    /// The dummy interface's index, if it exists.
    pub async fn dummy_index(&self) -> Result<Option<u32>, DataplaneError> {
        let mut links = self.handle.link().get().match_name(DUMMY).execute();
        match links.try_next().await {
            Ok(Some(link)) => Ok(Some(link.header.index)),
            Ok(None) => Ok(None),
            // ENODEV: no such interface.
            Err(rtnetlink::Error::NetlinkError(m)) if m.code.map(|c| -c.get()) == Some(19) => {
                Ok(None)
            }
            Err(e) => Err(failed(format!("looking up interface {DUMMY}"), e)),
        }
    }

    /// Creates the dummy interface if missing; returns its index. Left down, like
    /// kube-proxy's: its addresses are local without the interface answering anything.
    pub async fn ensure_dummy(&self) -> Result<u32, DataplaneError> {
        if let Some(i) = self.dummy_index().await? {
            return Ok(i);
        }
        self.handle
            .link()
            .add(LinkDummy::new(DUMMY).build())
            .execute()
            .await
            .map_err(|e| failed(format!("creating dummy interface {DUMMY}"), e))?;
        self.dummy_index()
            .await?
            .ok_or_else(|| DataplaneError::KernelRejected {
                object: format!("interface {DUMMY}"),
                service: None,
                errno: None,
                message: "created but not found".into(),
            })
    }

    /// Removes the dummy interface (and with it its addresses), if it exists.
    pub async fn delete_dummy(&self) -> Result<(), DataplaneError> {
        if let Some(i) = self.dummy_index().await? {
            self.handle
                .link()
                .del(i)
                .execute()
                .await
                .map_err(|e| failed(format!("deleting interface {DUMMY}"), e))?;
        }
        Ok(())
    }

    /// Cleanup of one family's lane: removes that family's addresses from the dummy
    /// interface, and the interface itself once no other family's virtual address is left on
    /// it. On a dual-stack node a family lost at run time is cleaned up alone, and the other
    /// family's addresses must keep serving.
    pub async fn release_dummy(&self, family: IpFamily) -> Result<(), DataplaneError> {
        let Some(index) = self.dummy_index().await? else {
            return Ok(());
        };
        let addrs = self.addresses(index).await?;
        if !other_family_remains(&addrs, family) {
            return self.delete_dummy().await;
        }
        for ip in addrs.into_iter().filter(|ip| IpFamily::of(ip) == family) {
            self.del_address(index, ip).await?;
        }
        Ok(())
    }

    /// The addresses on the dummy interface.
    pub async fn addresses(&self, index: u32) -> Result<Vec<IpAddr>, DataplaneError> {
        let mut dump = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut out = Vec::new();
        loop {
            match dump.try_next().await {
                Ok(Some(msg)) => {
                    if msg.header.index != index {
                        continue;
                    }
                    let ip = msg.attributes.iter().find_map(|a| match a {
                        AddressAttribute::Local(ip) | AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    });
                    if let Some(ip) = ip {
                        out.push(ip);
                    }
                }
                Ok(None) => return Ok(out),
                Err(e) => return Err(failed(format!("listing the addresses of {DUMMY}"), e)),
            }
        }
    }

    /// Binds `ip` (/32 or /128). An IPv6 address is added `nodad` (`IFA_F_NODAD`, in the
    /// header and as `IFA_FLAGS`): a tentative address has no local route, so IPVS would not
    /// see its traffic until DAD ends, and on an interface that is down DAD never runs. The
    /// kernel skips DAD on a `NOARP` device like our dummy today; the flag says it instead of
    /// relying on that, or on the node's `accept_dad`.
    pub async fn add_address(&self, index: u32, ip: IpAddr) -> Result<(), DataplaneError> {
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        let mut req = self.handle.address().add(index, ip, prefix);
        if ip.is_ipv6() {
            let msg = req.message_mut();
            msg.header.flags = AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            // EEXIST: already there (adopted from an earlier run).
            Err(rtnetlink::Error::NetlinkError(m)) if m.code.map(|c| -c.get()) == Some(17) => {
                Ok(())
            }
            Err(e) => Err(failed(format!("adding {ip} to {DUMMY}"), e)),
        }
    }

    pub async fn del_address(&self, index: u32, ip: IpAddr) -> Result<(), DataplaneError> {
        let mut msg = AddressMessage::default();
        msg.header.index = index;
        msg.header.family = if ip.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        msg.header.prefix_len = if ip.is_ipv4() { 32 } else { 128 };
        msg.attributes.push(AddressAttribute::Local(ip));
        msg.attributes.push(AddressAttribute::Address(ip));
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(()),
            // EADDRNOTAVAIL: already gone.
            Err(rtnetlink::Error::NetlinkError(m)) if m.code.map(|c| -c.get()) == Some(99) => {
                Ok(())
            }
            Err(e) => Err(failed(format!("removing {ip} from {DUMMY}"), e)),
        }
    }
}

/// Whether `addrs` (the dummy's) hold a virtual address of a family other than `family`.
/// An IPv6 link-local address is the kernel's (the interface was brought up), not a VIP.
fn other_family_remains(addrs: &[IpAddr], family: IpFamily) -> bool {
    addrs.iter().any(|ip| {
        IpFamily::of(ip) != family
            && !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(s: &[&str]) -> Vec<IpAddr> {
        s.iter().map(|a| a.parse().expect("test address")).collect()
    }

    #[test]
    fn one_family_cleanup_keeps_the_interface_for_the_other() {
        let dual = ips(&["10.96.0.10", "fd00:10:96::10"]);
        assert!(other_family_remains(&dual, IpFamily::V4));
        assert!(other_family_remains(&dual, IpFamily::V6));
        let v4 = ips(&["10.96.0.10", "10.96.0.11"]);
        assert!(!other_family_remains(&v4, IpFamily::V4));
        assert!(other_family_remains(&v4, IpFamily::V6));
        // A link-local address of an interface someone brought up is no VIP.
        let v4_up = ips(&["10.96.0.10", "fe80::1"]);
        assert!(!other_family_remains(&v4_up, IpFamily::V4));
        assert!(!other_family_remains(&[], IpFamily::V6));
    }
}
