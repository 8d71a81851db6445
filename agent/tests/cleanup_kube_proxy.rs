//! `switchyard --cleanup-kube-proxy` in a fresh network namespace holding what kube-proxy
//! leaves behind (iptables mode and IPVS mode chains, in iptables-nft and iptables-legacy, IPv4
//! and IPv6; its ipsets; nftables mode's tables; the kube-ipvs0 dummy) next to foreign state a
//! node also has (Docker's chains and the jumps to them, the kubelet's KUBE-KUBELET-CANARY and
//! KUBE-IPTABLES-HINT, a CNI's nftables table and ipset, another dummy interface). Proves
//! kube-proxy's state gone and every foreign line unchanged. Needs root.

use std::process::{Command, Stdio};

struct Netns(String);

impl Netns {
    fn create() -> Self {
        let name = format!("swyd-kpclean-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let status = Command::new("ip").args(["netns", "add", &name]).status();
        assert!(status.is_ok_and(|s| s.success()), "ip netns add {name}");
        let ns = Self(name);
        ns.run("ip", &["link", "set", "lo", "up"], None);
        ns
    }

    /// Runs `program` inside the namespace, with `stdin` if given; panics on failure.
    fn run(&self, program: &str, args: &[&str], stdin: Option<&str>) -> String {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0, program])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        if let Some(text) = stdin {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("write stdin");
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Netns {
    /// Runs `program` inside the namespace; whether it succeeded.
    fn try_run(&self, program: &str, args: &[&str]) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.0, program])
            .args(args)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn require_root() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(str::to_string))
        });
    assert_eq!(
        uid.as_deref(),
        Some("0"),
        "this test creates network namespaces: run it as root"
    );
}

/// Addresses of one family: (cluster IP, pod IP, any-address, set family, /32 or /128).
struct Fam {
    cluster_ip: &'static str,
    pod_ip: &'static str,
    pod_cidr: &'static str,
    set_family: &'static str,
    host: &'static str,
}

const V4: Fam = Fam {
    cluster_ip: "10.96.0.10",
    pod_ip: "10.244.1.5",
    pod_cidr: "10.244.0.0/16",
    set_family: "inet",
    host: "32",
};
const V6: Fam = Fam {
    cluster_ip: "fd00:96::a",
    pod_ip: "fd00:244::5",
    pod_cidr: "fd00:244::/56",
    set_family: "inet6",
    host: "128",
};

/// kube-proxy's ipsets (IPVS mode) for a family, and a foreign one.
fn ipsets(f: &Fam, suffix: &str) -> String {
    format!(
        "create KUBE-CLUSTER-IP{suffix} hash:ip,port family {fam}\n\
         add KUBE-CLUSTER-IP{suffix} {ip},tcp:53\n\
         create KUBE-LOOP-BACK{suffix} hash:ip,port,ip family {fam}\n\
         create cni-allowed{suffix} hash:net family {fam}\n\
         add cni-allowed{suffix} {cidr}\n",
        fam = f.set_family,
        ip = f.cluster_ip,
        cidr = f.pod_cidr,
    )
}

/// What kube-proxy (iptables mode, plus IPVS mode's set-based chain) leaves, with Docker's
/// chains and the kubelet's canary and hint around it, as `iptables-restore` input.
fn ruleset(f: &Fam, suffix: &str) -> String {
    let (ip, pod, cidr, h) = (f.cluster_ip, f.pod_ip, f.pod_cidr, f.host);
    format!(
        r#"*mangle
:KUBE-IPTABLES-HINT - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
:KUBE-PROXY-CANARY - [0:0]
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER-USER - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-PROXY-CANARY - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-SERVICES - [0:0]
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A FORWARD -j DOCKER-USER
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A DOCKER-USER -j RETURN
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
:KUBE-LOAD-BALANCER - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-PROXY-CANARY - [0:0]
:KUBE-SEP-IT2ZTR26TO4XFPTO - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-TCOU7JCQXEZGVUNU - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT ! -d ::1/{h} -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A POSTROUTING -s {cidr} ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A KUBE-LOAD-BALANCER -m set --match-set KUBE-CLUSTER-IP{suffix} dst,dst -j KUBE-MARK-MASQ
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SEP-IT2ZTR26TO4XFPTO -s {pod}/{h} -m comment --comment "kube-system/kube-dns:dns-tcp" -j KUBE-MARK-MASQ
-A KUBE-SEP-IT2ZTR26TO4XFPTO -p tcp -m comment --comment "kube-system/kube-dns:dns-tcp" -m tcp -j DNAT --to-destination {dnat}
-A KUBE-SERVICES -d {ip}/{h} -p tcp -m comment --comment "kube-system/kube-dns:dns-tcp cluster IP" -m tcp --dport 53 -j KUBE-SVC-TCOU7JCQXEZGVUNU
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-TCOU7JCQXEZGVUNU ! -s {cidr} -d {ip}/{h} -p tcp -m comment --comment "kube-system/kube-dns:dns-tcp cluster IP" -m tcp --dport 53 -j KUBE-MARK-MASQ
-A KUBE-SVC-TCOU7JCQXEZGVUNU -m comment --comment "kube-system/kube-dns:dns-tcp -> {pod}:53" -j KUBE-SEP-IT2ZTR26TO4XFPTO
COMMIT
"#,
        dnat = if f.set_family == "inet" {
            format!("{pod}:53")
        } else {
            format!("[{pod}]:53")
        },
    )
    // `! -d ::1` is Docker's IPv6 rule; IPv4's says 127.0.0.0/8.
    .replace(
        &format!("! -d ::1/{h}"),
        if f.set_family == "inet" {
            "! -d 127.0.0.0/8"
        } else {
            "! -d ::1/128"
        },
    )
}

