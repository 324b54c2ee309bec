//! Blocks and leases. Addresses are integers, so a block's leases are an index range scan.

use std::net::Ipv4Addr;

use basphere_core::model::*;
use basphere_core::store::{IpamRead, IpamTx};
use basphere_core::validate::Username;
use basphere_core::{Error, Result};
use rusqlite::{params, OptionalExtension};
use uuid::Uuid;

use super::{ip, Select, SqlTx};
use crate::rows::*;
use crate::sql;

const BLOCK_COLUMNS: &str = "start, pool, size, owner, allocated_at";
/// The columns of a lease as `decode::lease` reads them: the flat pools' scope ('') as null.
const LEASE_COLUMNS: &str =
    "address, pool, owner, resource_kind, resource_id, resource_name, state, created_at, nullif(network, '')";
const LEASE_INSERT: &str =
    "INSERT INTO leases (address, pool, owner, resource_kind, resource_id, resource_name, state, created_at, network) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// A lease's scope as stored: '' for the flat pools, else the network's id.
fn scope(network: Option<Uuid>) -> String {
    network.map(|id| id.to_string()).unwrap_or_default()
}

impl IpamRead for SqlTx<'_> {
    fn list_blocks(&self, pool: Option<&str>) -> Result<Vec<IpBlock>> {
        let (query, values) = Select::from(format!("SELECT {BLOCK_COLUMNS} FROM ip_blocks"))
            .when("pool = ?", pool.map(str::to_owned))
            .tail("ORDER BY start", None);
        self.all(&query, rusqlite::params_from_iter(values), block_row)
    }

    fn blocks_of(&self, owner: &Username) -> Result<Vec<IpBlock>> {
        self.all(
            &format!("SELECT {BLOCK_COLUMNS} FROM ip_blocks WHERE owner = ?1 ORDER BY start"),
            [owner.as_str()],
            block_row,
        )
    }

    fn get_lease(&self, network: Option<Uuid>, address: Ipv4Addr) -> Result<Option<Lease>> {
        self.one(
            &format!("SELECT {LEASE_COLUMNS} FROM leases WHERE network = ?1 AND address = ?2"),
            params![scope(network), ip(address)],
            lease_row,
        )
    }

    fn list_leases(&self, owner: Option<&Username>) -> Result<Vec<Lease>> {
        let (query, values) = Select::from(format!("SELECT {LEASE_COLUMNS} FROM leases"))
            .when("owner = ?", owner.map(|o| o.to_string()))
            .tail("ORDER BY network, address", None);
        self.all(&query, rusqlite::params_from_iter(values), lease_row)
    }

    fn leases_in_network(&self, network: Uuid) -> Result<Vec<Lease>> {
        self.all(
            &format!("SELECT {LEASE_COLUMNS} FROM leases WHERE network = ?1 ORDER BY address"),
            [network.to_string()],
            lease_row,
        )
    }

    fn leases_of_resource(&self, resource: Uuid) -> Result<Vec<Lease>> {
        self.all(
            &format!("SELECT {LEASE_COLUMNS} FROM leases WHERE resource_id = ?1 ORDER BY network, address"),
            [resource.to_string()],
            lease_row,
        )
    }

    fn occupancy(&self, block: &IpBlock) -> Result<Occupancy> {
        let start = u32::from(block.start);
        let mut statement = self
            .conn
            .prepare_cached("SELECT address FROM leases WHERE network = '' AND address BETWEEN ?1 AND ?2")
            .map_err(sql)?;
        let mut rows = statement.query([ip(block.start), ip(block.end())]).map_err(sql)?;
        let mut occupancy = Occupancy::new(block.size);
        while let Some(row) = rows.next().map_err(sql)? {
            let address: i64 = row.get(0).map_err(sql)?;
            occupancy.set(address as u32 - start);
        }
        Ok(occupancy)
    }
}

impl IpamTx for SqlTx<'_> {
    fn insert_block(&mut self, block: &IpBlock) -> Result<()> {
        let (start, last) = (ip(block.start), ip(block.end()));
        // Overlap is not a constraint SQLite can state: the nearest block below the new one's
        // end is the only one that can overlap it.
        let overlapping = self.one(
            &format!("SELECT {BLOCK_COLUMNS}, last FROM ip_blocks WHERE start <= ?1 ORDER BY start DESC LIMIT 1"),
            [last],
            |row| Ok((block_row(row)?, row.get::<_, i64>(5).map_err(sql)?)),
        )?;
        if let Some((other, _)) = overlapping.filter(|(_, other_last)| *other_last >= start) {
            return Err(Error::Conflict(format!(
                "block {}/{} overlaps the block at {} of {}",
                block.start, block.size, other.start, other.owner
            )));
        }
        self.insert(
            "INSERT INTO ip_blocks (start, last, pool, size, owner, allocated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![start, last, block.pool, block.size, block.owner.as_str(), micros(block.allocated_at)],
            "ip_blocks",
            &[("start", &block.start), ("owner", &block.owner), ("size", &block.size)],
        )
    }

    fn delete_block(&mut self, start: Ipv4Addr) -> Result<()> {
        let last: Option<i64> = self
            .conn
            .query_row("SELECT last FROM ip_blocks WHERE start = ?1", [ip(start)], |row| row.get(0))
            .optional()
            .map_err(sql)?;
        let Some(last) = last else {
            return Err(Error::not_found("block", start));
        };
        let leased: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM leases WHERE network = '' AND address BETWEEN ?1 AND ?2",
                [ip(start), last],
                |row| row.get(0),
            )
            .map_err(sql)?;
        if leased > 0 {
            return Err(Error::Conflict(format!("block {start} still has leased addresses")));
        }
        self.exec("DELETE FROM ip_blocks WHERE start = ?1", [ip(start)]).map_err(sql)?;
        Ok(())
    }

    fn insert_lease(&mut self, l: &Lease) -> Result<()> {
        self.insert(
            LEASE_INSERT,
            params![
                ip(l.address),
                l.pool,
                l.owner.as_str(),
                l.resource.kind.as_str(),
                l.resource.id.to_string(),
                l.resource.name,
                l.state.as_str(),
                micros(l.created_at),
                scope(l.network)
            ],
            "leases",
            &[("address", &l.address), ("owner", &l.owner), ("state", &l.state)],
        )
    }

    fn set_lease_state(&mut self, network: Option<Uuid>, address: Ipv4Addr, state: LeaseState) -> Result<()> {
        self.update(
            "UPDATE leases SET state = ?2 WHERE address = ?1 AND network = ?3",
            params![ip(address), state.as_str(), scope(network)],
            "lease",
            address,
            "leases",
            &[("address", &address), ("state", &state)],
        )
    }

    fn delete_lease(&mut self, network: Option<Uuid>, address: Ipv4Addr) -> Result<()> {
        match self
            .exec("DELETE FROM leases WHERE network = ?1 AND address = ?2", params![scope(network), ip(address)])
            .map_err(sql)?
        {
            0 => Err(Error::not_found("lease", address)),
            _ => Ok(()),
        }
    }
}
