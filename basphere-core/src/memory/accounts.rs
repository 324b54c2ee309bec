//! Accounts in memory: users, requests, quota overrides, usage.

use uuid::Uuid;

use super::{after, page, remember, ReadTx, State, WriteTx};
use crate::error::{Error, Result};
use crate::model::*;
use crate::store::{AccountsRead, AccountsTx, RequestFilter};
use crate::validate::{Email, Username};

macro_rules! reads {
    ($ty:ty) => {
        impl AccountsRead for $ty {
            fn get_user(&self, username: &Username) -> Result<Option<User>> {
                Ok(self.state().users.get(username).cloned())
            }
            fn user_by_uid(&self, uid: u32) -> Result<Option<User>> {
                Ok(self.state().users.values().find(|u| u.uid == Some(uid)).cloned())
            }
            fn user_by_key_fingerprint(&self, fingerprint: &str) -> Result<Option<User>> {
                Ok(self.state().users.values().find(|u| u.ssh_key.fingerprint() == fingerprint).cloned())
            }
            fn user_by_email(&self, email: &Email) -> Result<Option<User>> {
                Ok(self.state().users.values().find(|u| u.email.matches(email)).cloned())
            }
            fn list_users(&self) -> Result<Vec<User>> {
                Ok(self.state().users.values().cloned().collect())
            }
            fn get_registration(&self, id: Uuid) -> Result<Option<RegistrationRequest>> {
                Ok(self.state().registrations.get(&id).cloned())
            }
            fn list_registrations(&self, filter: &RequestFilter) -> Result<Vec<RegistrationRequest>> {
                Ok(page(
                    after(&self.state().registrations, filter.after)
                        .filter(|r| filter.status.is_none_or(|s| r.status == s))
                        .filter(|r| filter.username.as_ref().is_none_or(|u| r.username == *u))
                        .cloned(),
                    filter.limit,
                ))
            }
            fn get_key_change(&self, id: Uuid) -> Result<Option<KeyChangeRequest>> {
                Ok(self.state().key_changes.get(&id).cloned())
            }
            fn list_key_changes(&self, filter: &RequestFilter) -> Result<Vec<KeyChangeRequest>> {
                Ok(page(
                    after(&self.state().key_changes, filter.after)
                        .filter(|r| filter.status.is_none_or(|s| r.status == s))
                        .filter(|r| filter.username.as_ref().is_none_or(|u| r.username == *u))
                        .cloned(),
                    filter.limit,
                ))
            }
            fn quota_override(&self, owner: &Username) -> Result<Option<QuotaOverride>> {
                Ok(self.state().quota_overrides.get(owner).copied())
            }
            fn usage(&self, owner: &Username) -> Result<Usage> {
                let state = self.state();
                let mut usage = Usage::default();
                for vm in state.vms.values().filter(|vm| vm.is_live() && vm.owner == *owner) {
                    usage.vms += 1;
                    usage.vcpus += u64::from(vm.cpu);
                    usage.memory_mb += vm.memory_mb;
                    usage.disk_gb += vm.disk_gb;
                }
                for cluster in state.clusters.values().filter(|c| c.is_live() && c.owner == *owner) {
                    let nodes = cluster.usage();
                    usage.clusters += 1;
                    usage.vcpus += nodes.vcpus;
                    usage.memory_mb += nodes.memory_mb;
                    usage.disk_gb += nodes.disk_gb;
                }
                usage.ips = state.leases_by_owner.get(owner).map_or(0, |set| set.len() as u64);
                Ok(usage)
            }
        }
    };
}

