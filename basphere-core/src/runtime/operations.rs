//! The operation runner: background work on one resource, run by the handler registered for
//! its kind, on a bounded set of workers, under a claim in the store.
//!
//! A process runs an operation only while it holds the operation's claim: a lease with a
//! fencing value, renewed every third of `work.lease_seconds`. Every commit checks the fence in
//! its transaction, so a process that lost its claim (stalled past the lease, say) can no
//! longer write. Work is resumed by whoever finds an unclaimed or expired claim: any replica
//! after a lease, and a restarted instance at once for its own earlier claims. Handlers commit
//! through [`OperationContext::commit`], the one place where an operation's outcome, the
//! resource's new state and the notifications it causes (the outbox) are written together.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use super::authz::{decide, Action, Actor};
use super::{page, Page, PageRequest, Runtime};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::ipam::Ipam;
use crate::model::*;
use crate::store::{OperationFilter, StoreExt, StoreRead, StoreTx};
use crate::validate::Username;

/// Runs the operations of one kind, registered for it in the [`Registry`](super::Registry) by the
/// resource module that owns the kind. A handler holds the backends it needs.
///
/// # Contract
///
/// - `run` takes an unfinished operation to its end (succeeded or failed) and returns it as
///   committed. It may be called again for the same operation after a crash at any point, or
///   in another process after a claim expired, so every step must be idempotent: a repeated
///   backend call adopts what the first one made.
/// - Every change is written through [`OperationContext::commit`]; nothing else writes the
///   store for an operation. A commit fails with `Conflict` once the claim is lost, and the
///   handler then stops.
/// - An error returned from `run` leaves the operation unfinished, to be run again later;
///   a failure of the work itself is recorded on the operation (`Operation::fail`) instead.
#[async_trait]
pub trait OperationHandler: Send + Sync {
    async fn run(&self, ctx: &OperationContext<'_>, operation: Operation) -> Result<Operation>;
}

/// What a handler may use while it runs an operation.
pub struct OperationContext<'a> {
    runtime: &'a Runtime,
    /// The fence of this process's claim on the operation.
    fence: u64,
    /// Set when renewing the claim failed: the operation is someone else's now.
    lost: Arc<AtomicBool>,
}

/// One transaction of a handler: the store, the IPAM, and the notifications it causes, which
/// reach the outbox in the same transaction.
pub struct Commit<'t> {
    pub tx: &'t mut dyn StoreTx,
    pub ipam: &'t dyn Ipam,
    events: Vec<NotificationEvent>,
}

impl Commit<'_> {
    /// Sends `event` if, and only if, this transaction commits.
    pub fn notify(&mut self, event: NotificationEvent) {
        self.events.push(event);
    }
}

impl OperationContext<'_> {
    pub fn config(&self) -> &Config {
        &self.runtime.config
    }

    pub fn ipam(&self) -> &Arc<dyn Ipam> {
        &self.runtime.ipam
    }

    /// Whether this process still holds the operation (its claim renewals succeed).
    pub fn still_claimed(&self) -> bool {
        !self.lost.load(Ordering::SeqCst)
    }

    /// Reads in one consistent snapshot.
    pub async fn read<T, F>(&self, mut f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&dyn StoreRead) -> Result<T> + Send + 'static,
    {
        self.runtime.db(move |store, _| store.query(|tx| f(tx))).await
    }

    /// Saves `operation` together with whatever `f` writes and the notifications it asks for,
    /// in one transaction that first checks this process's claim, then wakes everyone waiting
    /// for the operation and the outbox dispatcher.
    pub async fn commit<T, F>(&self, operation: &Operation, mut f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&mut Commit<'_>) -> Result<T> + Send + 'static,
    {
        let channels = self.runtime.channels();
        let saved = operation.clone();
        let fence = self.fence;
        let (out, notified) = self
            .runtime
            .db(move |store, ipam| {
                store.transact(|tx| {
                    tx.check_operation_claim(saved.id, fence)?;
                    let mut commit = Commit { tx, ipam: &*ipam, events: Vec::new() };
                    let out = f(&mut commit)?;
                    let events = std::mem::take(&mut commit.events);
                    let notified = !events.is_empty();
                    for event in events {
                        super::outbox::queue(commit.tx, event, &channels)?;
                    }
                    commit.tx.update_operation(&saved)?;
                    Ok((out, notified))
                })
            })
            .await?;
        if notified {
            self.runtime.outbox_ready.notify_one();
        }
        self.runtime.changed.notify_waiters();
        Ok(out)
    }

    /// Saves the operation alone (a step started, say).
    pub async fn save(&self, operation: &Operation) -> Result<()> {
        self.commit(operation, |_| Ok(())).await
    }
}

