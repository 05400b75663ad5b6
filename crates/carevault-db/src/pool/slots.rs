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

    /// The binding of the slot's connection, opening the connection first when there is none.
    ///
    /// The connection can still be replaced before the caller uses it (closed as broken, or
    /// idle past sqlx's timeout); a proof made for the old one then fails to verify, which
    /// `carevault_enter_tenant` reports, and `TenantTx::begin` tries once more.
    pub(crate) async fn binding(&self) -> Result<Binding, DbError> {
        if let Some(binding) = self.recorded() {
            return Ok(binding);
        }
        let slot = self.slot();
        let connection = slot.pool.acquire().await.map_err(|error| super::acquire_error(&slot.pool, error))?;
        drop(connection);
        self.recorded().ok_or(DbError::PoolExhausted)
    }

    /// Closes the slot's connection (the next use opens a new one).
    pub(crate) async fn close_connection(&self) {
        if let Ok(connection) = self.slot().pool.acquire().await {
            // Closing politely or not, the connection is gone either way.
            let _ = connection.close().await;
        }
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
