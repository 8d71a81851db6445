//! The test network: a node under test, its local pods, a second node with pods, an outside
//! client. Every piece lives in a namespace created here and removed on drop; nothing is
//! connected to the host, so no packet can leave.
//!
//! ```text
//!  client (192.168.0.20) ── eth0 ═ eth-c ── NODE (192.168.0.10) ── eth-r ═ eth0 ── remote node (192.168.1.11)
//!  default via node                          │ br0 10.244.1.1/24                   │ br0 10.244.2.1/24
//!                                          pod-a1 .10  a2 .11  a3 .12            pod-b1 .10  b2 .11  b3 .12
//! ```
//! The node's default route points at the client, which does not forward but answers every new
//! TCP/UDP connection that reaches it for an address not its own, as the pod named [`SINK`]: a
//! service address the rules failed to translate is therefore *answered* by the sink, so a
//! missing reject or drop rule can never pass as "refused" or "dropped" by timing out.
//!
//! Every host has an IPv6 address too: the twin of its IPv4 one ([`v6_of`]: 192.168.0.10 is
//! also fd00:192:168:0::10, pod-a1 also fd00:10:244:1::10; /24 links are /64s), with the same
//! routes, forwarding on the nodes, and the sink answering IPv6 the same way. Duplicate address
//! detection is off (addresses are usable at once, no 1-2 s of "tentative" per interface);
//! neighbor discovery works as on any link, across the bridges too.

use crate::family::v6_of;
use crate::netns::{unique_prefix, Netns};
use crate::pods::PodServer;
use std::net::{IpAddr, Ipv4Addr};
use switchyard_core::IpFamily;

/// The node under test, as named in scenario manifests.
pub const NODE_NAME: &str = "node-a";
/// The other node.
pub const REMOTE_NODE_NAME: &str = "node-b";
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 10);
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 20);
pub const NODE_REMOTE_LINK_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
pub const REMOTE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 11);
/// `--cluster-cidr`.
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
/// The node's bridge address (what masqueraded traffic to a local pod comes from).
pub const NODE_BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
/// The name the outside client answers with when an untranslated packet reaches it.
pub const SINK: &str = "sink";
/// The port the sink serves on (every other port is redirected there).
const SINK_PORT: u16 = 9999;
/// Ports every pod serves, over TCP and UDP. Each answers `<pod> <port> <peer address>`.
pub const POD_PORTS: [u16; 3] = [8080, 8081, 9100];

/// The pods: name, address, on the node under test?
pub const PODS: [(&str, Ipv4Addr, bool); 6] = [
    ("pod-a1", Ipv4Addr::new(10, 244, 1, 10), true),
    ("pod-a2", Ipv4Addr::new(10, 244, 1, 11), true),
    ("pod-a3", Ipv4Addr::new(10, 244, 1, 12), true),
    ("pod-b1", Ipv4Addr::new(10, 244, 2, 10), false),
    ("pod-b2", Ipv4Addr::new(10, 244, 2, 11), false),
    ("pod-b3", Ipv4Addr::new(10, 244, 2, 12), false),
];

/// One pod: its namespace and the servers in it.
#[derive(Debug)]
pub struct Pod {
    pub name: &'static str,
    /// Its IPv4 address (the IPv6 one is its [`v6_of`] twin: [`Pod::address`]).
    pub ip: IpAddr,
    pub local: bool,
    // Field order matters: servers stop before the namespace goes.
    _server: PodServer,
    pub ns: Netns,
}

/// The whole network. Drop removes every namespace.
#[derive(Debug)]
pub struct Topology {
    pub pods: Vec<Pod>,
    /// Declared before `client`: the sink's server stops before its namespace goes.
    _sink: PodServer,
    pub client: Netns,
    pub remote: Netns,
    pub node: Netns,
}

/// Where a probe is sent from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// The outside client.
    Client,
    /// The node under test itself.
    Node,
    /// A pod, by name.
    Pod(&'static str),
}

