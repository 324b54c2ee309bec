//! Planning accounts and their requests, as the original kept them.

use super::*;

impl Plan {
    /// Plans the accounts; returns every owner whose records can be imported (planned now, or
    /// already in the store from an earlier run).
    pub(super) fn users(
        &mut self,
        original: &Original,
        approved: &BTreeMap<String, RegistrationJson>,
        tx: &dyn StoreRead,
    ) -> Result<BTreeSet<String>> {
        let mut owners = BTreeSet::new();
        let mut fingerprints: BTreeMap<String, String> = BTreeMap::new();
        for source in &original.users {
            let file = original.rel(&source.file);
            let name = &source.name;
            let username = match Username::parse(name) {
                Ok(username) => username,
                Err(error) => {
                    self.fault(file, format!("names an account Basphere cannot accept ({error}); not imported"));
                    continue;
                }
            };
            let meta = source.metadata.as_ref();
            let request = approved.get(name.as_str());
            if meta.is_none() && request.is_some() {
                self.fault(
                    name.clone(),
                    "has no readable metadata.json: its email, team and creation time come from its approved registration",
                );
            }
            let email_text = meta
                .and_then(|m| m.email.as_deref())
                .and_then(non_empty)
                .or_else(|| request.and_then(|r| non_empty(&r.email)));
            let Some(email_text) = email_text else {
                self.fault(
                    name.clone(),
                    format!(
                        "has no email (the original's API approval left it empty) and no approved registration gives one; not imported: add \"email\" to {file} and run again"
                    ),
                );
                continue;
            };
            let email = match Email::parse(&email_text) {
                Ok(email) => email,
                Err(error) => {
                    self.fault(
                        name.clone(),
                        format!("{error}; not imported: correct \"email\" in {file} and run again"),
                    );
                    continue;
                }
            };
            let key_file = original.rel(&source.key_file);
            let from_login = source.authorized_key.as_deref().map(SshPublicKey::parse);
            let key = match from_login {
                Some(Ok(key)) => key,
                other => {
                    let from_request = request.map(|r| SshPublicKey::parse(r.public_key.trim()));
                    match (other, from_request) {
                        (Some(Err(error)), Some(Ok(key))) => {
                            self.fault(name.clone(), format!("the key in {key_file} is not accepted ({error}); the key of its approved registration is used"));
                            key
                        }
                        (None, Some(Ok(key))) => {
                            self.fault(
                                name.clone(),
                                format!("{key_file} is missing; the key of its approved registration is used"),
                            );
                            key
                        }
                        (Some(Err(error)), _) => {
                            self.fault(
                                name.clone(),
                                format!("the key in {key_file} is not accepted ({error}); not imported"),
                            );
                            continue;
                        }
                        _ => {
                            self.fault(
                                name.clone(),
                                format!("has no SSH key: neither {key_file} nor an approved registration holds one; not imported"),
                            );
                            continue;
                        }
                    }
                }
            };
            if let Some(first) = fingerprints.get(key.fingerprint()) {
                self.fault(
                    name.clone(),
                    format!(
                        "uses the same SSH key as {first}; in Basphere a key identifies one account, so {name} is not imported: give {name} its own key in {key_file} and run again"
                    ),
                );
                continue;
            }
            let created = meta
                .and_then(|m| m.created_at.as_deref())
                .and_then(parse_time)
                .or_else(|| request.and_then(|r| parse_time(&r.created_at)))
                .or_else(|| source.modified.map(DateTime::<Utc>::from))
                .unwrap_or_default();
            let team = meta
                .and_then(|m| m.team.as_deref())
                .and_then(non_empty)
                .or_else(|| request.and_then(|r| non_empty(&r.team)))
                .unwrap_or_default();
            let uid = original.passwd.get(name.as_str()).map(|entry| entry.uid);
            if uid.is_none() {
                self.notes.push(format!("{name} has no login in /etc/passwd: its account is imported without a uid"));
            }
            let user = User {
                username: username.clone(),
                email,
                team,
                ssh_key: key,
                role: Role::User,
                status: UserStatus::Active,
                uid,
                created_at: trunc(created),
                updated_at: trunc(created),
            };
            match tx.get_user(&username)? {
                Some(existing) => {
                    let same_person = (existing.uid.is_some() && existing.uid == user.uid)
                        || existing.ssh_key.fingerprint() == user.ssh_key.fingerprint()
                        || existing.email.matches(&user.email);
                    if !same_person {
                        self.conflict(
                            name.clone(),
                            "Basphere already has an account of this name with another uid, key and email; rename or remove one of them",
                        );
                        continue;
                    }
                    self.same("accounts");
                }
                None => {
                    if let Some(other) = uid.map(|uid| tx.user_by_uid(uid)).transpose()?.flatten() {
                        self.conflict(
                            name.clone(),
                            format!(
                                "its uid {} belongs to the Basphere account {}",
                                uid.unwrap_or_default(),
                                other.username
                            ),
                        );
                        continue;
                    }
                    if let Some(other) = tx.user_by_key_fingerprint(user.ssh_key.fingerprint())? {
                        self.conflict(
                            name.clone(),
                            format!("its SSH key is already the key of the Basphere account {}", other.username),
                        );
                        continue;
                    }
                    self.users.push(user.clone());
                }
            }
            fingerprints.insert(user.ssh_key.fingerprint().to_owned(), name.clone());
            owners.insert(name.clone());
            let max_clusters = meta.and_then(|m| m.max_clusters.as_ref()).and_then(|value| match value {
                serde_json::Value::Number(n) => n.as_u64(),
                serde_json::Value::String(s) => s.trim().parse().ok(),
                _ => None,
            });
            if let Some(max_clusters) = max_clusters {
                if tx.quota_override(&username)?.is_some() {
                    self.same("quota overrides");
                } else {
                    self.quota_overrides.push((
                        username,
                        QuotaOverride { max_clusters: Some(max_clusters), ..QuotaOverride::default() },
                    ));
                }
            }
        }
        Ok(owners)
    }

