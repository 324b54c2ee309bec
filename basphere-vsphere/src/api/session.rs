//! The session with vCenter and the one retry loop every call goes through: a login made on
//! first use and again after vCenter forgot it, reads made again after a lost connection, and
//! vim_rs's failures turned into Basphere's errors.

use std::sync::Arc;

use basphere_core::{Error, Result};
use tokio::sync::Mutex;
use vim_rs::core::client::{ClientBuilder, Error as VimError, TransportMode};
use vim_rs::types::struct_enum::StructType;

use super::{Attempt, BoxFuture, Session, VsphereApiProvisioner, VsphereApiSettings};

/// What a call to vCenter can fail with: a SOAP call or a property collector/task wait.
pub(super) enum Failure {
    Call(VimError),
    Collector(vim_rs::core::Error),
    Basphere(Error),
}

/// What the retry loop does after a failure.
pub(super) enum Next {
    LogInAgain,
    /// The connection failed under a read (its error, for the log).
    ReadAgain(String),
    Fail(Error),
}

impl From<VimError> for Failure {
    fn from(error: VimError) -> Self {
        Failure::Call(error)
    }
}

impl From<vim_rs::core::Error> for Failure {
    fn from(error: vim_rs::core::Error) -> Self {
        Failure::Collector(error)
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::Basphere(error)
    }
}

pub(super) fn fault_is(error: &VimError, kind: StructType) -> bool {
    matches!(error, VimError::MethodFault(fault) if fault.type_ == Some(kind))
}

impl Failure {
    /// vCenter no longer knows the session (expired, or vCenter restarted).
    pub(super) fn session_lost(&self) -> bool {
        match self {
            Failure::Call(error) => fault_is(error, StructType::NotAuthenticated),
            Failure::Collector(error) => {
                error.client_error().is_some_and(|error| fault_is(error, StructType::NotAuthenticated))
            }
            Failure::Basphere(_) => false,
        }
    }

    /// The connection failed (no answer from vCenter): the transport's error.
    pub(super) fn transport(&self) -> Option<&VimError> {
        let error = match self {
            Failure::Call(error) => error,
            Failure::Collector(error) => error.client_error()?,
            Failure::Basphere(_) => return None,
        };
        matches!(error, VimError::ReqwestError(inner) if inner.is_request() || inner.is_connect()).then_some(error)
    }

    /// What to do after this failure: log in again (once), read again (a read, twice at most,
    /// after a lost connection) or give up.
    pub(super) fn next_step(self, reads_only: bool, logged_in_again: bool, retries: u32) -> Next {
        if self.session_lost() && !logged_in_again {
            return Next::LogInAgain;
        }
        match self.transport().map(|error| with_causes(error)) {
            Some(error) if reads_only && retries < 2 => Next::ReadAgain(error),
            _ => Next::Fail(self.into_error()),
        }
    }

    pub(super) fn into_error(self) -> Error {
        match self {
            Failure::Call(error) if fault_is(&error, StructType::ManagedObjectNotFound) => {
                Error::not_found("vsphere object", error.to_string())
            }
            Failure::Call(error) => Error::backend("vsphere-api", with_causes(&error)),
            Failure::Collector(error) => {
                let fault = error.task_fault().map(describe_fault);
                Error::Backend {
                    backend: "vsphere-api",
                    source: with_causes(&error).into(),
                    log_tail: fault.into_iter().collect(),
                }
            }
            Failure::Basphere(error) => error,
        }
    }
}

/// An error and every cause under it on one line ("error sending request: connection refused"),
/// as the transport's own messages stop at the first level.
pub(super) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = inner.source();
    }
    line
}

/// A fault as one line: its type, its messages and its fields (vcsim sends no messages).
pub(super) fn describe_fault(fault: &vim_rs::types::structs::MethodFault) -> String {
    let kind = fault.type_.as_ref().map_or_else(|| "MethodFault".to_owned(), |kind| format!("{kind:?}"));
    let messages = fault.fault_message.iter().flatten().map(|m| m.message.clone().unwrap_or_else(|| m.key.clone()));
    let fields = fault.extra_fields_.iter().map(|(key, value)| format!("{key}={}", miniserde::json::to_string(value)));
    let details: Vec<String> = messages.chain(fields).collect();
    if details.is_empty() {
        kind
    } else {
        format!("{kind}: {}", details.join("; "))
    }
}

impl VsphereApiProvisioner {
    pub fn new(settings: VsphereApiSettings) -> Self {
        VsphereApiProvisioner { settings, session: Mutex::new(None) }
    }