impl Runtime {
    /// Runs an operation this process just accepted, on a bounded worker pool, once it holds
    /// the operation's claim. If another process claims it first, that one runs it.
    pub fn spawn_operation(self: &Arc<Self>, id: Uuid) {
        if !self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(id) {
            return; // already started here
        }
        let runtime = self.clone();
        tokio::spawn(async move {
            if let Ok(_permit) = runtime.workers.clone().acquire_owned().await {
                // While draining, work is left unclaimed: the next start (or another replica)
                // runs it.
                if !runtime.draining.load(Ordering::SeqCst) {
                    match runtime.claim(Some(id), 1).await {
                        Ok(mut claimed) => {
                            if let Some((operation, claim)) = claimed.pop() {
                                runtime.run_claimed(operation, claim).await;
                            }
                        }
                        Err(error) => tracing::error!(operation = %id, %error, "operation could not be claimed"),
                    }
                }
            }
            runtime.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            runtime.changed.notify_waiters();
        });
    }

    /// Claims up to `limit` claimable operations (or just `only`) for this process.
    async fn claim(&self, only: Option<Uuid>, limit: usize) -> Result<Vec<(Operation, OperationClaim)>> {
        let worker = self.worker.clone();
        let lease = self.lease();
        self.db(move |store, _| {
            store.transact(|tx| {
                let at = now();
                tx.claim_operations(&worker, at, at + lease, only, limit)
            })
        })
        .await
    }

