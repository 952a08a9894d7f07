//! Loopback address allocation: every Pod (and every Service of the proxy) gets its own 127.x.y.z.
//!
//! Addresses are handed out round-robin rather than lowest-free, so an address freed by a deleted Pod is
//! not immediately given to the next one (a client still holding the old address then fails instead of
//! silently talking to another Pod).

use std::collections::HashSet;
use std::net::Ipv4Addr;

/// Pods get addresses from 127.0.10.1 to 127.0.19.254.
pub const POD_RANGE: (Ipv4Addr, Ipv4Addr) = (Ipv4Addr::new(127, 0, 10, 1), Ipv4Addr::new(127, 0, 19, 254));
/// The Service proxy gives each Service an address from 127.0.20.1 to 127.0.29.254.
pub const SERVICE_RANGE: (Ipv4Addr, Ipv4Addr) =
    (Ipv4Addr::new(127, 0, 20, 1), Ipv4Addr::new(127, 0, 29, 254));

#[derive(Debug)]
pub struct Allocator {
    first: u32,
    last: u32,
    next: u32,
    used: HashSet<u32>,
}

impl Allocator {
    pub fn new((first, last): (Ipv4Addr, Ipv4Addr)) -> Self {
        let first = u32::from(first);
        Allocator {
            first,
            last: u32::from(last),
            next: first,
            used: HashSet::new(),
        }
    }

    /// Reserve `preferred` if it is in range and free (a Pod keeping its address across a node restart),
    /// otherwise the next free address.
    pub fn allocate(&mut self, preferred: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        if let Some(ip) = preferred.map(u32::from) {
            if self.in_range(ip) && self.used.insert(ip) {
                return Some(Ipv4Addr::from(ip));
            }
        }
        let size = self.last - self.first + 1;
        for _ in 0..size {
            let candidate = self.next;
            self.next = if self.next >= self.last {
                self.first
            } else {
                self.next + 1
            };
            let last_octet = candidate & 0xff;
            if last_octet == 0 || last_octet == 255 {
                continue;
            }
            if self.used.insert(candidate) {
                return Some(Ipv4Addr::from(candidate));
            }
        }
        None
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&u32::from(ip));
    }

    fn in_range(&self, ip: u32) -> bool {
        ip >= self.first && ip <= self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_unique_and_not_reused_immediately() {
        let mut a = Allocator::new(POD_RANGE);
        let one = a.allocate(None).unwrap();
        let two = a.allocate(None).unwrap();
        assert_eq!(one, Ipv4Addr::new(127, 0, 10, 1));
        assert_eq!(two, Ipv4Addr::new(127, 0, 10, 2));
        a.release(one);
        assert_eq!(a.allocate(None).unwrap(), Ipv4Addr::new(127, 0, 10, 3));
    }

    #[test]
    fn a_preferred_free_address_is_kept() {
        let mut a = Allocator::new(POD_RANGE);
        let want = Ipv4Addr::new(127, 0, 11, 7);
        assert_eq!(a.allocate(Some(want)), Some(want));
        assert_ne!(a.allocate(Some(want)), Some(want));
        assert_ne!(a.allocate(Some(Ipv4Addr::LOCALHOST)), Some(Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn network_and_broadcast_like_addresses_are_skipped_and_exhaustion_is_reported() {
        let mut a = Allocator::new((Ipv4Addr::new(127, 0, 10, 254), Ipv4Addr::new(127, 0, 11, 1)));
        assert_eq!(a.allocate(None), Some(Ipv4Addr::new(127, 0, 10, 254)));
        assert_eq!(a.allocate(None), Some(Ipv4Addr::new(127, 0, 11, 1)));
        assert_eq!(a.allocate(None), None);
    }
}
