//! The tenant path's connections when the service has them to itself: one single-connection sqlx
//! pool per connection ("slot"), so that each connection's [`Binding`] is known without asking.
//!
//! Why not one sqlx pool: a proof bound to the connection ([`Binding::Connection`]) needs the
//! connection's pid and nonce before the transaction's first statement, and sqlx gives a pooled
//! connection no place for data of ours (`PgConnection` exposes no backend pid, and the pool's
//! hooks get no per-connection storage). A pool capped at one connection has exactly one live
//! connection at a time, so its `after_connect` hook can record that connection's binding next to
//! it, and whoever holds the slot holds the connection the binding describes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::DbError;
use crate::tenant_context::Binding;

/// How long [`Lease::close_connection`] waits for the failed connection to come back.
const CLOSE_WAIT: Duration = Duration::from_millis(200);

/// The binding of a slot's current connection, written by its `after_connect` hook.
pub(crate) type SlotBinding = Arc<Mutex<Option<Binding>>>;

/// `max_connections` slots, and a semaphore that lets as many callers hold one at once.
#[derive(Debug)]
pub(crate) struct Slots {
    slots: Box<[Slot]>,
    permits: Arc<Semaphore>,
    acquire_timeout: Duration,
}

#[derive(Debug)]
struct Slot {
    pool: PgPool,
    binding: SlotBinding,
    busy: AtomicBool,
}

impl Slots {
    /// Slots over the pools `make` returns, each given the cell its hook records the binding in.
    pub(crate) fn new(
        count: u32,
        acquire_timeout: Duration,
        mut make: impl FnMut(SlotBinding) -> Result<PgPool, DbError>,
    ) -> Result<Slots, DbError> {
        let slots = (0..count.max(1))
            .map(|_| {
                let binding = SlotBinding::default();
                Ok(Slot { pool: make(binding.clone())?, binding, busy: AtomicBool::new(false) })
            })
            .collect::<Result<Box<[Slot]>, DbError>>()?;
        let permits = Arc::new(Semaphore::new(slots.len()));
        Ok(Slots { slots, permits, acquire_timeout })
    }

    /// A free slot, waiting up to the acquire timeout ([`DbError::PoolExhausted`] after it).
    pub(crate) async fn lease(self: &Arc<Self>) -> Result<Lease, DbError> {
        let permit = tokio::time::timeout(self.acquire_timeout, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| DbError::PoolExhausted)?
            .map_err(|_| DbError::PoolExhausted)?;
        // A permit guarantees a free slot: there are as many permits as slots, and a slot is
        // marked free only after its lease (holding a permit) is dropped.
        let index = self
            .slots
            .iter()
            .position(|slot| slot.busy.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok())
            .ok_or(DbError::PoolExhausted)?;
        Ok(Lease { slots: self.clone(), index, _permit: permit })
    }

    /// Closes every connection.
    pub(crate) async fn close(&self) {
        for slot in &self.slots {
            slot.pool.close().await;
        }
    }
}

/// One slot, held until dropped.
#[derive(Debug)]
pub(crate) struct Lease {
    slots: Arc<Slots>,
    index: usize,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    fn slot(&self) -> &Slot {
        &self.slots.slots[self.index]
    }

    /// The slot's single-connection pool.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.slot().pool
    }

    /// The binding of the slot's connection, opening the connection first when none is known.
    ///
    /// The connection can still be replaced before the caller uses it (closed as broken, or
    /// idle past sqlx's timeout); a proof made for the old one then fails to verify, which
    /// `carevault_enter_tenant` reports: the caller then calls [`Lease::close_connection`], which
    /// forgets the binding, and tries once more.
    pub(crate) async fn binding(&self) -> Result<Binding, DbError> {
        if let Some(binding) = self.recorded() {
            return Ok(binding);
        }
        let slot = self.slot();
        let mut connection = slot.pool.acquire().await.map_err(|error| super::acquire_error(&slot.pool, error))?;
        // A new connection recorded its binding when it opened; one that was there already (its
        // binding forgotten by `close_connection`, which could not get hold of it) gets a new one.
        let binding = match self.recorded() {
            Some(binding) => binding,
            None => match Binding::establish_connection(&mut connection).await {
                Ok(binding) => {
                    *slot.binding.lock().unwrap_or_else(PoisonError::into_inner) = Some(binding.clone());
                    binding
                }
                Err(error) => {
                    // Left in a failed transaction, say: close it, so that the next use starts over.
                    let _ = connection.close().await;
                    return Err(error);
                }
            },
        };
        drop(connection);
        Ok(binding)
    }

    /// Closes the slot's connection and forgets its binding: the next use opens a new connection
    /// and learns the new one's. (Keeping the binding would make every later proof name a
    /// connection that no longer exists: found by an attacker review, who closed the service's
    /// connections with `pg_terminate_backend` and had the slot answer 503 for good.)
    pub(crate) async fn close_connection(&self) {
        let slot = self.slot();
        *slot.binding.lock().unwrap_or_else(PoisonError::into_inner) = None;
        // The failed connection comes back to the slot's pool within milliseconds, unless sqlx
        // found it broken and closed it; wait no longer, or an outage would make every request
        // wait for a new connection here too.
        if let Ok(Ok(connection)) = tokio::time::timeout(CLOSE_WAIT, slot.pool.acquire()).await {
            // Closing politely or not, the connection is gone either way.
            let _ = connection.close().await;
        }
        *slot.binding.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn recorded(&self) -> Option<Binding> {
        self.slot().binding.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.slot().busy.store(false, Ordering::Release);
    }
}