    /// Logs out of vCenter, when logged in, so that no session is left for vCenter to expire.
    pub fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let session = self.session.lock().await.take();
            if let Some(session) = session {
                if let Err(error) = session.client.close().await {
                    tracing::debug!(%error, "logging out of vCenter failed");
                }
            }
        })
    }

    pub(super) fn connect(&self) -> BoxFuture<'_, Result<Arc<Session>>> {
        Box::pin(async move {
            let http = reqwest::Client::builder()
                .cookie_store(true)
                .danger_accept_invalid_certs(self.settings.accept_invalid_certs)
                .danger_accept_invalid_hostnames(self.settings.accept_invalid_certs)
                .timeout(std::time::Duration::from_secs(120))
                .build()
                .map_err(|error| Error::backend("vsphere-api", error))?;
            let built = ClientBuilder::new(&self.settings.server, http)
                .basic_authn(&self.settings.credentials.user, &self.settings.credentials.password)
                .app_details("basphere", env!("CARGO_PKG_VERSION"))
                .transport(TransportMode::Soap)
                .build()
                .await;
            match built {
                Ok(client) => Ok(Arc::new(Session { client })),
                Err(error) => Err(self.login_failure(error)),
            }
        })
    }

    /// A failed login; a refused one names the credentials file and what to check.
    pub(super) fn login_failure(&self, error: VimError) -> Error {
        if !fault_is(&error, StructType::InvalidLogin) {
            return Failure::Call(error).into_error();
        }
        let file = self.settings.vsphere.credentials_file.as_ref().map_or_else(
            || "the credentials Basphere was given".to_owned(),
            |path| format!("the credentials file {}", path.display()),
        );
        Error::invalid(
            "vsphere.credentials_file",
            format!(
                "vCenter {} refused the login of {:?} (InvalidLogin): check VSPHERE_USER and VSPHERE_PASSWORD in {file} \
                 (the server reads it when it starts), and that the account exists in vCenter and is not locked or \
                 expired",
                self.settings.server, self.settings.credentials.user
            ),
        )
    }

    /// The session, made on first use and made again after vCenter forgot it.
    pub(super) fn session(&self) -> BoxFuture<'_, Result<Arc<Session>>> {
        Box::pin(async move {
            let mut session = self.session.lock().await;
            if let Some(current) = session.as_ref() {
                return Ok(current.clone());
            }
            let fresh = self.connect().await?;
            *session = Some(fresh.clone());
            Ok(fresh)
        })
    }

    /// Forgets `stale` (if it is still the current session) so the next call logs in again.
    pub(super) fn forget<'a>(&'a self, stale: &'a Arc<Session>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut session = self.session.lock().await;
            if session.as_ref().is_some_and(|current| Arc::ptr_eq(current, stale)) {
                *session = None;
            }
        })
    }

    /// One vCenter call that changes something, made again once after logging in again if
    /// vCenter forgot the session.
    pub(super) fn call<'a, T: Send + 'a>(
        &'a self,
        attempt: impl Fn(Arc<Session>) -> BoxFuture<'a, std::result::Result<T, Failure>> + Send + Sync + 'a,
    ) -> BoxFuture<'a, Result<T>> {
        self.call_with(false, Box::new(attempt))
    }

    /// One vCenter call that only reads: as `call`, and also made again (twice at most) when
    /// the connection fails under it. Proxies in front of vCenter drop idle keep-alive
    /// connections, and reading twice does no harm.
    pub(super) fn read<'a, T: Send + 'a>(
        &'a self,
        attempt: impl Fn(Arc<Session>) -> BoxFuture<'a, std::result::Result<T, Failure>> + Send + Sync + 'a,
    ) -> BoxFuture<'a, Result<T>> {
        self.call_with(true, Box::new(attempt))
    }

    pub(super) fn call_with<'a, T: Send + 'a>(
        &'a self,
        reads_only: bool,
        attempt: Attempt<'a, T>,
    ) -> BoxFuture<'a, Result<T>> {
        Box::pin(async move {
            let (mut logged_in_again, mut retries) = (false, 0u32);
            loop {
                let session = self.session().await?;
                let failure = match attempt(session.clone()).await {
                    Ok(value) => return Ok(value),
                    Err(failure) => failure,
                };
                // The failure becomes plain data before the next await: a vim_rs fault held
                // across an await would make the compiler prove it `Send` (see the module's
                // documentation).
                match failure.next_step(reads_only, logged_in_again, retries) {
                    Next::LogInAgain => {
                        tracing::info!(server = %self.settings.server, "the vCenter session expired; logging in again");
                        self.forget(&session).await;
                        logged_in_again = true;
                    }
                    Next::ReadAgain(error) => {
                        retries += 1;
                        tracing::debug!(server = %self.settings.server, %error, "the connection failed; reading again");
                        tokio::time::sleep(std::time::Duration::from_millis(50 * u64::from(retries))).await;
                    }
                    Next::Fail(error) => return Err(error),
                }
            }
        })
    }
}