impl Topology {
    /// The pod of this name (`pod-a1` ... `pod-b3`).
    pub fn pod(&self, name: &str) -> Option<&Pod> {
        self.pods.iter().find(|p| p.name == name)
    }

    pub fn build() -> anyhow::Result<Self> {
        let p = unique_prefix();
        let node = Netns::create(&format!("{p}-node"))?;
        let client = Netns::create(&format!("{p}-client"))?;
        let remote = Netns::create(&format!("{p}-remote"))?;
        for ns in [&node, &client, &remote] {
            no_dad(ns)?;
        }

        link(&node, "eth-c", &client, NODE_IP, CLIENT_IP)?;
        route_default(&client, NODE_IP)?;
        let sink = start_sink(&client)?;
        link(&node, "eth-r", &remote, NODE_REMOTE_LINK_IP, REMOTE_IP)?;
        route_default(&remote, NODE_REMOTE_LINK_IP)?;
        for (ns, gw) in [
            (&node, NODE_BRIDGE_IP),
            (&remote, Ipv4Addr::new(10, 244, 2, 1)),
        ] {
            ns.ip(&["link", "add", "br0", "type", "bridge"])?;
            add_addresses(ns, "br0", gw)?;
            ns.ip(&["link", "set", "br0", "up"])?;
            ns.sysctl("net.ipv4.ip_forward", "1")?;
            ns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        }
        let pods_b = Ipv4Addr::new(10, 244, 2, 0);
        node.ip(&[
            "route",
            "add",
            &format!("{pods_b}/24"),
            "via",
            &REMOTE_IP.to_string(),
        ])?;
        node.ip(&[
            "-6",
            "route",
            "add",
            &format!("{}/64", v6_of(pods_b)),
            "via",
            &v6_of(REMOTE_IP).to_string(),
        ])?;
        route_default(&node, CLIENT_IP)?;
        // Bridged replies from a local pod to a local pod must meet conntrack to be un-NATed.
        node.sysctl("net.bridge.bridge-nf-call-iptables", "1")?;
        node.sysctl("net.bridge.bridge-nf-call-ip6tables", "1")?;

        let mut pods = Vec::new();
        for (name, ip, local) in PODS {
            let ns = Netns::create(&format!("{p}-{name}"))?;
            no_dad(&ns)?;
            let host = if local { &node } else { &remote };
            let host_if = format!("v{name}");
            host.ip(&[
                "link",
                "add",
                &host_if,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns.name(),
            ])?;
            host.ip(&["link", "set", &host_if, "master", "br0", "up"])?;
            // Hairpin mode, as the CNI bridge plugin sets for kube-proxy: with br_netfilter, a
            // pod's packet DNATed back to itself leaves through the port it came in on.
            host.ip(&[
                "link",
                "set",
                &host_if,
                "type",
                "bridge_slave",
                "hairpin",
                "on",
            ])?;
            add_addresses(&ns, "eth0", ip)?;
            ns.ip(&["link", "set", "eth0", "up"])?;
            let [a, b, c, _] = ip.octets();
            route_default(&ns, Ipv4Addr::new(a, b, c, 1))?;
            let server = PodServer::start(&ns, name, &POD_PORTS)?;
            pods.push(Pod {
                name,
                ip: IpAddr::V4(ip),
                local,
                _server: server,
                ns,
            });
        }
        Ok(Self {
            pods,
            _sink: sink,
            client,
            remote,
            node,
        })
    }

    /// The namespace and IPv4 source address of a probe origin.
    pub fn origin(&self, from: From) -> anyhow::Result<(&Netns, IpAddr)> {
        self.origin_in(from, IpFamily::V4)
    }

    /// The namespace and source address of a probe origin in `family`.
    pub fn origin_in(&self, from: From, family: IpFamily) -> anyhow::Result<(&Netns, IpAddr)> {
        let in_family = |v4: Ipv4Addr| in_family(v4, family);
        Ok(match from {
            From::Client => (&self.client, in_family(CLIENT_IP)),
            From::Node => (&self.node, in_family(NODE_IP)),
            From::Pod(name) => {
                let pod = self
                    .pods
                    .iter()
                    .find(|p| p.name == name)
                    .ok_or_else(|| anyhow::anyhow!("no pod {name} in the topology"))?;
                (&pod.ns, pod.address(family))
            }
        })
    }

