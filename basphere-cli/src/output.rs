//! Output: JSON and YAML print the server's documents unchanged (that is the contract); tables
//! are for people, written against the API's wire types. Data goes to stdout, messages to stderr.

use std::io::IsTerminal;

use basphere_api::{OperationView, QuotaView, VmView};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::ValueEnum;
use serde_json::Value;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
    Yaml,
}

/// Prints the server's `document` as JSON or YAML, or calls `table` for the table format.
pub fn emit(format: Format, document: &Value, table: impl FnOnce()) {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(document).unwrap_or_default()),
        Format::Yaml => print!("{}", serde_yaml::to_string(document).unwrap_or_default()),
        Format::Table => table(),
    }
}

/// A message for the person at the terminal (stderr, never mixed with data).
pub fn note(message: impl AsRef<str>) {
    eprintln!("{}", message.as_ref());
}

pub fn is_terminal() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// A time as the server writes it (RFC 3339, UTC).
pub fn time(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// An optional value for a cell: `-` when absent.
pub fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| value.to_string())
}

/// Prints rows under headers, columns as wide as their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (index, value) in row.iter().enumerate() {
            widths[index] = widths[index].max(value.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| if i + 1 == cells.len() { c.clone() } else { format!("{c:<width$}", width = widths[i]) })
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row.clone());
    }
}

pub fn vm_rows(vms: &[VmView], with_owner: bool, with_created: bool) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let mut headers = vec!["NAME", "IP", "OS", "SPEC", "STATE"];
    if with_owner {
        headers.insert(0, "OWNER");
    }
    if with_created {
        headers.push("CREATED");
    }
    let rows = vms
        .iter()
        .map(|vm| {
            let mut row = vec![vm.name.clone(), or_dash(vm.ip), vm.os.clone(), vm.spec.clone(), vm.state.clone()];
            if with_owner {
                row.insert(0, vm.owner.clone());
            }
            if with_created {
                row.push(time(&vm.created_at).chars().take(19).collect::<String>().replace('T', " "));
            }
            row
        })
        .collect();
    (headers, rows)
}

pub fn vm_table(vms: &[VmView], with_owner: bool, with_created: bool) {
    let (headers, rows) = vm_rows(vms, with_owner, with_created);
    table(&headers, &rows);
}

/// `key: value` lines, the values aligned after the longest key.
pub fn fields(fields: &[(&str, String)]) {
    let width = fields.iter().map(|(key, _)| key.len() + 1).max().unwrap_or(0);
    for (key, value) in fields {
        println!("{:<width$} {value}", format!("{key}:"));
    }
}

/// A table, or `empty` when there are no rows.
pub fn table_or(empty: &str, headers: &[&str], rows: &[Vec<String>]) {
    if rows.is_empty() {
        println!("{empty}");
    } else {
        table(headers, rows);
    }
}

pub fn vm_detail(vm: &VmView) {
    fields(&[
        ("name", vm.name.clone()),
        ("owner", vm.owner.clone()),
        ("state", vm.state.clone()),
        ("ip", or_dash(vm.ip)),
        ("os", vm.os.clone()),
        ("spec", vm.spec.clone()),
        ("cpu", vm.cpu.to_string()),
        ("memory_mb", vm.memory_mb.to_string()),
        ("disk_gb", vm.disk_gb.to_string()),
        ("reason", or_dash(vm.reason.as_deref())),
        ("id", vm.id.to_string()),
        ("created_at", time(&vm.created_at)),
        ("updated_at", time(&vm.updated_at)),
    ]);
}

pub fn operation_detail(op: &OperationView) {
    println!("operation {}  {}  {} {}", op.id, op.state, op.kind, op.resource.name);
    for step in &op.steps {
        println!("  [{}] {}", step.state, step.name);
    }
    if let Some(error) = &op.error {
        println!("error: {error}");
    }
    if !op.log_tail.is_empty() {
        println!("log:");
        for line in &op.log_tail {
            println!("  {line}");
        }
    }
}

/// A progress bar of `used` out of `limit`, coloured by how full it is.
pub fn bar(used: u64, limit: u64) -> String {
    let cells = 30usize;
    let filled = ((used.min(limit) * cells as u64).checked_div(limit).unwrap_or(cells as u64)) as usize;
    let percent = (used * 100).checked_div(limit).unwrap_or(100);
    let bar = format!("{}{}", "█".repeat(filled), "░".repeat(cells - filled));
    if std::io::stdout().is_terminal() {
        let colour = if percent >= 80 {
            31
        } else if percent >= 60 {
            33
        } else {
            32
        };
        format!("\x1b[{colour}m[{bar}]\x1b[0m {used}/{limit} ({percent}%)")
    } else {
        format!("[{bar}] {used}/{limit} ({percent}%)")
    }
}

pub fn quota_table(quota: &QuotaView) {
    let (used, limits) = (&quota.usage, &quota.limits);
    for (label, used, limit, unit) in [
        ("VMs", used.vms, limits.vms, ""),
        ("IPs", used.ips, limits.ips, ""),
        ("vCPUs", used.vcpus, limits.vcpus, ""),
        ("Memory", used.memory_mb / 1024, limits.memory_mb / 1024, " GB"),
        ("Disk", used.disk_gb, limits.disk_gb, " GB"),
        ("Clusters", used.clusters, limits.clusters, ""),
    ] {
        println!("{:<9} {}{unit}", label, bar(used, limit));
    }
}