    fn lease(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.config.work.lease_seconds as i64)
    }

    /// Runs a claimed operation to its end, renewing the claim meanwhile, and releases it.
    async fn run_claimed(&self, operation: Operation, claim: OperationClaim) -> Option<Operation> {
        let id = operation.id;
        let lost = Arc::new(AtomicBool::new(false));
        let renewal = {
            let (store, lost, fence, threads) =
                (self.store.clone(), lost.clone(), claim.fence, self.store_threads.clone());
            let lease = self.lease();
            let every = Duration::from_millis(self.config.work.lease_seconds * 1000 / 3);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let store = store.clone();
                    let renewed = threads
                        .run(move || store.write(&mut |tx| tx.renew_operation_claim(id, fence, now() + lease)))
                        .await;
                    match renewed {
                        Ok(Ok(())) => {}
                        Ok(Err(Error::ClaimLost(message))) => {
                            tracing::warn!(operation = %id, %message, "the claim on the operation was lost");
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        Ok(Err(error)) => {
                            tracing::warn!(operation = %id, %error, "renewing the claim failed; retrying")
                        }
                        Err(_) => return,
                    }
                }
            })
        };
        let result = match self.handlers.get(operation.kind) {
            _ if operation.state.is_finished() => Ok(operation),
            None => Err(Error::NotSupported(format!("no handler runs {} operations in this build", operation.kind))),
            Some(handler) => {
                let ctx = OperationContext { runtime: self, fence: claim.fence, lost: lost.clone() };
                handler.run(&ctx, operation).await
            }
        };
        renewal.abort();
        let fence = claim.fence;
        if let Err(error) = self.db(move |store, _| store.write(&mut |tx| tx.release_operation_claim(id, fence))).await
        {
            tracing::warn!(operation = %id, %error, "releasing the claim failed; it expires by itself");
        }
        self.changed.notify_waiters();
        match result {
            Ok(operation) => Some(operation),
            Err(error) => {
                tracing::error!(operation = %id, %error, "operation stopped before its end; it will be resumed");
                None
            }
        }
    }

    /// Runs one operation to its end in this task, if it can be claimed now; for tools and
    /// tests. Returns the operation as it ended (`Conflict` if someone else holds it).
    pub async fn run_operation(&self, id: Uuid) -> Result<Operation> {
        if !self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(id) {
            return Err(Error::Conflict(format!("operation {id} is already running here")));
        }
        let result = self.run_operation_here(id).await;
        self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        self.changed.notify_waiters();
        result
    }

    async fn run_operation_here(&self, id: Uuid) -> Result<Operation> {
        let mut claimed = self.claim(Some(id), 1).await?;
        let Some((operation, claim)) = claimed.pop() else {
            let operation = self.read(move |store| store.operation(id)).await?;
            if operation.state.is_finished() {
                return Ok(operation);
            }
            return Err(Error::Conflict(format!("operation {id} is being run by another worker")));
        };
        self.run_claimed(operation, claim)
            .await
            .ok_or_else(|| Error::Conflict(format!("operation {id} stopped before its end; see the log")))
    }

    /// Takes back the operations this instance claimed in an earlier life (they cannot be
    /// running: one process per instance), then starts every claimable operation. Returns the
    /// ids of the unfinished operations this process now runs (also those its background sweeper
    /// took first). Operations another replica holds are left to it until its claim expires.
    pub async fn resume_unfinished(self: &Arc<Self>) -> Result<Vec<Uuid>> {
        let (instance, worker) = (self.instance.clone(), self.worker.clone());
        let unfinished = self
            .db(move |store, _| {
                store.transact(|tx| {
                    let unfinished =
                        tx.list_operations(&OperationFilter { unfinished: true, ..OperationFilter::default() })?;
                    for operation in &unfinished {
                        if let Some(claim) = tx.operation_claim(operation.id)? {
                            if claim.worker != worker && super::worker_instance(&claim.worker) == instance {
                                tx.release_operation_claim(operation.id, claim.fence)?;
                            }
                        }
                    }
                    Ok(unfinished.into_iter().map(|op| op.id).collect::<Vec<_>>())
                })
            })
            .await?;
        let taken = self.take_back_outbox_claims().await?;
        if taken > 0 {
            tracing::info!(count = taken, "taking back notifications an earlier start was delivering");
        }
        let mut resumed = self.claimable().await?;
        for id in &resumed {
            self.spawn_operation(*id);
        }
        // The background sweeper of this process may have taken some already.
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for id in unfinished {
            if running.contains(&id) && !resumed.contains(&id) {
                resumed.push(id);
            }
        }
        Ok(resumed)
    }

    /// Unfinished operations nobody holds (or whose claim expired), oldest first.
    async fn claimable(&self) -> Result<Vec<Uuid>> {
        self.db(|store, _| {
            store.query(|tx| {
                let at = now();
                let mut ids = Vec::new();
                for operation in
                    tx.list_operations(&OperationFilter { unfinished: true, ..OperationFilter::default() })?
                {
                    match tx.operation_claim(operation.id)? {
                        Some(claim) if claim.expires_at > at => {}
                        _ => ids.push(operation.id),
                    }
                }
                Ok(ids)
            })
        })
        .await
    }

    /// One pass of the sweeper: starts every operation whose claim is free or expired (work
    /// left by a process that died, or queued while every worker was busy).
    pub async fn sweep_operations(self: &Arc<Self>) -> Result<usize> {
        if self.draining.load(Ordering::SeqCst) {
            return Ok(0);
        }
        let claimable = self.claimable().await?;
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut started = 0;
        for id in claimable.into_iter().filter(|id| !running.contains(id)) {
            self.spawn_operation(id);
            started += 1;
        }
        Ok(started)
    }

    /// The operations of `owner`, or of every account (`None`, administrators), oldest first.
    pub async fn list_operations(
        &self,
        actor: &Actor,
        owner: Option<&Username>,
        request: PageRequest,
    ) -> Result<Page<Operation>> {
        match owner {
            Some(owner) => decide(actor, Action::View, Some(owner), "user", owner)?,
            None => decide(actor, Action::Administer, None, "operation", &"")?,
        }
        let limit = request.limit(PageRequest::RESOURCES)?;
        let filter = OperationFilter {
            owner: owner.cloned(),
            after: request.after,
            limit: Some(limit + 1),
            ..Default::default()
        };
        let operations = self.read(move |store| store.query(|tx| tx.list_operations(&filter))).await?;
        Ok(page(operations, limit, |op| op.id))
    }

    /// The newest `limit` operations of `owner` (at most 100), newest first.
    pub async fn recent_operations(&self, actor: &Actor, owner: &Username, limit: usize) -> Result<Vec<Operation>> {
        decide(actor, Action::View, Some(owner), "user", owner)?;
        let filter = OperationFilter {
            owner: Some(owner.clone()),
            newest_first: true,
            limit: Some(limit.clamp(1, 100)),
            ..Default::default()
        };
        self.read(move |store| store.query(|tx| tx.list_operations(&filter))).await
    }

    /// One operation: the actor's own, or any for an administrator. Others' are `NotFound`, as
    /// is an id that is not a UUID.
    pub async fn operation(&self, actor: &Actor, id: &str) -> Result<Operation> {
        let missing = || Error::not_found("operation", crate::validate::bounded(id));
        let id = Uuid::parse_str(id).map_err(|_| missing())?;
        let operation = self.read(move |store| store.query(|tx| tx.get_operation(id))).await?.ok_or_else(missing)?;
        decide(actor, Action::View, Some(&operation.owner), "operation", &id)?;
        Ok(operation)
    }

    /// Waits until the operation has finished, or `timeout` passes.
    pub async fn wait_operation(&self, id: Uuid, timeout: Duration) -> Result<Operation> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            let operation = self.read(move |store| store.operation(id)).await?;
            if operation.state.is_finished() {
                return Ok(operation);
            }
            let poll = Duration::from_millis(200);
            let wake = std::cmp::min(deadline, tokio::time::Instant::now() + poll);
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout(format!("operation {id} still {} after {timeout:?}", operation.state)));
            }
            let _ = tokio::time::timeout_at(wake, notified).await;
        }
    }

    /// Waits until no operation is running or queued, or `timeout` passes.
    pub async fn wait_idle(&self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            let unfinished = self
                .db(|store, _| {
                    store.query(|tx| {
                        tx.list_operations(&OperationFilter {
                            unfinished: true,
                            limit: Some(1),
                            ..OperationFilter::default()
                        })
                    })
                })
                .await?;
            if unfinished.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout(format!("operations still running after {timeout:?}")));
            }
            let wake = std::cmp::min(deadline, tokio::time::Instant::now() + Duration::from_millis(200));
            let _ = tokio::time::timeout_at(wake, notified).await;
        }
    }

    /// Stops starting operations and waits up to `grace` for the running ones to finish.
    /// Returns how many were still running; their claims lapse, and the next start of this
    /// instance (or another replica, after the lease) resumes them.
    pub async fn drain(&self, grace: Duration) -> usize {
        self.draining.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let notified = self.changed.notified();
            let running = self.running.lock().unwrap_or_else(|p| p.into_inner()).len();
            if running == 0 || tokio::time::Instant::now() >= deadline {
                return running;
            }
            let wake = std::cmp::min(deadline, tokio::time::Instant::now() + Duration::from_millis(50));
            let _ = tokio::time::timeout_at(wake, notified).await;
        }
    }

    /// How many operations this process runs right now.
    pub fn running_operations(&self) -> usize {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
