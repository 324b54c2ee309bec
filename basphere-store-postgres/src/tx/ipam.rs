//! Blocks and leases. Addresses are integers, so a block's leases are an index range scan.

use std::net::Ipv4Addr;

use basphere_core::model::*;
use basphere_core::store::{IpamRead, IpamTx};
use basphere_core::validate::Username;
use basphere_core::{Error, Result};
use uuid::Uuid;

use super::{ip, PgTx, Select};
use crate::pg;
use crate::rows::*;

const BLOCK_COLUMNS: &str = "start, pool, size, owner, allocated_at";
/// The columns of a lease as `decode::lease` reads them: the flat pools' scope (the nil id) as
/// null.
const LEASE_COLUMNS: &str = "address, pool, owner, resource_kind, resource_id, resource_name, state, created_at, \
     nullif(network, '00000000-0000-0000-0000-000000000000')";
const LEASE_INSERT: &str =
    "INSERT INTO leases (address, pool, owner, resource_kind, resource_id, resource_name, state, created_at, network) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// A lease's scope as stored: the nil id for the flat pools, else the network's id.
fn scope(network: Option<Uuid>) -> Uuid {
    network.unwrap_or(Uuid::nil())
}

impl IpamRead for PgTx<'_> {
    fn list_blocks(&self, pool: Option<&str>) -> Result<Vec<IpBlock>> {
        let query = Select::from(format!("SELECT {BLOCK_COLUMNS} FROM ip_blocks"))
            .when("pool = ?", pool.map(str::to_owned))
            .tail("ORDER BY start", None);
        self.all(&query.sql, &query.params(), block_row)
    }

    fn blocks_of(&self, owner: &Username) -> Result<Vec<IpBlock>> {
        self.all(
            &format!("SELECT {BLOCK_COLUMNS} FROM ip_blocks WHERE owner = $1 ORDER BY start"),
            &[&owner.as_str()],
            block_row,
        )
    }

    fn get_lease(&self, network: Option<Uuid>, address: Ipv4Addr) -> Result<Option<Lease>> {
        self.one(
            &format!("SELECT {LEASE_COLUMNS} FROM leases WHERE network = $1 AND address = $2"),
            &[&scope(network), &ip(address)],
            lease_row,
        )
    }

    fn list_leases(&self, owner: Option<&Username>) -> Result<Vec<Lease>> {
        let query = Select::from(format!("SELECT {LEASE_COLUMNS} FROM leases"))
            .when("owner = ?", owner.map(|o| o.to_string()))
            .tail("ORDER BY network, address", None);
        self.all(&query.sql, &query.params(), lease_row)
    }

    fn leases_in_network(&self, network: Uuid) -> Result<Vec<Lease>> {
        self.all(
            &format!("SELECT {LEASE_COLUMNS} FROM leases WHERE network = $1 ORDER BY address"),
            &[&network],
            lease_row,
        )
    }

    fn leases_of_resource(&self, resource: Uuid) -> Result<Vec<Lease>> {
        self.all(
            &format!("SELECT {LEASE_COLUMNS} FROM leases WHERE resource_id = $1 ORDER BY network, address"),
            &[&resource],
            lease_row,
        )
    }

    fn occupancy(&self, block: &IpBlock) -> Result<Occupancy> {
        let start = u32::from(block.start);
        let rows = self.rows(
            "SELECT address FROM leases WHERE network = $3 AND address BETWEEN $1 AND $2",
            &[&ip(block.start), &ip(block.end()), &Uuid::nil()],
        )?;
        let mut occupancy = Occupancy::new(block.size);
        for row in rows {
            let address: i64 = row.try_get(0).map_err(pg)?;
            occupancy.set(address as u32 - start);
        }
        Ok(occupancy)
    }
}

impl IpamTx for PgTx<'_> {
    fn insert_block(&mut self, block: &IpBlock) -> Result<()> {
        let (start, last) = (ip(block.start), ip(block.end()));
        // The nearest block below the new one's end is the only one that can overlap it.
        let overlapping = self.one(
            &format!("SELECT {BLOCK_COLUMNS}, last FROM ip_blocks WHERE start <= $1 ORDER BY start DESC LIMIT 1"),
            &[&last],
            |row| Ok((block_row(row)?, row.try_get::<_, i64>(5).map_err(pg)?)),
        )?;
        if let Some((other, _)) = overlapping.filter(|(_, other_last)| *other_last >= start) {
            return Err(Error::Conflict(format!(
                "block {}/{} overlaps the block at {} of {}",
                block.start, block.size, other.start, other.owner
            )));
        }
        self.insert(
            "INSERT INTO ip_blocks (start, last, pool, size, owner, allocated_at) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&start, &last, &block.pool, &i64::from(block.size), &block.owner.as_str(), &block.allocated_at],
            "ip_blocks",
            &[("start", &block.start), ("owner", &block.owner), ("size", &block.size)],
        )
    }

    fn delete_block(&mut self, start: Ipv4Addr) -> Result<()> {
        let last = self.one("SELECT last FROM ip_blocks WHERE start = $1", &[&ip(start)], |row| {
            row.try_get::<_, i64>(0).map_err(pg)
        })?;
        let Some(last) = last else {
            return Err(Error::not_found("block", start));
        };
        let leased = self
            .one(
                "SELECT count(*) FROM leases WHERE network = $3 AND address BETWEEN $1 AND $2",
                &[&ip(start), &last, &Uuid::nil()],
                |row| row.try_get::<_, i64>(0).map_err(pg),
            )?
            .unwrap_or(0);
        if leased > 0 {
            return Err(Error::Conflict(format!("block {start} still has leased addresses")));
        }
        self.exec("DELETE FROM ip_blocks WHERE start = $1", &[&ip(start)])?;
        Ok(())
    }

    fn insert_lease(&mut self, l: &Lease) -> Result<()> {
        self.insert(
            LEASE_INSERT,
            &[
                &ip(l.address),
                &l.pool,
                &l.owner.as_str(),
                &l.resource.kind.as_str(),
                &l.resource.id,
                &l.resource.name,
                &l.state.as_str(),
                &l.created_at,
                &scope(l.network),
            ],
            "leases",
            &[("address", &l.address), ("owner", &l.owner), ("state", &l.state)],
        )
    }

    fn set_lease_state(&mut self, network: Option<Uuid>, address: Ipv4Addr, state: LeaseState) -> Result<()> {
        self.update(
            "UPDATE leases SET state = $2 WHERE address = $1 AND network = $3",
            &[&ip(address), &state.as_str(), &scope(network)],
            "lease",
            address,
            "leases",
            &[("address", &address), ("state", &state)],
        )
    }

    fn delete_lease(&mut self, network: Option<Uuid>, address: Ipv4Addr) -> Result<()> {
        match self.exec("DELETE FROM leases WHERE network = $1 AND address = $2", &[&scope(network), &ip(address)])? {
            0 => Err(Error::not_found("lease", address)),
            _ => Ok(()),
        }
    }
}
