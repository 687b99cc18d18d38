//! Which peers may speak for a client: the reverse proxies named in
//! `server.trusted_proxies`. Only their `X-Forwarded-*` and `Forwarded`
//! headers reach the service; from anyone else those headers are removed
//! before routing, so a client cannot change the `@id` of an info.json (and
//! poison a shared cache in front) by sending `X-Forwarded-Host` itself.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName, FORWARDED};
use ipnet::IpNet;

/// The forwarded headers this server reads, or that a proxy might pass on.
const FORWARDED_HEADERS: [HeaderName; 4] = [
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-prefix"),
    FORWARDED,
];

/// Addresses and networks of trusted reverse proxies.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses addresses (`127.0.0.1`, `::1`) and networks (`10.0.0.0/8`).
    pub fn parse(list: &[String]) -> Result<Self, String> {
        list.iter()
            .map(|s| {
                let s = s.trim();
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("server.trusted_proxies: {s:?} is not an IP address or network"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    /// Whether a peer is one of them (an IPv4-mapped IPv6 peer counts as
    /// its IPv4 address).
    pub fn contains(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(peer),
            v4 => v4,
        };
        self.0.iter().any(|n| n.contains(&peer))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Removes every forwarded header from a request of an untrusted peer.
pub fn strip_forwarded(headers: &mut HeaderMap) {
    for h in &FORWARDED_HEADERS {
        headers.remove(h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_networks_are_trusted_and_nothing_else() {
        let t = TrustedProxies::parse(&["127.0.0.1".into(), "10.0.0.0/8".into(), "::1".into()]).unwrap();
        assert!(t.contains("127.0.0.1".parse().unwrap()));
        assert!(t.contains("10.2.3.4".parse().unwrap()));
        assert!(t.contains("::1".parse().unwrap()));
        assert!(t.contains("::ffff:10.9.9.9".parse().unwrap()), "IPv4-mapped");
        assert!(!t.contains("127.0.0.2".parse().unwrap()));
        assert!(!t.contains("192.168.1.1".parse().unwrap()));
        assert!(!TrustedProxies::default().contains("127.0.0.1".parse().unwrap()), "none by default");
    }

    #[test]
    fn a_bad_entry_names_the_key() {
        let e = TrustedProxies::parse(&["localhost".into()]).unwrap_err();
        assert!(e.contains("server.trusted_proxies"), "{e}");
    }

    #[test]
    fn forwarded_headers_of_untrusted_peers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-host", "evil.example".parse().unwrap());
        h.insert("forwarded", "host=evil.example".parse().unwrap());
        h.insert("host", "images.example.org".parse().unwrap());
        strip_forwarded(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("host"));
    }
}
