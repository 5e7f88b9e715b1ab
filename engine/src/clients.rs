//! Fair share per client address (`ClientKey`), across the whole pod: how many sockets it holds,
//! how fast it opens new ones, and one send budget shared by every author and room behind it.
//! Entries of addresses that left are swept once their budgets have refilled, so the table holds
//! only addresses with open sockets or recent activity, however many come and go.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use crate::client_ip::ClientKey;
use crate::metrics::METRICS;
use crate::rate::TokenBucket;

/// How often entries of addresses that went away are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct ClientLimits {
    pub max_sockets: usize,
    pub join_rate: f64,
    pub join_burst: u32,
    pub send_rate: f64,
    pub send_burst: u32,
}

/// Why an address may not open another socket now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooManySockets,
    TooManyJoins { retry_after: Duration },
}

struct Ledger {
    sockets: usize,
    joins: TokenBucket,
    sends: TokenBucket,
}

pub struct Clients {
    limits: ClientLimits,
    table: DashMap<ClientKey, Ledger>,
}

/// An open socket of one address; counted until dropped.
pub struct ClientSocket {
    clients: Arc<Clients>,
    key: ClientKey,
}

impl ClientSocket {
    pub fn key(&self) -> ClientKey {
        self.key
    }
}

impl Drop for ClientSocket {
    fn drop(&mut self) {
        if let Some(mut ledger) = self.clients.table.get_mut(&self.key) {
            ledger.sockets = ledger.sockets.saturating_sub(1);
        }
    }
}

impl Clients {
    pub fn new(limits: ClientLimits) -> Arc<Clients> {
        Arc::new(Clients { limits, table: DashMap::new() })
    }

    fn ledger(&self, key: ClientKey) -> dashmap::mapref::one::RefMut<'_, ClientKey, Ledger> {
        match self.table.entry(key) {
            Entry::Occupied(entry) => entry.into_ref(),
            Entry::Vacant(entry) => {
                METRICS.client_addresses.inc();
                let limits = &self.limits;
                entry.insert(Ledger {
                    sockets: 0,
                    joins: TokenBucket::new(limits.join_rate, limits.join_burst),
                    sends: TokenBucket::new(limits.send_rate, limits.send_burst),
                })
            }
        }
    }

    /// A new socket of `key`, within its socket cap and join rate.
    pub fn open_socket(self: &Arc<Self>, key: ClientKey) -> Result<ClientSocket, Refusal> {
        let mut ledger = self.ledger(key);
        if ledger.sockets >= self.limits.max_sockets {
            return Err(Refusal::TooManySockets);
        }
        let now = Instant::now();
        if !ledger.joins.take(now) {
            return Err(Refusal::TooManyJoins { retry_after: ledger.joins.wait(now) });
        }
        ledger.sockets += 1;
        Ok(ClientSocket { clients: self.clone(), key })
    }

    /// Takes one join from the address's budget without opening a socket (a counts request costs
    /// what a join does), or says how long until there is one.
    pub fn take_join(&self, key: ClientKey, now: Instant) -> Result<(), Duration> {
        let mut ledger = self.ledger(key);
        if ledger.joins.take(now) {
            Ok(())
        } else {
            Err(ledger.joins.wait(now))
        }
    }

    /// Takes one send from the address's budget, or says how long until there is one.
    pub fn take_send(&self, key: ClientKey, now: Instant) -> Result<(), Duration> {
        let mut ledger = self.ledger(key);
        if ledger.sends.take(now) {
            Ok(())
        } else {
            Err(ledger.sends.wait(now))
        }
    }

    /// How long until the address may send again; takes nothing.
    pub fn send_wait(&self, key: ClientKey, now: Instant) -> Duration {
        self.ledger(key).sends.wait(now)
    }

    /// Drops the entries of addresses without sockets whose budgets are full again: forgetting
    /// them changes nothing for their next visit.
    fn sweep(&self, now: Instant) {
        self.table.retain(|_, ledger| {
            let keep = ledger.sockets > 0 || !ledger.joins.is_full(now) || !ledger.sends.is_full(now);
            if !keep {
                METRICS.client_addresses.dec();
            }
            keep
        });
    }

    /// Sweeps every `SWEEP_EVERY` for as long as the table is in use.
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let clients: Weak<Clients> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            loop {
                tick.tick().await;
                let Some(clients) = clients.upgrade() else { break };
                clients.sweep(Instant::now());
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ClientLimits {
        ClientLimits { max_sockets: 2, join_rate: 1000.0, join_burst: 1000, send_rate: 1.0, send_burst: 1 }
    }

    #[test]
    fn sockets_are_capped_and_given_back() {
        let clients = Clients::new(limits());
        let key = ClientKey::of("192.0.2.1".parse().unwrap());
        let a = clients.open_socket(key).unwrap();
        let _b = clients.open_socket(key).unwrap();
        assert_eq!(clients.open_socket(key).err(), Some(Refusal::TooManySockets));
        assert!(clients.open_socket(ClientKey::of("192.0.2.2".parse().unwrap())).is_ok());
        drop(a);
        assert!(clients.open_socket(key).is_ok());
    }

    #[test]
    fn idle_addresses_are_forgotten() {
        let clients = Clients::new(limits());
        let key = ClientKey::of("192.0.2.1".parse().unwrap());
        drop(clients.open_socket(key).unwrap());
        let later = Instant::now() + Duration::from_secs(1);
        clients.sweep(later);
        assert!(clients.table.is_empty());
        let _open = clients.open_socket(key).unwrap();
        clients.sweep(later);
        assert_eq!(clients.table.len(), 1);
    }
}
