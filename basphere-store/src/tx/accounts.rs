//! Accounts: users, registration and key-change requests, quota overrides, usage.

use basphere_core::model::*;
use basphere_core::store::{AccountsRead, AccountsTx, RequestFilter};
use basphere_core::validate::{Email, Username};
use basphere_core::{Error, Result};
use rusqlite::params;
use uuid::Uuid;

use super::{Select, SqlTx};
use crate::rows::*;
use crate::sql;

const USER_COLUMNS: &str = "username, email, team, ssh_key, role, status, uid, created_at, updated_at";
const REGISTRATION_COLUMNS: &str =
    "id, username, email, team, ssh_key, status, created_at, processed_by, processed_at, reject_reason";
const KEY_CHANGE_COLUMNS: &str =
    "id, username, email, new_ssh_key, reason, status, created_at, processed_by, processed_at, reject_reason";

impl AccountsRead for SqlTx<'_> {
    fn get_user(&self, username: &Username) -> Result<Option<User>> {
        self.one(&format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?1"), [username.as_str()], user_row)
    }

    fn user_by_uid(&self, uid: u32) -> Result<Option<User>> {
        self.one(&format!("SELECT {USER_COLUMNS} FROM users WHERE uid = ?1"), [uid], user_row)
    }

    fn user_by_key_fingerprint(&self, fingerprint: &str) -> Result<Option<User>> {
        self.one(&format!("SELECT {USER_COLUMNS} FROM users WHERE key_fingerprint = ?1"), [fingerprint], user_row)
    }

    fn user_by_email(&self, email: &Email) -> Result<Option<User>> {
        // lower() folds ASCII only in SQLite, as Email::matches does; the index is on it.
        self.one(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE lower(email) = lower(?1) ORDER BY username LIMIT 1"),
            [email.as_str()],
            user_row,
        )
    }

    fn list_users(&self) -> Result<Vec<User>> {
        self.all(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY username"), [], user_row)
    }

    fn get_registration(&self, id: Uuid) -> Result<Option<RegistrationRequest>> {
        self.one(
            &format!("SELECT {REGISTRATION_COLUMNS} FROM registrations WHERE id = ?1"),
            [id.to_string()],
            registration_row,
        )
    }

    fn list_registrations(&self, filter: &RequestFilter) -> Result<Vec<RegistrationRequest>> {
        let (query, values) = Select::from(format!("SELECT {REGISTRATION_COLUMNS} FROM registrations"))
            .when("status = ?", filter.status.map(|s| s.as_str().to_owned()))
            .when("username = ?", filter.username.as_ref().map(|u| u.to_string()))
            .when("id > ?", filter.after.map(|id| id.to_string()))
            .tail("ORDER BY id", filter.limit);
        self.all(&query, rusqlite::params_from_iter(values), registration_row)
    }

    fn get_key_change(&self, id: Uuid) -> Result<Option<KeyChangeRequest>> {
        self.one(
            &format!("SELECT {KEY_CHANGE_COLUMNS} FROM key_changes WHERE id = ?1"),
            [id.to_string()],
            key_change_row,
        )
    }

    fn list_key_changes(&self, filter: &RequestFilter) -> Result<Vec<KeyChangeRequest>> {
        let (query, values) = Select::from(format!("SELECT {KEY_CHANGE_COLUMNS} FROM key_changes"))
            .when("status = ?", filter.status.map(|s| s.as_str().to_owned()))
            .when("username = ?", filter.username.as_ref().map(|u| u.to_string()))
            .when("id > ?", filter.after.map(|id| id.to_string()))
            .tail("ORDER BY id", filter.limit);
        self.all(&query, rusqlite::params_from_iter(values), key_change_row)
    }

    fn quota_override(&self, owner: &Username) -> Result<Option<QuotaOverride>> {
        self.one(
            "SELECT max_vms, max_clusters, max_nodes_per_cluster, max_ips, max_vcpus, max_memory_mb, max_disk_gb FROM quota_overrides WHERE owner = ?1",
            [owner.as_str()],
            quota_override_row,
        )
    }

    fn usage(&self, owner: &Username) -> Result<Usage> {
        let mut usage = self
            .one(
                "SELECT count(*), coalesce(sum(cpu), 0), coalesce(sum(memory_mb), 0), coalesce(sum(disk_gb), 0) FROM vms WHERE owner = ?1 AND state <> 'deleted'",
                [owner.as_str()],
                |row| {
                    let get = |index| row.get::<_, i64>(index).map(|v| v as u64).map_err(sql);
                    Ok(Usage { vms: get(0)?, vcpus: get(1)?, memory_mb: get(2)?, disk_gb: get(3)?, ..Usage::default() })
                },
            )?
            .unwrap_or_default();
        let count = |query: &str| -> Result<u64> {
            Ok(self.one(query, [owner.as_str()], |row| row.get::<_, i64>(0).map_err(sql))?.unwrap_or(0) as u64)
        };
        // A cluster's nodes count with the VMs.
        let clusters = self
            .one(
                "SELECT count(*), \
                        coalesce(sum(control_plane_count * control_plane_cpu + worker_count * worker_cpu), 0), \
                        coalesce(sum(control_plane_count * control_plane_memory_mb + worker_count * worker_memory_mb), 0), \
                        coalesce(sum(control_plane_count * control_plane_disk_gb + worker_count * worker_disk_gb), 0) \
                 FROM clusters WHERE owner = ?1 AND state <> 'deleted'",
                [owner.as_str()],
                |row| {
                    let get = |index| row.get::<_, i64>(index).map(|v| v as u64).map_err(sql);
                    Ok([get(0)?, get(1)?, get(2)?, get(3)?])
                },
            )?
            .unwrap_or_default();
        usage.clusters = clusters[0];
        usage.vcpus += clusters[1];
        usage.memory_mb += clusters[2];
        usage.disk_gb += clusters[3];
        usage.ips = count("SELECT count(*) FROM leases WHERE owner = ?1")?;
        Ok(usage)
    }
}

impl AccountsTx for SqlTx<'_> {
    fn insert_user(&mut self, user: &User) -> Result<()> {
        let (fingerprint, uid) = (user.ssh_key.fingerprint(), user.uid.unwrap_or_default());
        self.insert(
            "INSERT INTO users (username, email, team, ssh_key, key_fingerprint, role, status, uid, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![user.username.as_str(), user.email.as_str(), user.team, user.ssh_key.as_str(), user.ssh_key.fingerprint(), user.role.as_str(), user.status.as_str(), user.uid, micros(user.created_at), micros(user.updated_at)],
            "users",
            &[("username", &user.username), ("key_fingerprint", &fingerprint), ("uid", &uid), ("role", &user.role), ("status", &user.status)],
        )
    }

    fn update_user(&mut self, user: &User) -> Result<()> {
        let (fingerprint, uid) = (user.ssh_key.fingerprint(), user.uid.unwrap_or_default());
        self.update(
            "UPDATE users SET email = ?2, team = ?3, ssh_key = ?4, key_fingerprint = ?5, role = ?6, status = ?7, uid = ?8, created_at = ?9, updated_at = ?10 WHERE username = ?1",
            params![user.username.as_str(), user.email.as_str(), user.team, user.ssh_key.as_str(), user.ssh_key.fingerprint(), user.role.as_str(), user.status.as_str(), user.uid, micros(user.created_at), micros(user.updated_at)],
            "user",
            &user.username,
            "users",
            &[("username", &user.username), ("key_fingerprint", &fingerprint), ("uid", &uid), ("role", &user.role), ("status", &user.status)],
        )
    }

    fn delete_user(&mut self, username: &Username) -> Result<()> {
        if self.get_user(username)?.is_none() {
            return Err(Error::not_found("user", username));
        }
        let holds: i64 = self
            .conn
            .query_row(
                "SELECT (SELECT count(*) FROM vms WHERE owner = ?1 AND state <> 'deleted') + (SELECT count(*) FROM clusters WHERE owner = ?1 AND state <> 'deleted')
                      + (SELECT count(*) FROM ip_blocks WHERE owner = ?1) + (SELECT count(*) FROM leases WHERE owner = ?1)",
                [username.as_str()],
                |row| row.get(0),
            )
            .map_err(sql)?;
        if holds > 0 {
            return Err(Error::Conflict(format!("user {username} still owns VMs, clusters or addresses")));
        }
        // Tokens and the quota override go with it (ON DELETE CASCADE).
        self.exec("DELETE FROM users WHERE username = ?1", [username.as_str()]).map_err(sql)?;
        Ok(())
    }

    fn insert_registration(&mut self, r: &RegistrationRequest) -> Result<()> {
        self.insert(
            &format!(
                "INSERT INTO registrations ({REGISTRATION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ),
            params![
                r.id.to_string(),
                r.username.as_str(),
                r.email.as_str(),
                r.team,
                r.ssh_key.as_str(),
                r.status.as_str(),
                micros(r.created_at),
                r.processed_by.as_deref(),
                r.processed_at.map(micros),
                r.reject_reason
            ],
            "registrations",
            &[("id", &r.id), ("username", &r.username), ("email", &r.email), ("status", &r.status)],
        )
    }

    fn update_registration(&mut self, r: &RegistrationRequest) -> Result<()> {
        self.update(
            "UPDATE registrations SET username = ?2, email = ?3, team = ?4, ssh_key = ?5, status = ?6, created_at = ?7, processed_by = ?8, processed_at = ?9, reject_reason = ?10 WHERE id = ?1",
            params![r.id.to_string(), r.username.as_str(), r.email.as_str(), r.team, r.ssh_key.as_str(), r.status.as_str(), micros(r.created_at), r.processed_by.as_deref(), r.processed_at.map(micros), r.reject_reason],
            "registration",
            r.id,
            "registrations",
            &[("id", &r.id), ("username", &r.username), ("email", &r.email), ("status", &r.status)],
        )
    }

    fn insert_key_change(&mut self, r: &KeyChangeRequest) -> Result<()> {
        self.insert(
            &format!("INSERT INTO key_changes ({KEY_CHANGE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
            params![
                r.id.to_string(),
                r.username.as_str(),
                r.email.as_str(),
                r.new_ssh_key.as_str(),
                r.reason,
                r.status.as_str(),
                micros(r.created_at),
                r.processed_by.as_deref(),
                r.processed_at.map(micros),
                r.reject_reason
            ],
            "key_changes",
            &[("id", &r.id), ("username", &r.username), ("status", &r.status)],
        )
    }

    fn update_key_change(&mut self, r: &KeyChangeRequest) -> Result<()> {
        self.update(
            "UPDATE key_changes SET username = ?2, email = ?3, new_ssh_key = ?4, reason = ?5, status = ?6, created_at = ?7, processed_by = ?8, processed_at = ?9, reject_reason = ?10 WHERE id = ?1",
            params![r.id.to_string(), r.username.as_str(), r.email.as_str(), r.new_ssh_key.as_str(), r.reason, r.status.as_str(), micros(r.created_at), r.processed_by.as_deref(), r.processed_at.map(micros), r.reject_reason],
            "key change",
            r.id,
            "key_changes",
            &[("id", &r.id), ("username", &r.username), ("status", &r.status)],
        )
    }

    fn set_quota_override(&mut self, owner: &Username, quota: Option<&QuotaOverride>) -> Result<()> {
        if self.get_user(owner)?.is_none() {
            return Err(Error::not_found("user", owner));
        }
        match quota {
            None => {
                self.exec("DELETE FROM quota_overrides WHERE owner = ?1", [owner.as_str()]).map_err(sql)?;
                Ok(())
            }
            Some(q) => {
                let v = |value: Option<u64>| value.map(|v| v as i64);
                self.insert(
                    "INSERT INTO quota_overrides (owner, max_vms, max_clusters, max_nodes_per_cluster, max_ips, max_vcpus, max_memory_mb, max_disk_gb) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (owner) DO UPDATE SET max_vms = ?2, max_clusters = ?3, max_nodes_per_cluster = ?4, max_ips = ?5, max_vcpus = ?6, max_memory_mb = ?7, max_disk_gb = ?8",
                    params![owner.as_str(), v(q.max_vms), v(q.max_clusters), v(q.max_nodes_per_cluster), v(q.max_ips), v(q.max_vcpus), v(q.max_memory_mb), v(q.max_disk_gb)],
                    "quota_overrides",
                    &[("owner", owner)],
                )
            }
        }
    }
}