/// The save output's rule and chain lines (counters and comments about the dump removed).
fn lines(ns: &Netns, save: &str) -> Vec<String> {
    ns.run(save, &[], None)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.strip_prefix(':') {
            // `:CHAIN POLICY [packets:bytes]`: the counters change as packets pass.
            Some(decl) => format!(":{}", decl.rsplit_once(' ').map_or(decl, |(a, _)| a)),
            None => l.to_string(),
        })
        .collect()
}

fn is_kube_proxy_line(l: &str) -> bool {
    let kubelet = ["KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT"];
    l.contains("KUBE-")
        && !kubelet
            .iter()
            .any(|k| l.contains(k) && !l.contains("KUBE-PROXY"))
}

const VARIANTS: [(&str, &str, &Fam, &str); 4] = [
    ("iptables-nft-restore", "iptables-nft-save", &V4, ""),
    ("ip6tables-nft-restore", "ip6tables-nft-save", &V6, "6"),
    ("iptables-legacy-restore", "iptables-legacy-save", &V4, ""),
    (
        "ip6tables-legacy-restore",
        "ip6tables-legacy-save",
        &V6,
        "6",
    ),
];

#[test]
fn cleanup_kube_proxy_removes_its_leftovers_and_nothing_else() {
    require_root();
    let ns = Netns::create();
    ns.run(
        "ipset",
        &["restore"],
        Some(&(ipsets(&V4, "") + &ipsets(&V6, "6"))),
    );
    for (restore, _, fam, suffix) in VARIANTS {
        ns.run(restore, &[], Some(&ruleset(fam, suffix)));
    }
    ns.run(
        "nft",
        &["-f", "-"],
        Some(
            "table ip kube-proxy {\n chain nat-prerouting { type nat hook prerouting priority -100; jump services; }\n chain services { }\n}\n\
             table ip6 kube-proxy {\n chain filter-input { type filter hook input priority -110; }\n}\n\
             table inet cni-filter {\n chain forward { type filter hook forward priority 0; ip saddr 10.244.0.0/16 accept; }\n}\n",
        ),
    );
    // kube-proxy's kube-ipvs0 is a dummy; this host's kernel has no dummy driver, so a bridge
    // stands in there (the cleanup goes by name, as kube-proxy's own does).
    let kind = if ns.try_run("ip", &["link", "add", "probe0", "type", "dummy"]) {
        ns.run("ip", &["link", "del", "probe0"], None);
        "dummy"
    } else {
        "bridge"
    };
    for (name, addr) in [
        ("kube-ipvs0", "10.96.0.10/32"),
        ("cni-dummy", "192.0.2.1/32"),
    ] {
        ns.run("ip", &["link", "add", name, "type", kind], None);
        ns.run("ip", &["addr", "add", addr, "dev", name], None);
    }

    // Foreign lines before, per variant; and the leftovers really are there.
    let before: Vec<(Vec<String>, usize)> = VARIANTS
        .iter()
        .map(|(_, save, _, _)| {
            let all = lines(&ns, save);
            let ours = all.iter().filter(|l| is_kube_proxy_line(l)).count();
            assert!(ours > 30, "{save}: the leftovers were set up: {all:#?}");
            (
                all.into_iter().filter(|l| !is_kube_proxy_line(l)).collect(),
                ours,
            )
        })
        .collect();

    let agent = env!("CARGO_BIN_EXE_switchyard");
    // Twice: the second run finds nothing and must succeed too.
    for _ in 0..2 {
        ns.run(agent, &["--cleanup-kube-proxy"], None);
    }

    for ((_, save, _, _), (foreign, _)) in VARIANTS.iter().zip(&before) {
        let after = lines(&ns, save);
        let left: Vec<&String> = after.iter().filter(|l| is_kube_proxy_line(l)).collect();
        assert!(
            left.is_empty(),
            "{save}: kube-proxy's lines left: {left:#?}"
        );
        assert_eq!(&after, foreign, "{save}: foreign lines must be unchanged");
        assert!(
            after.iter().any(|l| l == ":KUBE-KUBELET-CANARY -"),
            "{save}: the kubelet's canary stays"
        );
    }
    let sets = ns.run("ipset", &["list", "-n"], None);
    let mut sets: Vec<&str> = sets.lines().collect();
    sets.sort();
    assert_eq!(sets, ["cni-allowed", "cni-allowed6"]);
    // iptables-nft's own tables (holding Docker's rules) stay, as does the CNI's.
    let tables = ns.run("nft", &["list", "tables"], None);
    let mut tables: Vec<&str> = tables.lines().collect();
    tables.sort();
    assert_eq!(
        tables,
        [
            "table inet cni-filter",
            "table ip filter",
            "table ip mangle",
            "table ip nat",
            "table ip6 filter",
            "table ip6 mangle",
            "table ip6 nat",
        ]
    );
    let links = ns.run("ip", &["-o", "link", "show"], None);
    assert!(!links.contains("kube-ipvs0"), "{links}");
    assert!(links.contains("cni-dummy"), "{links}");
}
