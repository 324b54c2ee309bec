//! Pages written straight into a buffer.
//!
//! A page of VMs is the API's busiest answer. Through serde, every key and every value of every
//! VM passes the JSON writer's escaping scan byte by byte, and the times go through chrono's
//! field getters; in a profile of the list, that was a third of the server's work. [`WriteJson`]
//! writes a view's JSON itself: the keys are constants, identifiers, numbers, times and
//! addresses need no escaping, and a text field is copied whole unless it holds a character
//! that must be escaped (then serde_json writes it). The bytes are exactly serde's: the tests
//! compare the two on edge cases and on generated views.

use std::net::Ipv4Addr;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::text::{write_ipv4, write_time};
use crate::{Page, VmView};

/// A view that can write its own JSON, byte for byte what `serde_json` writes for it.
pub trait WriteJson: Serialize {
    /// Appends the view's JSON to `out`. By default through serde.
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        serde_json::to_writer(out, self)
    }
}

/// Appends `page` as JSON to `out`: `{"items":[...],"next":...}`, as serde writes a [`Page`].
pub fn write_page<T: WriteJson>(page: &Page<T>, out: &mut Vec<u8>) -> serde_json::Result<()> {
    out.extend_from_slice(b"{\"items\":[");
    for (index, item) in page.items.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        item.write_json(out)?;
    }
    out.extend_from_slice(b"],\"next\":");
    match &page.next {
        Some(next) => text(out, next)?,
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
    Ok(())
}

// The other paged views: through serde.
impl WriteJson for crate::ClusterView {}
impl WriteJson for crate::OperationView {}
impl WriteJson for crate::RegistrationView {}
impl WriteJson for crate::KeyChangeView {}
impl WriteJson for crate::OutboxView {}
impl WriteJson for crate::AuditView {}
impl WriteJson for crate::NetworkView {}

impl WriteJson for VmView {
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        // The fields in the order of the struct, which is the order serde writes them in.
        out.extend_from_slice(b"{\"id\":\"");
        out.extend_from_slice(self.id.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()).as_bytes());
        out.extend_from_slice(b"\",\"name\":");
        text(out, &self.name)?;
        out.extend_from_slice(b",\"owner\":");
        text(out, &self.owner)?;
        out.extend_from_slice(b",\"os\":");
        text(out, &self.os)?;
        out.extend_from_slice(b",\"spec\":");
        text(out, &self.spec)?;
        out.extend_from_slice(b",\"cpu\":");
        number(out, u64::from(self.cpu));
        out.extend_from_slice(b",\"memory_mb\":");
        number(out, self.memory_mb);
        out.extend_from_slice(b",\"disk_gb\":");
        number(out, self.disk_gb);
        out.extend_from_slice(b",\"ip\":");
        address(out, self.ip.as_ref());
        out.extend_from_slice(b",\"state\":");
        text(out, &self.state)?;
        out.extend_from_slice(b",\"reason\":");
        match &self.reason {
            Some(reason) => text(out, reason)?,
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"created_at\":");
        time(out, &self.created_at)?;
        out.extend_from_slice(b",\"updated_at\":");
        time(out, &self.updated_at)?;
        out.push(b'}');
        Ok(())
    }
}

/// A JSON string: copied whole when nothing in it needs escaping (what serde_json escapes is
/// exactly the quote, the backslash and the control characters below U+0020).
fn text(out: &mut Vec<u8>, value: &str) -> serde_json::Result<()> {
    if value.bytes().all(|byte| byte >= 0x20 && byte != b'"' && byte != b'\\') {
        out.reserve(value.len() + 2);
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(out, value)
    }
}

