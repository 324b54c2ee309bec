//! Output: JSON and YAML print the server's documents unchanged (that is the contract); tables
//! are for people. Data goes to stdout, messages to stderr.

use std::io::IsTerminal;

use clap::ValueEnum;
use serde_json::Value;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
    Yaml,
}

/// Prints `value` as JSON or YAML, or calls `table` for the table format.
pub fn emit(format: Format, value: &Value, table: impl FnOnce(&Value)) {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(value).unwrap_or_default()),
        Format::Yaml => print!("{}", serde_yaml::to_string(value).unwrap_or_default()),
        Format::Table => table(value),
    }
}

/// A message for the person at the terminal (stderr, never mixed with data).
pub fn note(message: impl AsRef<str>) {
    eprintln!("{}", message.as_ref());
}

pub fn is_terminal() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
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

pub fn vm_rows(vms: &[Value], with_owner: bool, with_created: bool) -> (Vec<&'static str>, Vec<Vec<String>>) {
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
            let mut row =
                vec![cell(&vm["name"]), cell(&vm["ip"]), cell(&vm["os"]), cell(&vm["spec"]), cell(&vm["state"])];
            if with_owner {
                row.insert(0, cell(&vm["owner"]));
            }
            if with_created {
                row.push(cell(&vm["created_at"]).chars().take(19).collect::<String>().replace('T', " "));
            }
            row
        })
        .collect();
    (headers, rows)
}

pub fn vm_table(vms: &[Value], with_owner: bool, with_created: bool) {
    let (headers, rows) = vm_rows(vms, with_owner, with_created);
    table(&headers, &rows);
}

pub fn vm_detail(vm: &Value) {
    for key in [
        "name",
        "owner",
        "state",
        "ip",
        "os",
        "spec",
        "cpu",
        "memory_mb",
        "disk_gb",
        "reason",
        "id",
        "created_at",
        "updated_at",
    ] {
        println!("{:<11} {}", format!("{key}:"), cell(&vm[key]));
    }
}

pub fn operation_detail(op: &Value) {
    println!(
        "operation {}  {}  {} {}",
        cell(&op["id"]),
        cell(&op["state"]),
        cell(&op["kind"]),
        cell(&op["resource"]["name"])
    );
    if let Some(steps) = op["steps"].as_array() {
        for step in steps {
            println!("  [{}] {}", cell(&step["state"]), cell(&step["name"]));
        }
    }
    if !op["error"].is_null() {
        println!("error: {}", cell(&op["error"]));
    }
    if let Some(lines) = op["log_tail"].as_array() {
        if !lines.is_empty() {
            println!("log:");
            for line in lines {
                println!("  {}", cell(line));
            }
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

pub fn quota_table(quota: &Value) {
    let n = |section: &str, key: &str| quota[section][key].as_u64().unwrap_or(0);
    for (label, key, divide, unit) in [
        ("VMs", "vms", 1, ""),
        ("IPs", "ips", 1, ""),
        ("vCPUs", "vcpus", 1, ""),
        ("Memory", "memory_mb", 1024, " GB"),
        ("Disk", "disk_gb", 1, " GB"),
        ("Clusters", "clusters", 1, ""),
    ] {
        println!("{:<9} {}{unit}", label, bar(n("usage", key) / divide, n("limits", key) / divide));
    }
}
