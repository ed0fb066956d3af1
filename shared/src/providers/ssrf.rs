//! Where a callback may connect: callback URLs come from configuration an app controls, so the
//! sender resolves each host itself, refuses every address that is not public unicast —
//! loopback, private, link-local (the cloud metadata address included), CGNAT, multicast,
//! documentation, benchmarking, reserved, and the IPv6 forms that embed such an IPv4 address
//! (mapped, compatible, 6to4, NAT64) — and connects only to the addresses it checked, so a DNS
//! answer cannot change between the check and the connection (rebinding).
//!
//! The one exception is the development allowlist: the local runtime may call loopback
//! addresses (its own tests and a developer's receiver); Lambda never does.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, LazyLock};

/// IPv4 ranges that are not public unicast (IANA special-purpose registry).
const BLOCKED_V4: &[&str] = &[
    "0.0.0.0/8",       // "this network"
    "10.0.0.0/8",      // private
    "100.64.0.0/10",   // CGNAT shared space
    "127.0.0.0/8",     // loopback
    "169.254.0.0/16",  // link-local, 169.254.169.254 metadata
    "172.16.0.0/12",   // private
    "192.0.0.0/24",    // IETF protocol assignments
    "192.0.2.0/24",    // TEST-NET-1
    "192.88.99.0/24",  // 6to4 relay anycast
    "192.168.0.0/16",  // private
    "198.18.0.0/15",   // benchmarking
    "198.51.100.0/24", // TEST-NET-2
    "203.0.113.0/24",  // TEST-NET-3
    "224.0.0.0/4",     // multicast
    "240.0.0.0/4",     // reserved, broadcast
];

/// IPv6 ranges that are not public unicast. `::ffff:0:0/96` (mapped) is judged by the IPv4
/// address inside it instead.
const BLOCKED_V6: &[&str] = &[
    "::/96",          // unspecified, loopback, IPv4-compatible (deprecated)
    "64:ff9b::/96",   // NAT64
    "64:ff9b:1::/48", // local NAT64
    "100::/64",       // discard
    "2001::/23",      // IETF protocol assignments (Teredo included)
    "2001:db8::/32",  // documentation
    "2002::/16",      // 6to4
    "fc00::/7",       // unique local (fd00:ec2::254 metadata included)
    "fe80::/10",      // link-local
    "fec0::/10",      // site-local (deprecated)
    "ff00::/8",       // multicast
];

static BLOCKED: LazyLock<Vec<IpNet>> = LazyLock::new(|| {
    let v4 = BLOCKED_V4
        .iter()
        .filter_map(|n| n.parse::<Ipv4Net>().ok())
        .map(IpNet::V4);
    let v6 = BLOCKED_V6
        .iter()
        .filter_map(|n| n.parse::<Ipv6Net>().ok())
        .map(IpNet::V6);
    v4.chain(v6).collect()
});

/// Which addresses a callback may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPolicy {
    /// The development allowlist: loopback addresses are allowed too.
    pub allow_loopback: bool,
}

impl AddressPolicy {
    /// Public unicast only (Lambda).
    pub const PUBLIC: Self = Self {
        allow_loopback: false,
    };

    pub fn allows(self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if self.allow_loopback && ip.is_loopback() {
            return true;
        }
        !BLOCKED.iter().any(|net| net.contains(&ip))
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is the IPv4 address it maps.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// A name resolver; the system's in production. Tests give a fixed table so that a name
/// resolving to a private address can be tried without a DNS server.
pub trait Lookup: Send + Sync + std::fmt::Debug {
    fn lookup(
        &self,
        host: String,
    ) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;
}

/// The operating system's resolver (`getaddrinfo`, through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(
        &self,
        host: String,
    ) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

/// A fixed table of names (tests).
#[derive(Debug, Clone, Default)]
pub struct StaticLookup(pub Vec<(String, Vec<IpAddr>)>);

impl Lookup for StaticLookup {
    fn lookup(
        &self,
        host: String,
    ) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        let found = self
            .0
            .iter()
            .find(|(h, _)| *h == host)
            .map(|(_, a)| a.clone());
        Box::pin(async move {
            found.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "unknown host"))
        })
    }
}

/// The error a refused address gives; the sender recognises it in reqwest's error chain.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to addresses callbacks may not reach")]
pub struct Blocked {
    pub host: String,
}

/// A reqwest resolver that returns only the addresses the policy allows, and fails when none
/// is left, so the connection goes to a checked address or nowhere.
#[derive(Debug, Clone)]
pub struct CheckedResolver {
    pub policy: AddressPolicy,
    pub lookup: Arc<dyn Lookup>,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let policy = self.policy;
        let lookup = self.lookup.clone();
        Box::pin(async move {
            let found = lookup.lookup(host.clone()).await?;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|ip| policy.allows(*ip))
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(Blocked { host }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The address a URL host names literally (`10.0.0.1`, `[::1]`), if it is one: reqwest
/// connects to those without resolving, so they are checked before the request.
pub fn literal_ip(host: &str) -> Option<IpAddr> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<Ipv4Addr>()
        .map(IpAddr::V4)
        .or_else(|_| bare.parse::<Ipv6Addr>().map(IpAddr::V6))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        literal_ip(s).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn only_public_unicast_is_allowed() {
        for blocked in [
            "127.0.0.1",
            "10.0.0.1",
            "100.64.0.1",
            "169.254.169.254",
            "172.16.5.4",
            "192.168.1.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "fd00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "2001:db8::1",
        ] {
            assert!(
                !AddressPolicy::PUBLIC.allows(ip(blocked)),
                "{blocked} allowed"
            );
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(AddressPolicy::PUBLIC.allows(ip(public)), "{public} refused");
        }
    }

    #[test]
    fn the_development_allowlist_adds_loopback_and_nothing_else() {
        let dev = AddressPolicy {
            allow_loopback: true,
        };
        for allowed in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            assert!(dev.allows(ip(allowed)), "{allowed}");
        }
        for blocked in ["10.0.0.1", "169.254.169.254", "fd00::1", "100.64.0.1"] {
            assert!(!dev.allows(ip(blocked)), "{blocked}");
        }
    }
}
