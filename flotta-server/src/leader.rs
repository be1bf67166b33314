//! Leadership among replicas that share one database.
//!
//! Every replica serves both APIs, but the decisions that must be taken once for
//! the whole fleet (the rollout step of each workload, with the status written
//! beside it: [`crate::workload_status`]) are taken by one of them, the holder of
//! the store's lease [`LEASE`]. Each replica tries to take or renew it every third
//! of its time to live ([`Store::acquire_lease`], by the database's clock); the
//! holder counts itself leader only until one time to live after its last
//! successful renewal began, so that a replica which stalls or loses the database
//! stops deciding before another can take over. A replica that stops gracefully
//! gives the lease up; one that is killed keeps it until it runs out, and then the
//! next replica to try takes it.
//!
//! A single server (SQLite, or the only replica on PostgreSQL) takes the lease at
//! its first try and keeps it. Writes that decide are also guarded by resource
//! versions, so even two replicas that both believed they lead (a paused process
//! waking after its lease ran out) could not apply one rollout step twice.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::store::Store;

/// Name of the lease the fleet's single decision-taker holds.
pub const LEASE: &str = "controllers";

/// Default time to live of the lease: how long a killed leader's decisions wait
/// for another replica.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);

/// This replica's view of the lease, shared with the tasks that act only when it
/// leads.
#[derive(Clone, Debug)]
pub struct Leadership {
    holder: Arc<str>,
    /// Leads without a lease: no other replica shares the store.
    sole: bool,
    /// Until when this replica may act as leader, if it holds the lease.
    valid_until: Arc<Mutex<Option<Instant>>>,
    /// Turns true when this replica takes the lease, false when it loses it.
    leading: watch::Receiver<bool>,
}

impl Leadership {
    /// A replica that always leads, for stores no other replica shares (tests of
    /// the tasks alone).
    pub fn sole() -> Leadership {
        let (_, leading) = watch::channel(true);
        Leadership {
            holder: Arc::from("sole"),
            sole: true,
            valid_until: Arc::new(Mutex::new(None)),
            leading,
        }
    }

    /// Starts taking and renewing the lease for a new holder id (random, with the
    /// process id for logs). The task gives the lease up and ends when `shutdown`
    /// turns true.
    pub fn spawn(
        store: Arc<dyn Store>,
        ttl: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> (Leadership, JoinHandle<()>) {
        let holder: Arc<str> = Arc::from(format!(
            "{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let valid_until = Arc::new(Mutex::new(None::<Instant>));
        let (leading_tx, leading) = watch::channel(false);
        let leadership = Leadership {
            holder: holder.clone(),
            sole: false,
            valid_until: valid_until.clone(),
            leading,
        };
        let renew_every = ttl / 3;
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(renew_every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = crate::shutdown::stopping(&mut shutdown) => break,
                }
                let started = Instant::now();
                let held = match store.acquire_lease(LEASE, &holder, ttl).await {
                    Ok(held) => held,
                    Err(error) => {
                        tracing::warn!(error = %crate::api::error_chain(&error), "leader lease: cannot reach the store");
                        false
                    }
                };
                set_valid_until(&valid_until, held.then_some(started + ttl));
                let was = *leading_tx.borrow();
                if held != was {
                    if held {
                        tracing::info!(holder = %holder, "leader lease taken: this replica takes the fleet's decisions");
                    } else {
                        tracing::warn!(holder = %holder, "leader lease lost: another replica takes the fleet's decisions");
                    }
                    leading_tx.send_replace(held);
                }
            }
            let held = *leading_tx.borrow();
            set_valid_until(&valid_until, None);
            leading_tx.send_replace(false);
            if held && let Err(error) = store.release_lease(LEASE, &holder).await {
                tracing::warn!(error = %crate::api::error_chain(&error), "leader lease: cannot give it up; it runs out on its own");
            }
        });
        (leadership, task)
    }

    /// This replica's holder id in the lease.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Whether this replica may take the fleet's decisions now.
    pub fn is_leader(&self) -> bool {
        if self.sole {
            return true;
        }
        let until = *self
            .valid_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        until.is_some_and(|until| Instant::now() < until)
    }

    /// Waits until this replica takes the lease it did not hold (never returns
    /// while it keeps holding it, nor after the lease task ended).
    pub async fn taken(&mut self) {
        loop {
            if self.leading.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            if *self.leading.borrow_and_update() {
                return;
            }
        }
    }
}

fn set_valid_until(slot: &Mutex<Option<Instant>>, until: Option<Instant>) {
    *slot
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = until;
}
