//! Value syntaxes of a KubeProxyConfiguration: Go durations (`metav1.Duration`), `host:port`
//! bind addresses, comma-separated CIDR lists.

use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A Go `time.ParseDuration` string, as `metav1.Duration` serialises: `30s`, `1m0s`, `1h30m`,
/// `1.5s`, `250ms`, `0s` or `0`. Negative durations are refused (no KubeProxyConfiguration
/// field means anything by one).
pub fn go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (Go syntax: 30s, 1m0s, 1h30m, 250ms)");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.starts_with('-') {
        return Err(format!("{s:?}: a negative duration"));
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_len);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * seconds;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).map_err(|e| format!("{s:?}: {e}"))
}

/// `ip:port`, `[ip6]:port`, or a bare IP that gets `default_port` (kube-proxy's
/// `AppendPortIfNeeded`). Empty: `None` (the default address).
pub fn bind_address(s: &str, default_port: u16) -> Result<Option<SocketAddr>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(Some(addr));
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map(|ip| Some(SocketAddr::new(ip, default_port)))
        .map_err(|_| format!("{s:?} is not IP:PORT or an IP address"))
}

/// `10.244.0.0/16` or a dual-stack pair `10.244.0.0/16,fd00:244::/56`.
pub fn cidr_list(s: &str) -> Result<Vec<IpNet>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| c.parse::<IpNet>().map_err(|e| format!("{c:?}: {e}")))
        .collect()
}

/// A Linux interface name (`bridgeInterface`) or prefix (`interfaceNamePrefix`): 1 to 15
/// bytes, no `/`, no whitespace, no `+` (iptables' wildcard, which would change its meaning).
pub fn interface_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 15 {
        return Err(format!("{s:?}: an interface name has 1 to 15 characters"));
    }
    if s.chars()
        .any(|c| c == '/' || c == '+' || c == '*' || c.is_whitespace())
    {
        return Err(format!(
            "{s:?}: '/', '+', '*' or whitespace in an interface name"
        ));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        for (s, ms) in [
            ("0s", 0),
            ("0", 0),
            ("30s", 30_000),
            ("1m0s", 60_000),
            ("1h30m", 5_400_000),
            ("1.5s", 1_500),
            ("250ms", 250),
            ("15m0s", 900_000),
        ] {
            assert_eq!(go_duration(s), Ok(Duration::from_millis(ms)), "{s}");
        }
        for bad in ["", "30", "1d", "-1s", "s", "1m0", "abc"] {
            assert!(go_duration(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn bind_addresses() {
        let a = |s: &str| bind_address(s, 10256).map(|a| a.map(|a| a.to_string()));
        assert_eq!(a("0.0.0.0:10256"), Ok(Some("0.0.0.0:10256".into())));
        assert_eq!(a("127.0.0.1"), Ok(Some("127.0.0.1:10256".into())));
        assert_eq!(a("[::1]:9"), Ok(Some("[::1]:9".into())));
        assert_eq!(a("::"), Ok(Some("[::]:10256".into())));
        assert_eq!(a(""), Ok(None));
        assert!(a("localhost:10256").is_err());
    }

    #[test]
    fn interface_names() {
        assert!(interface_name("cni0").is_ok());
        for bad in ["", "a-very-long-interface", "veth+", "a b", "x/y"] {
            assert!(interface_name(bad).is_err(), "{bad:?}");
        }
    }
}