fn number(out: &mut Vec<u8>, value: u64) {
    let mut buffer = [0u8; 20];
    let mut at = buffer.len();
    let mut rest = value;
    loop {
        at -= 1;
        buffer[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&buffer[at..]);
}

fn address(out: &mut Vec<u8>, address: Option<&Ipv4Addr>) {
    match address {
        Some(address) => {
            let mut buffer = [0u8; 15];
            let len = write_ipv4(address, &mut buffer);
            out.push(b'"');
            out.extend_from_slice(&buffer[..len]);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

fn time(out: &mut Vec<u8>, at: &DateTime<Utc>) -> serde_json::Result<()> {
    let mut buffer = [0u8; 32];
    match write_time(at, &mut buffer) {
        Some(len) => {
            out.push(b'"');
            out.extend_from_slice(&buffer[..len]);
            out.push(b'"');
            Ok(())
        }
        // Years outside 0-9999 and leap seconds: chrono's own writing, as serde does.
        None => serde_json::to_writer(out, at),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;

    fn ours<T: WriteJson>(page: &Page<T>) -> String {
        let mut out = Vec::new();
        write_page(page, &mut out).expect("written");
        String::from_utf8(out).expect("text")
    }

    fn vm(name: &str, reason: Option<&str>, ip: Option<Ipv4Addr>, at: DateTime<Utc>) -> VmView {
        VmView {
            id: Uuid::from_u128(0x0192_3b4c_5d6e_7f80_91a2_b3c4_d5e6_f708),
            name: name.to_owned(),
            owner: "alice".to_owned(),
            os: "ubuntu-24.04".to_owned(),
            spec: "small".to_owned(),
            cpu: 2,
            memory_mb: 4096,
            disk_gb: 50,
            ip,
            state: "running".to_owned(),
            reason: reason.map(str::to_owned),
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn a_page_of_vms_is_written_as_serde_writes_it() {
        let at = Utc.with_ymd_and_hms(2026, 12, 1, 11, 25, 0).unwrap();
        let pages = [
            Page { items: vec![], next: None },
            Page { items: vec![vm("web-1", None, Some(Ipv4Addr::new(10, 254, 0, 32)), at)], next: None },
            Page {
                items: vec![
                    vm("web-1", Some("quota \"x\"\n\\ \u{1}\u{7f} ü 😀"), None, at),
                    vm(
                        "db",
                        Some(""),
                        Some(Ipv4Addr::UNSPECIFIED),
                        Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
                    ),
                    vm("x", None, Some(Ipv4Addr::BROADCAST), Utc.with_ymd_and_hms(-1, 6, 15, 12, 30, 30).unwrap()),
                ],
                next: Some("0192-\"next\"".to_owned()),
            },
        ];
        for page in pages {
            assert_eq!(ours(&page), serde_json::to_string(&page).expect("serde"));
        }
    }

    fn any_vm() -> impl Strategy<Value = VmView> {
        (
            any::<u128>(),
            (any::<String>(), any::<String>(), any::<String>(), any::<String>(), any::<String>()),
            (any::<u32>(), any::<u64>(), any::<u64>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<String>()),
            (-8_000_000_000_000_000_000i64..8_000_000_000_000_000_000i64, any::<i64>()),
        )
            .prop_map(
                |(id, (name, owner, os, spec, state), (cpu, memory_mb, disk_gb), ip, reason, (micros, nanos))| VmView {
                    id: Uuid::from_u128(id),
                    name,
                    owner,
                    os,
                    spec,
                    cpu,
                    memory_mb,
                    disk_gb,
                    ip: ip.map(Ipv4Addr::from),
                    state,
                    reason,
                    created_at: DateTime::from_timestamp_micros(micros).expect("in range"),
                    updated_at: DateTime::from_timestamp_nanos(nanos),
                },
            )
    }

    proptest! {
        #[test]
        fn any_page_of_vms_is_written_as_serde_writes_it(
            items in proptest::collection::vec(any_vm(), 0..4),
            next in proptest::option::of(any::<String>()),
        ) {
            let page = Page { items, next };
            prop_assert_eq!(ours(&page), serde_json::to_string(&page).expect("serde"));
        }
    }
}
