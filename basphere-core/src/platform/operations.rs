//! The operation runner: background work on one resource, run by the handler registered for
//! its kind, on a bounded set of workers. Handlers commit through [`OperationContext::commit`],
//! the one place where an operation's outcome, the resource's new state and the notifications
//! it causes are written together.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use super::authz::{decide, Action, Actor};
use super::{page, Page, PageRequest, Platform};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::ipam::Ipam;
use crate::model::*;
use crate::provisioner::Provisioner;
use crate::store::{OperationFilter, StoreExt, StoreRead, StoreTx};
use crate::validate::Username;

/// Runs the operations of some kinds. One handler per resource kind (VMs today; clusters,
/// account approval and networks plug in through [`Platform::with_handlers`]).
///
/// # Contract
///
/// - `run` takes an unfinished operation to its end (succeeded or failed) and returns it as
///   committed. It may be called again for the same operation after a crash at any point, so
///   every step must be idempotent: a repeated backend call adopts what the first one made.
/// - Every change is written through [`OperationContext::commit`]; nothing else writes the
///   store for an operation.
/// - An error returned from `run` leaves the operation unfinished, to be run again later;
///   a failure of the work itself is recorded on the operation (`Operation::fail`) instead.
#[async_trait]
pub trait OperationHandler: Send + Sync {
    /// The operation kinds this handler runs.
    fn kinds(&self) -> &'static [OperationKind];

    async fn run(&self, ctx: &OperationContext<'_>, operation: Operation) -> Result<Operation>;
}

/// What a handler may use while it runs an operation.
pub struct OperationContext<'a> {
    platform: &'a Platform,
}

/// One transaction of a handler: the store, the IPAM, and the notifications to send once the
/// transaction has committed.
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
        &self.platform.config
    }

    pub fn provisioner(&self) -> &Arc<dyn Provisioner> {
        &self.platform.provisioner
    }

    pub fn ipam(&self) -> &Arc<dyn Ipam> {
        &self.platform.ipam
    }

    /// Reads in one consistent snapshot.
    pub async fn read<T, F>(&self, mut f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&dyn StoreRead) -> Result<T> + Send + 'static,
    {
        self.platform.db(move |store, _| store.query(|tx| f(tx))).await
    }

    /// Saves `operation` together with whatever `f` writes, in one transaction, then sends the
    /// notifications `f` asked for and wakes everyone waiting for the operation.
    pub async fn commit<T, F>(&self, operation: &Operation, mut f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&mut Commit<'_>) -> Result<T> + Send + 'static,
    {
        let saved = operation.clone();
        let (out, events) = self
            .platform
            .db(move |store, ipam| {
                store.transact(|tx| {
                    let mut commit = Commit { tx, ipam: &*ipam, events: Vec::new() };
                    let out = f(&mut commit)?;
                    let events = std::mem::take(&mut commit.events);
                    commit.tx.update_operation(&saved)?;
                    Ok((out, events))
                })
            })
            .await?;
        for event in events {
            self.platform.notify(event);
        }
        self.platform.changed.notify_waiters();
        Ok(out)
    }

    /// Saves the operation alone (a step started, say).
    pub async fn save(&self, operation: &Operation) -> Result<()> {
        self.commit(operation, |_| Ok(())).await
    }
}

impl Platform {
    /// Runs an operation in the background on a bounded worker pool. Running the same
    /// operation twice at once is prevented; a finished operation is left alone.
    pub fn spawn_operation(self: &Arc<Self>, id: Uuid) {
        let platform = self.clone();
        tokio::spawn(async move {
            let Ok(_permit) = platform.workers.clone().acquire_owned().await else {
                return;
            };
            if let Err(error) = platform.run_operation(id).await {
                tracing::error!(operation = %id, %error, "operation could not be run");
            }
        });
    }

    /// Runs an operation to its end and returns it. Safe to call for an operation that was
    /// interrupted (by a crash or shutdown): every step is idempotent.
    pub async fn run_operation(&self, id: Uuid) -> Result<Operation> {
        if !self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(id) {
            return Err(Error::Conflict(format!("operation {id} is already running")));
        }
        let result = self.run_operation_inner(id).await;
        self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        self.changed.notify_waiters();
        result
    }

    async fn run_operation_inner(&self, id: Uuid) -> Result<Operation> {
        let operation = self.db(move |store, _| store.operation(id)).await?;
        if operation.state.is_finished() {
            return Ok(operation);
        }
        let Some(handler) = self.handlers.get(&operation.kind).cloned() else {
            return Err(Error::NotSupported(format!("no handler runs {} operations in this build", operation.kind)));
        };
        handler.run(&OperationContext { platform: self }, operation).await
    }

    /// Resumes every operation that was interrupted (after a crash or restart). Returns their ids.
    pub async fn resume_unfinished(self: &Arc<Self>) -> Result<Vec<Uuid>> {
        let unfinished = self
            .db(|store, _| {
                store
                    .query(|tx| tx.list_operations(&OperationFilter { unfinished: true, ..OperationFilter::default() }))
            })
            .await?;
        let ids: Vec<Uuid> = unfinished.iter().map(|op| op.id).collect();
        for id in &ids {
            self.spawn_operation(*id);
        }
        Ok(ids)
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
        let operations = self.db(move |store, _| store.query(|tx| tx.list_operations(&filter))).await?;
        Ok(page(operations, limit, |op| op.id))
    }

    /// One operation: the actor's own, or any for an administrator. Others' are `NotFound`, as
    /// is an id that is not a UUID.
    pub async fn operation(&self, actor: &Actor, id: &str) -> Result<Operation> {
        let missing = || Error::not_found("operation", super::accounts::bounded(id));
        let id = Uuid::parse_str(id).map_err(|_| missing())?;
        let operation = self.db(move |store, _| store.query(|tx| tx.get_operation(id))).await?.ok_or_else(missing)?;
        decide(actor, Action::View, Some(&operation.owner), "operation", &id)?;
        Ok(operation)
    }

    /// Waits until the operation has finished, or `timeout` passes.
    pub async fn wait_operation(&self, id: Uuid, timeout: Duration) -> Result<Operation> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            let operation = self.db(move |store, _| store.operation(id)).await?;
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
    /// Returns how many were still running; they are resumed on the next start.
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