reads!(ReadTx<'_>);
reads!(WriteTx<'_>);

impl WriteTx<'_> {
    fn check_user_unique(&self, user: &User) -> Result<()> {
        for other in self.state.users.values().filter(|other| other.username != user.username) {
            if other.ssh_key.fingerprint() == user.ssh_key.fingerprint() {
                return Err(Error::already_exists("ssh key", user.ssh_key.fingerprint()));
            }
            if user.uid.is_some() && other.uid == user.uid {
                return Err(Error::already_exists("uid", user.uid.unwrap_or_default()));
            }
        }
        Ok(())
    }
}

impl AccountsTx for WriteTx<'_> {
    fn insert_user(&mut self, user: &User) -> Result<()> {
        if self.state.users.contains_key(&user.username) {
            return Err(Error::already_exists("user", &user.username));
        }
        self.check_user_unique(user)?;
        self.state.users.insert(user.username.clone(), user.clone());
        remember!(self, users, user.username.clone(), None::<User>);
        Ok(())
    }

    fn update_user(&mut self, user: &User) -> Result<()> {
        if !self.state.users.contains_key(&user.username) {
            return Err(Error::not_found("user", &user.username));
        }
        self.check_user_unique(user)?;
        let previous = self.state.users.insert(user.username.clone(), user.clone());
        remember!(self, users, user.username.clone(), previous);
        Ok(())
    }

    fn delete_user(&mut self, username: &Username) -> Result<()> {
        if !self.state.users.contains_key(username) {
            return Err(Error::not_found("user", username));
        }
        let holds_vm = self.state.vms.values().any(|vm| vm.is_live() && vm.owner == *username);
        let holds_cluster = self.state.clusters.values().any(|c| c.is_live() && c.owner == *username);
        if holds_vm
            || holds_cluster
            || self.state.blocks_by_owner.contains_key(username)
            || self.state.leases_by_owner.contains_key(username)
        {
            return Err(Error::Conflict(format!("user {username} still owns VMs, clusters or addresses")));
        }
        let previous = self.state.users.remove(username);
        remember!(self, users, username.clone(), previous);
        let tokens: Vec<Uuid> = self.state.tokens.values().filter(|t| t.owner == *username).map(|t| t.id).collect();
        for id in tokens {
            let previous = self.state.tokens.remove(&id);
            remember!(self, tokens, id, previous);
        }
        let sessions: Vec<Uuid> =
            self.state.web_sessions.values().filter(|s| s.owner.as_ref() == Some(username)).map(|s| s.id).collect();
        for id in sessions {
            let previous = self.state.web_sessions.remove(&id);
            remember!(self, web_sessions, id, previous);
        }
        let previous = self.state.quota_overrides.remove(username);
        remember!(self, quota_overrides, username.clone(), previous);
        Ok(())
    }

    fn insert_registration(&mut self, request: &RegistrationRequest) -> Result<()> {
        if self.state.registrations.contains_key(&request.id) {
            return Err(Error::already_exists("registration", request.id));
        }
        check_pending_registration(self.state, request)?;
        self.state.registrations.insert(request.id, request.clone());
        remember!(self, registrations, request.id, None::<RegistrationRequest>);
        Ok(())
    }

    fn update_registration(&mut self, request: &RegistrationRequest) -> Result<()> {
        if !self.state.registrations.contains_key(&request.id) {
            return Err(Error::not_found("registration", request.id));
        }
        check_pending_registration(self.state, request)?;
        let previous = self.state.registrations.insert(request.id, request.clone());
        remember!(self, registrations, request.id, previous);
        Ok(())
    }

    fn insert_key_change(&mut self, request: &KeyChangeRequest) -> Result<()> {
        if self.state.key_changes.contains_key(&request.id) {
            return Err(Error::already_exists("key change", request.id));
        }
        check_pending_key_change(self.state, request)?;
        self.state.key_changes.insert(request.id, request.clone());
        remember!(self, key_changes, request.id, None::<KeyChangeRequest>);
        Ok(())
    }

    fn update_key_change(&mut self, request: &KeyChangeRequest) -> Result<()> {
        if !self.state.key_changes.contains_key(&request.id) {
            return Err(Error::not_found("key change", request.id));
        }
        check_pending_key_change(self.state, request)?;
        let previous = self.state.key_changes.insert(request.id, request.clone());
        remember!(self, key_changes, request.id, previous);
        Ok(())
    }

    fn set_quota_override(&mut self, owner: &Username, quota: Option<&QuotaOverride>) -> Result<()> {
        if !self.state.users.contains_key(owner) {
            return Err(Error::not_found("user", owner));
        }
        let previous = match quota {
            Some(quota) => self.state.quota_overrides.insert(owner.clone(), *quota),
            None => self.state.quota_overrides.remove(owner),
        };
        remember!(self, quota_overrides, owner.clone(), previous);
        Ok(())
    }
}

fn check_pending_registration(state: &State, request: &RegistrationRequest) -> Result<()> {
    if request.status != RequestStatus::Pending {
        return Ok(());
    }
    let pending = || {
        state.registrations.values().filter(|other| other.id != request.id && other.status == RequestStatus::Pending)
    };
    if pending().any(|other| other.username == request.username) {
        return Err(Error::already_exists("pending registration", &request.username));
    }
    if pending().any(|other| other.email.matches(&request.email)) {
        return Err(Error::already_exists("pending registration", &request.email));
    }
    Ok(())
}

fn check_pending_key_change(state: &State, request: &KeyChangeRequest) -> Result<()> {
    if request.status != RequestStatus::Pending {
        return Ok(());
    }
    let clash = state.key_changes.values().any(|other| {
        other.id != request.id && other.status == RequestStatus::Pending && other.username == request.username
    });
    if clash {
        Err(Error::already_exists("pending key change", &request.username))
    } else {
        Ok(())
    }
}
