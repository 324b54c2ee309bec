//! vCenter tasks: started through the retry loop, then polled until they end, with the
//! reason of a failed one read as one line.

use std::sync::Arc;

use basphere_core::{Error, Result};
use vim_rs::core::client::{Client, Error as VimError};
use vim_rs::core::pc_retrieve::ObjectRetriever;
use vim_rs::types::enums::TaskInfoStateEnum;
use vim_rs::types::structs::ManagedObjectReference;
use vim_rs::vim_retrievable;

use super::session::describe_fault;
use super::{BoxFuture, TaskStart, VsphereApiProvisioner};

vim_retrievable!(
    struct TaskRow: Task {
        state = "info.state",
    }
);

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
        Box::pin(async move {
            let start = &start;
            let task = self
                .call(move |session| {
                    let started = start(session.client.clone());
                    Box::pin(async move { Ok(started.await?) })
                })
                .await?;
            self.wait(&task).await?;
            Ok(task)
        })
    }

    /// Polls a task until it ends: after 10 ms at first, each pause half as long again as the
    /// last, up to 500 ms, so a short task is seen done within a third of its time and a long one
    /// costs two calls a second. (Polling keeps each wait independent: one bad update cannot fail
    /// every waiter at once.)
    pub(super) fn wait<'a>(&'a self, task: &'a ManagedObjectReference) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut pause = std::time::Duration::from_millis(10);
            loop {
                match self.task_state(task).await? {
                    TaskInfoStateEnum::Success => return Ok(()),
                    TaskInfoStateEnum::Error => {
                        let reason = self.task_failure(task).await;
                        return Err(Error::Backend {
                            backend: "vsphere-api",
                            source: Box::new(basphere_core::error::Message(format!(
                                "vCenter task {} failed: {reason}",
                                task.value
                            ))),
                            log_tail: vec![reason],
                        });
                    }
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

    /// Why a task failed, in one line. (Read as a raw property: vim_rs's typed path for
    /// `info.error` expects a `MethodFault` where vCenter sends a `LocalizedMethodFault`.)
    pub(super) fn task_failure<'a>(&'a self, task: &'a ManagedObjectReference) -> BoxFuture<'a, String> {
        use vim_rs::core::client::{PropertyValue, VimClient};
        use vim_rs::types::structs::{LocalizedMethodFault, MethodFault};
        let fetched = self.read(move |session| {
            Box::pin(async move {
                let value = session.client.fetch_property_raw("", "Task", &task.value, "info.error").await?;
                let Some(PropertyValue::Parsed(value)) = value else {
                    return Ok("vCenter gave no reason".to_owned());
                };
                Ok(match value.into_any().downcast::<LocalizedMethodFault>() {
                    Ok(error) => match error.localized_message.as_deref() {
                        Some(message) if !message.is_empty() => {
                            format!("{} ({message})", describe_fault(&error.fault))
                        }
                        _ => describe_fault(&error.fault),
                    },
                    Err(other) => match other.downcast::<MethodFault>() {
                        Ok(fault) => describe_fault(&fault),
                        Err(_) => "vCenter gave a reason Basphere cannot read".to_owned(),
                    },
                })
            })
        });
        Box::pin(async move { fetched.await.unwrap_or_else(|_| "vCenter gave no reason".to_owned()) })
    }
}
