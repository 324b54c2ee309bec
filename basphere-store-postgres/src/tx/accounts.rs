//! Accounts: users, registration and key-change requests, quota overrides, usage.

use basphere_core::model::*;
use basphere_core::store::{AccountsRead, AccountsTx, RequestFilter};
use basphere_core::validate::{Email, Username};
use basphere_core::{Error, Result};
use uuid::Uuid;

use super::{Param, PgTx, Select};
use crate::pg;
use crate::rows::*;

const USER_COLUMNS: &str = "username, email, team, ssh_key, role, status, uid, created_at, updated_at";
const REGISTRATION_COLUMNS: &str =
    "id, username, email, team, ssh_key, status, created_at, processed_by, processed_at, reject_reason";
const KEY_CHANGE_COLUMNS: &str =
    "id, username, email, new_ssh_key, reason, status, created_at, processed_by, processed_at, reject_reason";

/// Reads `n` bigint columns as counts.
fn counts<const N: usize>(row: &tokio_postgres::Row) -> Result<[u64; N]> {
    let mut out = [0; N];
    for (index, value) in out.iter_mut().enumerate() {
        *value = u64::try_from(row.try_get::<_, i64>(index).map_err(pg)?).unwrap_or(0);
    }
    Ok(out)
}

impl AccountsRead for PgTx<'_> {
    fn get_user(&self, username: &Username) -> Result<Option<User>> {
        self.one(&format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1"), &[&username.as_str()], user_row)
    }

    fn user_by_uid(&self, uid: u32) -> Result<Option<User>> {
        self.one(&format!("SELECT {USER_COLUMNS} FROM users WHERE uid = $1"), &[&i64::from(uid)], user_row)
    }

    fn user_by_key_fingerprint(&self, fingerprint: &str) -> Result<Option<User>> {
        self.one(&format!("SELECT {USER_COLUMNS} FROM users WHERE key_fingerprint = $1"), &[&fingerprint], user_row)
    }

    fn user_by_email(&self, email: &Email) -> Result<Option<User>> {
        // Addresses are ASCII (Email::parse), so lower() folds what Email::matches folds.
        self.one(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE lower(email) = lower($1) ORDER BY username LIMIT 1"),
            &[&email.as_str()],
            user_row,
        )
    }

    fn list_users(&self) -> Result<Vec<User>> {
        self.all(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY username"), &[], user_row)
    }

    fn get_registration(&self, id: Uuid) -> Result<Option<RegistrationRequest>> {
        self.one(&format!("SELECT {REGISTRATION_COLUMNS} FROM registrations WHERE id = $1"), &[&id], registration_row)
    }

    fn list_registrations(&self, filter: &RequestFilter) -> Result<Vec<RegistrationRequest>> {
        let query = Select::from(format!("SELECT {REGISTRATION_COLUMNS} FROM registrations"))
            .when("status = ?", filter.status.map(|s| s.as_str().to_owned()))
            .when("username = ?", filter.username.as_ref().map(|u| u.to_string()))
            .when("id > ?", filter.after)
            .tail("ORDER BY id", filter.limit);
        self.all(&query.sql, &query.params(), registration_row)
    }

    fn get_key_change(&self, id: Uuid) -> Result<Option<KeyChangeRequest>> {
        self.one(&format!("SELECT {KEY_CHANGE_COLUMNS} FROM key_changes WHERE id = $1"), &[&id], key_change_row)
    }

    fn list_key_changes(&self, filter: &RequestFilter) -> Result<Vec<KeyChangeRequest>> {
        let query = Select::from(format!("SELECT {KEY_CHANGE_COLUMNS} FROM key_changes"))
            .when("status = ?", filter.status.map(|s| s.as_str().to_owned()))
            .when("username = ?", filter.username.as_ref().map(|u| u.to_string()))
            .when("id > ?", filter.after)
            .tail("ORDER BY id", filter.limit);
        self.all(&query.sql, &query.params(), key_change_row)
    }

    fn quota_override(&self, owner: &Username) -> Result<Option<QuotaOverride>> {
        self.one(
            "SELECT max_vms, max_clusters, max_nodes_per_cluster, max_ips, max_vcpus, max_memory_mb, max_disk_gb FROM quota_overrides WHERE owner = $1",
            &[&owner.as_str()],
            quota_override_row,
        )
    }

    fn usage(&self, owner: &Username) -> Result<Usage> {
        // One round trip; a cluster's nodes count with the VMs.
        let [vms, vcpus, memory_mb, disk_gb, clusters, cluster_vcpus, cluster_memory_mb, cluster_disk_gb, ips] = self
            .one(
                "SELECT v.n, v.cpu, v.memory, v.disk, c.n, c.cpu, c.memory, c.disk, (SELECT count(*) FROM leases WHERE owner = $1)
                 FROM (SELECT count(*) AS n, coalesce(sum(cpu), 0)::bigint AS cpu, coalesce(sum(memory_mb), 0)::bigint AS memory,
                              coalesce(sum(disk_gb), 0)::bigint AS disk
                       FROM vms WHERE owner = $1 AND state <> 'deleted') v,
                      (SELECT count(*) AS n,
                              coalesce(sum(control_plane_count * control_plane_cpu + worker_count * worker_cpu), 0)::bigint AS cpu,
                              coalesce(sum(control_plane_count * control_plane_memory_mb + worker_count * worker_memory_mb), 0)::bigint AS memory,
                              coalesce(sum(control_plane_count * control_plane_disk_gb + worker_count * worker_disk_gb), 0)::bigint AS disk
                       FROM clusters WHERE owner = $1 AND state <> 'deleted') c",
                &[&owner.as_str()],
                counts::<9>,
            )?
            .unwrap_or_default();
        Ok(Usage {
            vms,
            clusters,
            vcpus: vcpus + cluster_vcpus,
            memory_mb: memory_mb + cluster_memory_mb,
            disk_gb: disk_gb + cluster_disk_gb,
            ips,
        })
    }
}

impl PgTx<'_> {
    fn write_user(&self, statement: &str, user: &User, missing: bool) -> Result<()> {
        let (fingerprint, uid) = (user.ssh_key.fingerprint(), user.uid.unwrap_or_default());
        let params: [Param<'_>; 10] = [
            &user.username.as_str(),
            &user.email.as_str(),
            &user.team,
            &user.ssh_key.as_str(),
            &fingerprint,
            &user.role.as_str(),
            &user.status.as_str(),
            &user.uid.map(i64::from),
            &user.created_at,
            &user.updated_at,
        ];
        let values: super::Values<'_> = &[
            ("username", &user.username),
            ("key_fingerprint", &fingerprint),
            ("uid", &uid),
            ("role", &user.role),
            ("status", &user.status),
        ];
        if missing {
            self.insert(statement, &params, "users", values)
        } else {
            self.update(statement, &params, "user", &user.username, "users", values)
        }
    }

    fn write_registration(&self, statement: &str, r: &RegistrationRequest, missing: bool) -> Result<()> {
        let params: [Param<'_>; 10] = [
            &r.id,
            &r.username.as_str(),
            &r.email.as_str(),
            &r.team,
            &r.ssh_key.as_str(),
            &r.status.as_str(),
            &r.created_at,
            &r.processed_by,
            &r.processed_at,
            &r.reject_reason,
        ];
        let values: super::Values<'_> =
            &[("id", &r.id), ("username", &r.username), ("email", &r.email), ("status", &r.status)];
        if missing {
            self.insert(statement, &params, "registrations", values)
        } else {
            self.update(statement, &params, "registration", r.id, "registrations", values)
        }
    }

    fn write_key_change(&self, statement: &str, r: &KeyChangeRequest, missing: bool) -> Result<()> {
        let params: [Param<'_>; 10] = [
            &r.id,
            &r.username.as_str(),
            &r.email.as_str(),
            &r.new_ssh_key.as_str(),
            &r.reason,
            &r.status.as_str(),
            &r.created_at,
            &r.processed_by,
            &r.processed_at,
            &r.reject_reason,
        ];
        let values: super::Values<'_> = &[("id", &r.id), ("username", &r.username), ("status", &r.status)];
        if missing {
            self.insert(statement, &params, "key_changes", values)
        } else {
            self.update(statement, &params, "key change", r.id, "key_changes", values)
        }
    }
}