    /// Names that hold something in the original but have no user record.
    pub(super) fn users_without_records(&mut self, original: &Original, owners: &BTreeSet<String>) {
        let recorded: BTreeSet<&str> = original.users.iter().map(|u| u.name.as_str()).collect();
        let mut held: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for row in &original.allocations {
            held.entry(&row.user).or_default().push(format!("block {}", row.start));
        }
        for row in &original.leases {
            held.entry(&row.user).or_default().push(format!("lease {}", row.address));
        }
        for vm in &original.vms {
            held.entry(&vm.owner).or_default().push(format!("VM {}", vm.name));
        }
        for cluster in &original.clusters {
            held.entry(&cluster.owner).or_default().push(format!("cluster {}", cluster.name));
        }
        for member in &original.group_members {
            held.entry(member).or_default();
        }
        for (name, what) in held {
            if recorded.contains(name) {
                if !owners.contains(name) && !what.is_empty() {
                    self.fault(
                        name.to_owned(),
                        format!("is not imported, so neither is what it holds: {}", what.join(", ")),
                    );
                }
                continue;
            }
            let holds =
                if what.is_empty() { "a login in the basphere-users group".to_owned() } else { what.join(", ") };
            self.fault(
                name.to_owned(),
                format!(
                    "has no /{}/users/{name}/metadata.json (a user without a record) but holds {holds}; not imported",
                    crate::source::DATA_DIR
                ),
            );
        }
    }

    // ---- requests ------------------------------------------------------------------------------

