//! vCenter tasks: started through the retry loop, then polled until they end, with the
//! reason of a failed one read as one line (and its fault's type, for the callers that handle
//! one fault themselves).

use std::sync::Arc;

use basphere_core::{Error, Result};
use vim_rs::core::client::{Client, Error as VimError};
use vim_rs::core::pc_retrieve::ObjectRetriever;
use vim_rs::types::enums::TaskInfoStateEnum;
use vim_rs::types::struct_enum::StructType;
use vim_rs::types::structs::ManagedObjectReference;
use vim_rs::vim_retrievable;

use super::session::describe_fault;
use super::{BoxFuture, TaskStart, VsphereApiProvisioner};

vim_retrievable!(
    struct TaskRow: Task {
        state = "info.state",
    }
);

/// A task that failed, as plain data: the type of its fault, when vCenter named one, and why,
/// in one line.
pub(super) struct TaskFailure {
    /// The task's id.
    pub(super) task: String,
    pub(super) fault: Option<StructType>,
    pub(super) reason: String,
}

impl TaskFailure {
    /// The backend error every other failed task is.
    pub(super) fn into_error(self) -> Error {
        Error::Backend {
            backend: "vsphere-api",
            source: Box::new(basphere_core::error::Message(format!(
                "vCenter task {} failed: {}",
                self.task, self.reason
            ))),
            log_tail: vec![self.reason],
        }
    }
}

impl VsphereApiProvisioner {
    /// Starts a task with `start`, waits for it to succeed and returns it.
    pub(super) fn run_task<'a>(
        &'a self,
        start: impl Fn(Arc<Client>) -> BoxFuture<'a, std::result::Result<ManagedObjectReference, VimError>>
            + Send
            + Sync
            + 'a,
    ) -> BoxFuture<'a, Result<ManagedObjectReference>> {
        self.run_boxed_task(Box::new(start))
    }

    pub(super) fn run_boxed_task<'a>(&'a self, start: TaskStart<'a>) -> BoxFuture<'a, Result<ManagedObjectReference>> {
        Box::pin(async move { self.try_boxed_task(start).await?.map_err(TaskFailure::into_error) })
    }

    /// Starts a task with `start` and waits for it to end. A task that failed is `Ok(Err(..))`,
    /// so that the caller can tell one fault from another (a `DuplicateName`).
    pub(super) fn try_task<'a>(
        &'a self,
        start: impl Fn(Arc<Client>) -> BoxFuture<'a, std::result::Result<ManagedObjectReference, VimError>>
            + Send
            + Sync
            + 'a,
    ) -> BoxFuture<'a, Result<std::result::Result<ManagedObjectReference, TaskFailure>>> {
        self.try_boxed_task(Box::new(start))
    }

    pub(super) fn try_boxed_task<'a>(
        &'a self,
        start: TaskStart<'a>,
    ) -> BoxFuture<'a, Result<std::result::Result<ManagedObjectReference, TaskFailure>>> {
        Box::pin(async move {
            let start = &start;
            let task = self
                .call(move |session| {
                    let started = start(session.client.clone());
                    Box::pin(async move { Ok(started.await?) })
                })
                .await?;
            Ok(self.outcome(&task).await?.map(|()| task))
        })
    }

    /// Polls a task until it ends (see [`Self::outcome`]); a failed one is a backend error.
    pub(super) fn wait<'a>(&'a self, task: &'a ManagedObjectReference) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.outcome(task).await?.map_err(TaskFailure::into_error) })
    }

    /// Polls a task until it ends: after 10 ms at first, each pause half as long again as the
    /// last, up to 500 ms, so a short task is seen done within a third of its time and a long one
    /// costs two calls a second. (Polling keeps each wait independent: one bad update cannot fail
    /// every waiter at once.) A task that failed is `Ok(Err(..))`, with its fault.
    pub(super) fn outcome<'a>(
        &'a self,
        task: &'a ManagedObjectReference,
    ) -> BoxFuture<'a, Result<std::result::Result<(), TaskFailure>>> {
        Box::pin(async move {
            let mut pause = std::time::Duration::from_millis(10);
            loop {
                match self.task_state(task).await? {
                    TaskInfoStateEnum::Success => return Ok(Ok(())),
                    TaskInfoStateEnum::Error => return Ok(Err(self.task_failure(task).await)),
                    _ => {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 3 / 2).min(std::time::Duration::from_millis(500));
                    }
                }
            }
        })
    }

    pub(super) fn task_state<'a>(
        &'a self,
        task: &'a ManagedObjectReference,
    ) -> BoxFuture<'a, Result<TaskInfoStateEnum>> {
        self.read(move |session| {
            Box::pin(async move {
                let retriever = ObjectRetriever::new(session.client.clone())?;
                let row = retriever
                    .retrieve_object::<TaskRow>(task)
                    .await?
                    .ok_or_else(|| Error::not_found("task", &task.value))?;
                Ok(row.state)
            })
        })
    }

    /// The object a finished task made (a clone's new VM).
    pub(super) fn task_result<'a>(
        &'a self,
        task: &'a ManagedObjectReference,
    ) -> BoxFuture<'a, Result<ManagedObjectReference>> {
        use vim_rs::core::client::{extract_property, VimClient};
        let fetched = self.read(move |session| {
            Box::pin(async move {
                let value = session.client.fetch_property_raw("", "Task", &task.value, "info.result").await?;
                Ok(value.and_then(|value| extract_property::<ManagedObjectReference>(value).ok()))
            })
        });
        Box::pin(async move {
            fetched.await?.ok_or_else(|| {
                Error::backend(
                    "vsphere-api",
                    basphere_core::error::Message(format!(
                        "vCenter task {} succeeded without naming what it made",
                        task.value
                    )),
                )
            })
        })
    }

    /// Why a task failed, in one line, and its fault's type. (Read as a raw property: vim_rs's
    /// typed path for `info.error` expects a `MethodFault` where vCenter sends a
    /// `LocalizedMethodFault`.)
    pub(super) fn task_failure<'a>(&'a self, task: &'a ManagedObjectReference) -> BoxFuture<'a, TaskFailure> {
        use vim_rs::core::client::{PropertyValue, VimClient};
        use vim_rs::types::structs::{LocalizedMethodFault, MethodFault};
        let fetched = self.read(move |session| {
            Box::pin(async move {
                let value = session.client.fetch_property_raw("", "Task", &task.value, "info.error").await?;
                let Some(PropertyValue::Parsed(value)) = value else {
                    return Ok((None, "vCenter gave no reason".to_owned()));
                };
                Ok(match value.into_any().downcast::<LocalizedMethodFault>() {
                    Ok(error) => (
                        error.fault.type_,
                        match error.localized_message.as_deref() {
                            Some(message) if !message.is_empty() => {
                                format!("{} ({message})", describe_fault(&error.fault))
                            }
                            _ => describe_fault(&error.fault),
                        },
                    ),
                    Err(other) => match other.downcast::<MethodFault>() {
                        Ok(fault) => (fault.type_, describe_fault(&fault)),
                        Err(_) => (None, "vCenter gave a reason Basphere cannot read".to_owned()),
                    },
                })
            })
        });
        Box::pin(async move {
            let (fault, reason) = fetched.await.unwrap_or_else(|_| (None, "vCenter gave no reason".to_owned()));
            TaskFailure { task: task.value.clone(), fault, reason }
        })
    }
}
