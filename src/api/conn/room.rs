//! Who makes room at a listener's connection cap. The connections of one
//! client address must not crowd out another's: a client holds at most
//! half the cap (its next connection takes the place of its own idlest),
//! and at the cap the idlest connection of the client holding the most
//! goes. Connections with a request in flight never go: those are bounded
//! by each key's share, and by the request timeout. Connections with no
//! address (the unix socket) count as one client.

use std::collections::BTreeMap;
use std::net::IpAddr;

use tokio::time::Instant;

/// One open connection, as the choice sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Open {
    pub id: u64,
    pub peer: Option<IpAddr>,
    pub busy: bool,
    /// The last request start or answer (or the accept).
    pub last: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pick {
    Room,
    /// This connection is told to go; the newcomer takes its place.
    Evict(u64),
    /// No place can be made for the newcomer: it is closed.
    Full,
}

/// Most connections one client address may hold.
pub(super) fn per_client(cap: usize) -> usize {
    (cap / 2).max(1)
}

/// Where a connection from `peer` goes, among `open` under `cap`.
pub(super) fn pick(open: &[Open], cap: usize, peer: Option<IpAddr>) -> Pick {
    let idlest = |of: &dyn Fn(&Open) -> bool| {
        open.iter()
            .filter(|c| !c.busy && of(c))
            .min_by_key(|c| (c.last, c.id))
            .map_or(Pick::Full, |c| Pick::Evict(c.id))
    };
    if peer.is_some() && open.iter().filter(|c| c.peer == peer).count() >= per_client(cap) {
        return idlest(&|c| c.peer == peer);
    }
    if open.len() < cap {
        return Pick::Room;
    }
    let mut held: BTreeMap<Option<IpAddr>, usize> = BTreeMap::new();
    for c in open {
        *held.entry(c.peer).or_default() += 1;
    }
    // The idle connection of the client holding the most, idlest first.
    open.iter()
        .filter(|c| !c.busy)
        .min_by_key(|c| (std::cmp::Reverse(held[&c.peer]), c.last, c.id))
        .map_or(Pick::Full, |c| Pick::Evict(c.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn conns(spec: &[(&str, bool)]) -> Vec<Open> {
        let t0 = Instant::now();
        spec.iter()
            .enumerate()
            .map(|(i, (peer, busy))| Open {
                id: i as u64,
                peer: (!peer.is_empty()).then(|| peer.parse().unwrap()),
                busy: *busy,
                last: t0 + Duration::from_millis(i as u64),
            })
            .collect()
    }

    const A: &str = "172.20.0.2";
    const B: &str = "172.21.0.2";

    #[test]
    fn under_the_cap_there_is_room() {
        assert_eq!(
            pick(&conns(&[(A, false)]), 4, Some(B.parse().unwrap())),
            Pick::Room
        );
        assert_eq!(pick(&[], 1, None), Pick::Room);
    }

    #[test]
    fn at_the_cap_the_client_holding_most_makes_room() {
        // b's connection is the idlest of all, but a holds more.
        let open = conns(&[(B, false), (A, false), (A, false), (A, true)]);
        assert_eq!(pick(&open, 4, Some(B.parse().unwrap())), Pick::Evict(1));
        // a's newcomer: a holds half the cap, so its own idlest goes.
        assert_eq!(pick(&open, 4, Some(A.parse().unwrap())), Pick::Evict(1));
        // All of a's busy: b's idle one goes (a's busy ones are bounded
        // by its key's share).
        let open = conns(&[(B, false), (A, true), (A, true), (B, true)]);
        assert_eq!(
            pick(&open, 4, Some("10.0.0.9".parse().unwrap())),
            Pick::Evict(0)
        );
        // Every connection busy: the newcomer is closed.
        let open = conns(&[(B, true), (A, true), (A, true), (B, true)]);
        assert_eq!(
            pick(&open, 4, Some("10.0.0.9".parse().unwrap())),
            Pick::Full
        );
    }

    #[test]
    fn a_client_holds_half_the_cap_at_most() {
        let open = conns(&[(A, true), (A, true), (A, true), (A, false)]);
        assert_eq!(pick(&open, 8, Some(A.parse().unwrap())), Pick::Evict(3));
        let open = conns(&[(A, true), (A, true), (A, true), (A, true)]);
        assert_eq!(pick(&open, 8, Some(A.parse().unwrap())), Pick::Full);
        // Room for others still.
        assert_eq!(pick(&open, 8, Some(B.parse().unwrap())), Pick::Room);
    }

    #[test]
    fn without_addresses_the_idlest_goes() {
        let open = conns(&[("", true), ("", false), ("", false)]);
        assert_eq!(pick(&open, 3, None), Pick::Evict(1));
        assert_eq!(
            pick(&conns(&[("", false), ("", false)]), 4, None),
            Pick::Room
        );
    }
}
