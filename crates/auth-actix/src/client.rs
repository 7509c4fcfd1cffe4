//! The client's address: the TCP peer, unless the peer is a trusted proxy, in which case
//! the rightmost `X-Forwarded-For` hop that is not itself a trusted proxy.
//!
//! Everything to the left of that hop was written by the client (or by proxies we do not
//! know) and can say anything; the hops to its right were appended by our own proxies.
//! From an untrusted peer the header is ignored entirely, so a client cannot pick the
//! address its rate limits and blocks are counted under.

use std::net::{IpAddr, SocketAddr};

use cache_core::Cidr;

/// The resolved client address and the TCP peer it was resolved from, in the request's
/// extensions (the guard also makes `HttpRequest::peer_addr` answer the client address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    /// The client, after trusted-proxy resolution.
    pub ip: IpAddr,
    /// The TCP peer (the client itself, or the nearest proxy).
    pub peer: IpAddr,
}

/// The client address of a request from `peer` carrying the `X-Forwarded-For` header
/// values `forwarded` (in order of appearance), with `trusted` proxies.
pub fn resolve<'a>(
    peer: IpAddr,
    forwarded: impl IntoIterator<Item = &'a str>,
    trusted: &[Cidr],
) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> =
        forwarded.into_iter().flat_map(|value| value.split(',')).map(str::trim).collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        // A malformed hop ends the walk: the last good one is as far as we can trust.
        let Some(ip) = parse_hop(hop) else { break };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`[v6]:port`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let ip = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok())?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(resolve(ip("203.0.113.9"), ["1.2.3.4"], &trusted), ip("203.0.113.9"));
        assert_eq!(resolve(ip("203.0.113.9"), [], &[]), ip("203.0.113.9"));
        assert_eq!(resolve(ip("::ffff:203.0.113.9"), [], &[]), ip("203.0.113.9"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "192.0.2.1"]);
        // Client-written garbage on the left is ignored.
        let xff = ["6.6.6.6, 198.51.100.7", "10.1.1.1"];
        assert_eq!(resolve(ip("10.0.0.2"), xff, &trusted), ip("198.51.100.7"));
        assert_eq!(resolve(ip("192.0.2.1"), ["198.51.100.7"], &trusted), ip("198.51.100.7"));
        // Ports and brackets.
        assert_eq!(resolve(ip("10.0.0.2"), ["[2001:db8::1]:443"], &trusted), ip("2001:db8::1"));
        assert_eq!(resolve(ip("10.0.0.2"), ["198.51.100.7:5000"], &trusted), ip("198.51.100.7"));
        assert_eq!(resolve(ip("10.0.0.2"), ["[2001:db8::2]"], &trusted), ip("2001:db8::2"));
        // No header: the proxy itself.
        assert_eq!(resolve(ip("10.0.0.2"), [], &trusted), ip("10.0.0.2"));
        // Every hop trusted: the leftmost.
        assert_eq!(resolve(ip("10.0.0.2"), ["10.9.9.9, 10.8.8.8"], &trusted), ip("10.9.9.9"));
        // Garbage right after our proxy: the proxy is as far as we can go.
        assert_eq!(resolve(ip("10.0.0.2"), ["1.2.3.4, garbage"], &trusted), ip("10.0.0.2"));
    }
}
