//! A decorator for any provisioner that injects faults into chosen calls (tests only).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Message, Result};
use crate::provisioner::*;
use crate::validate::Username;
/// Which provisioner call a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    EnsureFolder,
    CreateVm,
    DestroyVm,
    Power,
    Inventory,
    EnsurePortGroups,
    RemovePortGroups,
}

/// What goes wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Fail before reaching the backend.
    Fail,
    /// Reach the backend, let the call take effect, then report failure (a half-applied call).
    FailAfter,
    /// Hang for this long, then time out.
    Hang(Duration),
    /// Add latency, then proceed.
    Delay(Duration),
    /// Let the call take effect, then answer this much later (an answer that is already out
    /// of date when it arrives: a listing taken before changes that follow it).
    DelayAfter(Duration),
    /// Let the call take effect, then hang for this long and time out (a crash after the
    /// backend acted but before Basphere recorded it).
    HangAfter(Duration),
}

/// Wraps any provisioner and injects faults into chosen calls.
pub struct FaultInjectingProvisioner {
    inner: Arc<dyn Provisioner>,
    faults: Mutex<Vec<(Method, Fault, u32)>>,
    injected: Mutex<u32>,
}

impl FaultInjectingProvisioner {
    pub fn new(inner: Arc<dyn Provisioner>) -> Self {
        FaultInjectingProvisioner { inner, faults: Mutex::new(Vec::new()), injected: Mutex::new(0) }
    }

    /// Injects `fault` into the next `times` calls of `method`.
    pub fn inject(&self, method: Method, fault: Fault, times: u32) {
        self.faults.lock().unwrap_or_else(|p| p.into_inner()).push((method, fault, times));
    }

    /// Removes every pending fault.
    pub fn clear(&self) {
        self.faults.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u32 {
        *self.injected.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self, method: Method) -> Option<Fault> {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let index = faults.iter().position(|(m, _, times)| *m == method && *times > 0)?;
        faults[index].2 -= 1;
        let fault = faults[index].1;
        if faults[index].2 == 0 {
            faults.remove(index);
        }
        *self.injected.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        Some(fault)
    }

    async fn around<T, F>(&self, method: Method, call: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>> + Send,
        T: Send,
    {
        let injected = |what: &str| Error::Backend {
            backend: "fault-injection",
            source: Box::new(Message(format!("injected failure {what} {method:?}"))),
            log_tail: vec![format!("fault injected into {method:?}")],
        };
        match self.take(method) {
            None => call.await,
            Some(Fault::Fail) => Err(injected("before")),
            Some(Fault::FailAfter) => {
                call.await?;
                Err(injected("after"))
            }
            Some(Fault::Hang(duration)) => {
                tokio::time::sleep(duration).await;
                Err(Error::Timeout(format!("{method:?} did not answer within {duration:?}")))
            }
            Some(Fault::Delay(duration)) => {
                tokio::time::sleep(duration).await;
                call.await
            }
            Some(Fault::DelayAfter(duration)) => {
                let answer = call.await;
                tokio::time::sleep(duration).await;
                answer
            }
            Some(Fault::HangAfter(duration)) => {
                call.await?;
                tokio::time::sleep(duration).await;
                Err(Error::Timeout(format!("{method:?} took effect but did not answer within {duration:?}")))
            }
        }
    }
}

#[async_trait]
impl Provisioner for FaultInjectingProvisioner {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }

    async fn preflight(&self) -> Result<()> {
        self.inner.preflight().await
    }

    async fn ensure_folder(&self, owner: &Username) -> Result<()> {
        self.around(Method::EnsureFolder, self.inner.ensure_folder(owner)).await
    }

    async fn create_vm(&self, request: &VmRequest) -> Result<VmHandle> {
        self.around(Method::CreateVm, self.inner.create_vm(request)).await
    }

    async fn destroy_vm(&self, vm: &VmRef) -> Result<()> {
        self.around(Method::DestroyVm, self.inner.destroy_vm(vm)).await
    }

    async fn power(&self, vm: &VmRef, action: PowerAction) -> Result<PowerState> {
        self.around(Method::Power, self.inner.power(vm, action)).await
    }

    async fn inventory(&self) -> Result<Vec<InventoryVm>> {
        self.around(Method::Inventory, self.inner.inventory()).await
    }

    async fn ensure_port_groups(&self, spec: &TenantPortGroups) -> Result<()> {
        self.around(Method::EnsurePortGroups, self.inner.ensure_port_groups(spec)).await
    }

    async fn remove_port_groups(&self, spec: &TenantPortGroups) -> Result<()> {
        self.around(Method::RemovePortGroups, self.inner.remove_port_groups(spec)).await
    }

    async fn adopt(&self, vm: &VmRef) -> Result<()> {
        self.inner.adopt(vm).await
    }
}