    /// The pod with this address (either family).
    pub fn pod_by_ip(&self, ip: IpAddr) -> Option<&Pod> {
        self.pods
            .iter()
            .find(|p| p.address(IpFamily::of(&ip)) == ip)
    }
}

impl Pod {
    /// The pod's address in `family`.
    pub fn address(&self, family: IpFamily) -> IpAddr {
        match self.ip {
            IpAddr::V4(v4) => in_family(v4, family),
            v6 => v6,
        }
    }
}

/// The node's own addresses in `family` (what `--nodeport-addresses` CIDRs select from).
pub fn node_addresses(family: IpFamily) -> Vec<IpAddr> {
    [NODE_IP, NODE_REMOTE_LINK_IP, NODE_BRIDGE_IP]
        .into_iter()
        .map(|ip| in_family(ip, family))
        .collect()
}

/// A host's address in `family`: the IPv4 one or its twin.
fn in_family(v4: Ipv4Addr, family: IpFamily) -> IpAddr {
    match family {
        IpFamily::V4 => IpAddr::V4(v4),
        IpFamily::V6 => IpAddr::V6(v6_of(v4)),
    }
}

/// Duplicate address detection off for every interface created in `ns` from now on.
fn no_dad(ns: &Netns) -> anyhow::Result<()> {
    for conf in ["all", "default"] {
        ns.sysctl(&format!("net.ipv6.conf.{conf}.accept_dad"), "0")?;
    }
    Ok(())
}

/// `v4`/24 and its twin /64 on `dev` (`nodad`: usable at once).
fn add_addresses(ns: &Netns, dev: &str, v4: Ipv4Addr) -> anyhow::Result<()> {
    ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", dev])?;
    ns.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{}/64", v6_of(v4)),
        "dev",
        dev,
        "nodad",
    ])?;
    Ok(())
}

/// Default routes of both families via the host `v4` (and its twin).
fn route_default(ns: &Netns, via: Ipv4Addr) -> anyhow::Result<()> {
    ns.ip(&["route", "add", "default", "via", &via.to_string()])?;
    ns.ip(&[
        "-6",
        "route",
        "add",
        "default",
        "via",
        &v6_of(via).to_string(),
    ])?;
    Ok(())
}

/// Makes the client answer, as [`SINK`], every new connection that arrives for an address not
/// its own (whatever the node routed to it untranslated), including its own probes that the
/// node sent back (`accept_local`).
fn start_sink(client: &Netns) -> anyhow::Result<PodServer> {
    let server = PodServer::start(client, SINK, &[SINK_PORT])?;
    for conf in ["all", "eth0"] {
        client.sysctl(&format!("net.ipv4.conf.{conf}.accept_local"), "1")?;
    }
    client.nft("add table inet sink")?;
    client.nft("add chain inet sink prerouting { type nat hook prerouting priority -100 ; }")?;
    client.nft(&format!(
        "add rule inet sink prerouting iifname eth0 meta l4proto {{ tcp, udp }} redirect to :{SINK_PORT}"
    ))?;
    Ok(server)
}

/// A veth pair from `a` (named `a_if`) to `b` (named `eth0`), addressed (/24 and the twin /64)
/// and up.
fn link(
    a: &Netns,
    a_if: &str,
    b: &Netns,
    a_addr: Ipv4Addr,
    b_addr: Ipv4Addr,
) -> anyhow::Result<()> {
    a.ip(&[
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        b.name(),
    ])?;
    add_addresses(a, a_if, a_addr)?;
    a.ip(&["link", "set", a_if, "up"])?;
    add_addresses(b, "eth0", b_addr)?;
    b.ip(&["link", "set", "eth0", "up"])?;
    Ok(())
}