    pub(super) fn registrations(
        &mut self,
        original: &Original,
        owners: &BTreeSet<String>,
        tx: &dyn StoreRead,
    ) -> Result<()> {
        let mut requests: Vec<_> = original.registrations.iter().collect();
        requests.sort_by_key(|(_, json)| (parse_time(&json.created_at), json.id.clone()));
        let mut pending_names = BTreeSet::new();
        let pending_in_store =
            tx.list_registrations(&RequestFilter { status: Some(RequestStatus::Pending), ..RequestFilter::default() })?;
        for (file, json) in requests {
            let subject = original.rel(file);
            let Some(status) = request_status(&json.status) else {
                self.fault(
                    subject,
                    format!("has status {:?}, not pending/approved/rejected; not imported", json.status),
                );
                continue;
            };
            let parsed = (|| {
                Ok::<_, basphere_core::Error>((
                    Username::parse(json.username.trim())?,
                    Email::parse(json.email.trim())?,
                    SshPublicKey::parse(json.public_key.trim())?,
                ))
            })();
            let (username, email, key) = match parsed {
                Ok(fields) => fields,
                Err(error) => {
                    self.fault(subject, format!("{error}; not imported"));
                    continue;
                }
            };
            let created = parse_time(&json.created_at);
            let id = stable_id(created, &format!("registration:{}", json.id));
            if tx.get_registration(id)?.is_some() {
                self.same("registrations");
                continue;
            }
            if status == RequestStatus::Pending {
                if owners.contains(username.as_str()) || tx.get_user(&username)?.is_some() {
                    self.fault(subject, format!("is pending, but {username} is already an account; not imported"));
                    continue;
                }
                let key = (username.to_string(), email.as_str().to_lowercase());
                let in_store = pending_in_store.iter().any(|r| r.username.as_str() == key.0 || r.email.matches(&email));
                if in_store || pending_names.iter().any(|(u, e): &(String, String)| *u == key.0 || *e == key.1) {
                    self.fault(subject, format!("is a second pending request for {username} or {email}; not imported"));
                    continue;
                }
                pending_names.insert(key);
            }
            self.registrations.push(RegistrationRequest {
                id,
                username,
                email,
                team: json.team.trim().to_owned(),
                ssh_key: key,
                status,
                created_at: trunc(created.unwrap_or_default()),
                processed_by: non_empty(&json.processed_by),
                processed_at: parse_time(&json.processed_at).map(trunc),
                reject_reason: non_empty(&json.reject_reason),
            });
        }
        Ok(())
    }

    pub(super) fn key_changes(
        &mut self,
        original: &Original,
        owners: &BTreeSet<String>,
        tx: &dyn StoreRead,
    ) -> Result<()> {
        let mut requests: Vec<_> = original.key_changes.iter().collect();
        requests.sort_by_key(|(_, json)| (parse_time(&json.created_at), json.id.clone()));
        let mut pending_for = BTreeSet::new();
        for (file, json) in requests {
            let subject = original.rel(file);
            let Some(status) = request_status(&json.status) else {
                self.fault(
                    subject,
                    format!("has status {:?}, not pending/approved/rejected; not imported", json.status),
                );
                continue;
            };
            let parsed = (|| {
                Ok::<_, basphere_core::Error>((
                    Username::parse(json.username.trim())?,
                    Email::parse(json.email.trim())?,
                    SshPublicKey::parse(json.new_public_key.trim())?,
                ))
            })();
            let (username, email, key) = match parsed {
                Ok(fields) => fields,
                Err(error) => {
                    self.fault(subject, format!("{error}; not imported"));
                    continue;
                }
            };
            if !owners.contains(username.as_str()) {
                self.fault(subject, format!("is for {username}, who is not imported; not imported"));
                continue;
            }
            let created = parse_time(&json.created_at);
            let id = stable_id(created, &format!("key-change:{}", json.id));
            if tx.get_key_change(id)?.is_some() {
                self.same("key changes");
                continue;
            }
            if status == RequestStatus::Pending {
                let in_store = !tx
                    .list_key_changes(&RequestFilter {
                        status: Some(RequestStatus::Pending),
                        username: Some(username.clone()),
                        ..RequestFilter::default()
                    })?
                    .is_empty();
                if in_store || !pending_for.insert(username.to_string()) {
                    self.fault(subject, format!("is a second pending key change for {username}; not imported"));
                    continue;
                }
            }
            self.key_changes.push(KeyChangeRequest {
                id,
                username,
                email,
                new_ssh_key: key,
                reason: json.reason.trim().to_owned(),
                status,
                created_at: trunc(created.unwrap_or_default()),
                processed_by: non_empty(&json.processed_by),
                processed_at: parse_time(&json.processed_at).map(trunc),
                reject_reason: non_empty(&json.reject_reason),
            });
        }
        Ok(())
    }
}
