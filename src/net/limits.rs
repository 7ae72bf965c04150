//! `max.connections` and `max.connections.per.ip`: counts over every shard
//! and listener of this broker.
//!
//! Owns: the counts and the decision at accept. The one structure shared
//! between shards outside the mesh: a mutex taken twice per connection
//! (accept and close), never on a request's path. Kafka's broker counts the
//! same way (one `ConnectionQuotas` for all its processors).
//!
//! Must not: block or sleep while holding the lock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

static COUNTS: Mutex<Option<Counts>> = Mutex::new(None);

/// A connection counted against the limits until dropped.
pub struct Admitted {
    ip: IpAddr,
}

/// Why a connection was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Broker(usize),
    Ip(usize),
}

/// Counts a new connection from `ip`, or refuses it over a limit.
pub fn admit(ip: IpAddr, max: usize, max_per_ip: usize) -> Result<Admitted, Refused> {
    let mut guard = COUNTS.lock().unwrap_or_else(|poison| poison.into_inner());
    let counts = guard.get_or_insert_with(Counts::default);
    if counts.total >= max {
        return Err(Refused::Broker(max));
    }
    let from_ip = counts.per_ip.entry(ip).or_insert(0);
    if *from_ip >= max_per_ip {
        return Err(Refused::Ip(max_per_ip));
    }
    *from_ip += 1;
    counts.total += 1;
    Ok(Admitted { ip })
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut guard = COUNTS.lock().unwrap_or_else(|poison| poison.into_inner());
        let Some(counts) = guard.as_mut() else { return };
        counts.total = counts.total.saturating_sub(1);
        if let Some(from_ip) = counts.per_ip.get_mut(&self.ip) {
            *from_ip = from_ip.saturating_sub(1);
            if *from_ip == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_per_ip_and_release_on_drop() {
        // One test touches the process-wide counts, with addresses no other
        // test uses.
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = admit(a, usize::MAX, 2).unwrap();
        let _second = admit(a, usize::MAX, 2).unwrap();
        assert_eq!(admit(a, usize::MAX, 2).err(), Some(Refused::Ip(2)));
        let _other = admit(b, usize::MAX, 2).unwrap();
        drop(first);
        let _again = admit(a, usize::MAX, 2).unwrap();
    }
}
