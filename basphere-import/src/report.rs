//! The import's report: what is created, what was already there, what conflicts, and what is
//! broken in the source with what the import does about it.

use std::fmt::Write;

use crate::Plan;

impl Plan {
    /// The report, for a dry run (`dry_run`) or for what a real run wrote.
    pub fn report(&self, root: &str, dry_run: bool) -> String {
        let mut out = String::new();
        let verb = if dry_run {
            "would create"
        } else if self.conflicts.is_empty() {
            "created"
        } else {
            "would create"
        };
        let _ = writeln!(
            out,
            "Import of the original Basphere at {root}{}",
            if dry_run { " (dry run: nothing written)" } else { "" }
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "{}:", capitalised(verb));
        let named: [(&str, Vec<String>); 8] = [
            (
                "accounts",
                self.users
                    .iter()
                    .map(|u| match u.uid {
                        Some(uid) => format!("{} (uid {uid})", u.username),
                        None => u.username.to_string(),
                    })
                    .collect(),
            ),
            (
                "quota overrides",
                self.quota_overrides
                    .iter()
                    .map(|(u, q)| format!("{u} max_clusters={}", q.max_clusters.unwrap_or_default()))
                    .collect(),
            ),
            ("registrations", self.registrations.iter().map(|r| format!("{} ({})", r.username, r.status)).collect()),
            ("key changes", self.key_changes.iter().map(|r| format!("{} ({})", r.username, r.status)).collect()),
            (
                "ip blocks",
                self.blocks
                    .iter()
                    .map(|b| format!("{}/{} {}", b.start, 32 - b.size.trailing_zeros(), b.owner))
                    .collect(),
            ),
            (
                "vms",
                self.vms
                    .iter()
                    .map(|vm| {
                        format!(
                            "{}/{} {}{}",
                            vm.owner,
                            vm.name,
                            vm.state,
                            vm.ip.map(|ip| format!(" {ip}")).unwrap_or_default()
                        )
                    })
                    .collect(),
            ),
            ("clusters", self.clusters.iter().map(|c| format!("{}/{} {}", c.owner, c.name, c.state)).collect()),
            ("leases", self.leases.iter().map(|l| format!("{} {}", l.address, l.resource.name)).collect()),
        ];
        for (kind, names) in named {
            let _ = writeln!(
                out,
                "  {:<16} {:>4}{}",
                kind,
                names.len(),
                if names.is_empty() { String::new() } else { format!("  {}", names.join(", ")) }
            );
        }
        if !self.unchanged.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(out, "Already in Basphere from an earlier import (left as they are):");
            for (kind, n) in &self.unchanged {
                let _ = writeln!(out, "  {kind:<16} {n:>4}");
            }
        }
        let _ = writeln!(out);
        if self.conflicts.is_empty() {
            let _ = writeln!(out, "Conflicts: none");
        } else {
            let _ = writeln!(out, "Conflicts ({}): nothing is imported until they are resolved", self.conflicts.len());
            for fault in &self.conflicts {
                let _ = writeln!(out, "  - {}: {}", fault.subject, fault.what);
            }
        }
        let _ = writeln!(out);
        if self.faults.is_empty() {
            let _ = writeln!(out, "Faults in the source: none");
        } else {
            let _ = writeln!(out, "Faults in the source ({}), and what the import does about each:", self.faults.len());
            for fault in &self.faults {
                let _ = writeln!(out, "  - {}: {}", fault.subject, fault.what);
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(out, "Notes:");
            for note in &self.notes {
                let _ = writeln!(out, "  - {note}");
            }
        }
        let _ = writeln!(out);
        let next = if !self.conflicts.is_empty() {
            "Nothing was written. Resolve the conflicts and run again."
        } else if dry_run {
            "Run again without --dry-run to import (all of it or nothing)."
        } else if self.is_empty() {
            "Nothing to do: everything importable is already in Basphere."
        } else {
            "Done. The server's reconciliation compares the imported VMs with vSphere (now: `basphere-admin reconcile --now`)."
        };
        let _ = writeln!(out, "{next}");
        out
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().collect::<String>() + chars.as_str()).unwrap_or_default()
}
