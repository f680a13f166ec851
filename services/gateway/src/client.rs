//! Who is on the other end of a connection, for the login throttle and the
//! Open311 limits. The peer address is the TCP connection's; a proxy's
//! `X-Forwarded-For` is believed only when the connection comes from a proxy
//! named in the settings (`--trusted-proxies`), and then only as far back as
//! the first address that is not one of them: a client can write anything
//! into that header, but not into the hops our own proxies appended.
//!
//! Both sides of the gateway use it. On the gRPC port tonic knows the peer;
//! on the HTTP side (pages, gRPC-Web, Open311) [`remember`] puts the resolved
//! address into every request's extensions, where the gRPC handlers behind
//! gRPC-Web find it too.
use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;

/// An address or a network (`10.0.0.0/8`, `::1/128`, `192.0.2.7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    pub fn parse(s: &str) -> anyhow::Result<Net> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| anyhow::anyhow!("{s:?} is not an IP address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| anyhow::anyhow!("{s:?}: the prefix must be 0 to {max}"))?,
        };
        Ok(Net { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (canonical(self.addr), ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// IPv4 addresses that arrive mapped into IPv6 compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct Proxies {
    trusted: Vec<Net>,
}

impl Proxies {
    /// A comma-separated list of addresses and networks; empty trusts none.
    pub fn parse(list: &str) -> anyhow::Result<Proxies> {
        let trusted = list
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Net::parse)
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(|e| anyhow::anyhow!("trusted_proxies: {e}"))?;
        Ok(Proxies { trusted })
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(ip))
    }

    /// The client behind `peer`: `peer` itself, unless it is a trusted proxy,
    /// in which case the nearest address in `forwarded_for` that is not.
    pub fn resolve(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        let mut client = canonical(peer);
        if !self.trusts(client) {
            return client;
        }
        let Some(hops) = forwarded_for else {
            return client;
        };
        for hop in hops.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = canonical(ip);
                    if !self.trusts(client) {
                        return client;
                    }
                }
                // Whatever stands before an unreadable hop is not ours to believe.
                Err(_) => return client,
            }
        }
        client
    }

    /// The client of a gRPC request, as a string for the throttle's keys.
    pub fn client_of<T>(&self, req: &tonic::Request<T>) -> String {
        if let Some(ClientAddr(ip)) = req.extensions().get::<ClientAddr>() {
            return ip.to_string();
        }
        match req.remote_addr() {
            Some(peer) => {
                let forwarded = req
                    .metadata()
                    .get("x-forwarded-for")
                    .and_then(|v| v.to_str().ok());
                self.resolve(peer.ip(), forwarded).to_string()
            }
            // Not reached over TCP (in-process tests): one bucket of its own.
            None => "unknown".into(),
        }
    }
}

/// The resolved client address of an HTTP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Middleware for the HTTP side: resolves each request's client once and
/// leaves it in the request's extensions (for pages, Open311 and gRPC-Web).
pub async fn remember(
    axum::extract::State(proxies): axum::extract::State<std::sync::Arc<Proxies>>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(peer) = peer {
        let forwarded = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        let client = proxies.resolve(peer, forwarded);
        req.extensions_mut().insert(ClientAddr(client));
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_contain_their_addresses() {
        let n = Net::parse("10.1.0.0/16").unwrap();
        assert!(n.contains(ip("10.1.200.3")));
        assert!(!n.contains(ip("10.2.0.1")));
        assert!(
            Net::parse("192.0.2.7")
                .unwrap()
                .contains(ip("::ffff:192.0.2.7"))
        );
        assert!(Net::parse("::1").unwrap().contains(ip("::1")));
        assert!(Net::parse("0.0.0.0/0").unwrap().contains(ip("203.0.113.9")));
        assert!(Net::parse("10.0.0.0/33").is_err());
        assert!(Net::parse("proxy.local").is_err());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let none = Proxies::default();
        // A client that writes the header itself is still itself.
        assert_eq!(
            none.resolve(ip("198.51.100.4"), Some("1.2.3.4")),
            ip("198.51.100.4")
        );
        let p = Proxies::parse("10.0.0.0/8, 127.0.0.1").unwrap();
        assert_eq!(
            p.resolve(ip("127.0.0.1"), Some("203.0.113.9")),
            ip("203.0.113.9")
        );
        // Two of our proxies, and a forged hop before the real client.
        assert_eq!(
            p.resolve(ip("127.0.0.1"), Some("6.6.6.6, 203.0.113.9, 10.0.0.3")),
            ip("203.0.113.9")
        );
        // No header, or an unreadable hop: the last address we can vouch for.
        assert_eq!(p.resolve(ip("127.0.0.1"), None), ip("127.0.0.1"));
        assert_eq!(
            p.resolve(ip("127.0.0.1"), Some("junk, 10.0.0.3")),
            ip("10.0.0.3")
        );
        assert!(Proxies::parse("10.0.0.0/8,nope").is_err());
    }
}