impl AccountsTx for PgTx<'_> {
    fn insert_user(&mut self, user: &User) -> Result<()> {
        self.write_user(
            "INSERT INTO users (username, email, team, ssh_key, key_fingerprint, role, status, uid, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            user,
            true,
        )
    }

    fn update_user(&mut self, user: &User) -> Result<()> {
        self.write_user(
            "UPDATE users SET email = $2, team = $3, ssh_key = $4, key_fingerprint = $5, role = $6, status = $7, uid = $8, created_at = $9, updated_at = $10 WHERE username = $1",
            user,
            false,
        )
    }

    fn delete_user(&mut self, username: &Username) -> Result<()> {
        if self.get_user(username)?.is_none() {
            return Err(Error::not_found("user", username));
        }
        let holds = self
            .one(
                "SELECT (SELECT count(*) FROM vms WHERE owner = $1 AND state <> 'deleted') + (SELECT count(*) FROM clusters WHERE owner = $1 AND state <> 'deleted')
                      + (SELECT count(*) FROM ip_blocks WHERE owner = $1) + (SELECT count(*) FROM leases WHERE owner = $1)",
                &[&username.as_str()],
                counts::<1>,
            )?
            .unwrap_or_default();
        if holds[0] > 0 {
            return Err(Error::Conflict(format!("user {username} still owns VMs, clusters or addresses")));
        }
        // Tokens and the quota override go with it (ON DELETE CASCADE).
        self.exec("DELETE FROM users WHERE username = $1", &[&username.as_str()])?;
        Ok(())
    }

    fn insert_registration(&mut self, r: &RegistrationRequest) -> Result<()> {
        self.write_registration(
            &format!(
                "INSERT INTO registrations ({REGISTRATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ),
            r,
            true,
        )
    }

    fn update_registration(&mut self, r: &RegistrationRequest) -> Result<()> {
        self.write_registration(
            "UPDATE registrations SET username = $2, email = $3, team = $4, ssh_key = $5, status = $6, created_at = $7, processed_by = $8, processed_at = $9, reject_reason = $10 WHERE id = $1",
            r,
            false,
        )
    }

    fn insert_key_change(&mut self, r: &KeyChangeRequest) -> Result<()> {
        self.write_key_change(
            &format!("INSERT INTO key_changes ({KEY_CHANGE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
            r,
            true,
        )
    }

    fn update_key_change(&mut self, r: &KeyChangeRequest) -> Result<()> {
        self.write_key_change(
            "UPDATE key_changes SET username = $2, email = $3, new_ssh_key = $4, reason = $5, status = $6, created_at = $7, processed_by = $8, processed_at = $9, reject_reason = $10 WHERE id = $1",
            r,
            false,
        )
    }

    fn set_quota_override(&mut self, owner: &Username, quota: Option<&QuotaOverride>) -> Result<()> {
        if self.get_user(owner)?.is_none() {
            return Err(Error::not_found("user", owner));
        }
        match quota {
            None => {
                self.exec("DELETE FROM quota_overrides WHERE owner = $1", &[&owner.as_str()])?;
                Ok(())
            }
            Some(q) => {
                let v = |value: Option<u64>| value.map(int);
                self.insert(
                    "INSERT INTO quota_overrides (owner, max_vms, max_clusters, max_nodes_per_cluster, max_ips, max_vcpus, max_memory_mb, max_disk_gb) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (owner) DO UPDATE SET max_vms = $2, max_clusters = $3, max_nodes_per_cluster = $4, max_ips = $5, max_vcpus = $6, max_memory_mb = $7, max_disk_gb = $8",
                    &[&owner.as_str(), &v(q.max_vms), &v(q.max_clusters), &v(q.max_nodes_per_cluster), &v(q.max_ips), &v(q.max_vcpus), &v(q.max_memory_mb), &v(q.max_disk_gb)],
                    "quota_overrides",
                    &[("owner", owner)],
                )
            }
        }
    }
}
