//! Tenant network records. A live network's VLAN ids are rows of `network_vlans` (the id the
//! key, so no two live networks hold one), written with the network and removed when it is
//! deleted; its WAN address is unique among live networks by a partial index.

use basphere_core::model::*;
use basphere_core::store::{NetworkFilter, NetworksRead, NetworksTx};
use basphere_core::validate::Username;
use basphere_core::Result;
use rusqlite::params;
use uuid::Uuid;

use super::{ip, Select, SqlTx};
use crate::rows::*;

const NETWORK_COLUMNS: &str = "id, owner, lans, mtu, wan_address, state, reason, created_at, updated_at";

impl NetworksRead for SqlTx<'_> {
    fn get_network(&self, id: Uuid) -> Result<Option<Network>> {
        self.one(&format!("SELECT {NETWORK_COLUMNS} FROM networks WHERE id = ?1"), [id.to_string()], network_row)
    }

    fn network_of(&self, owner: &Username) -> Result<Option<Network>> {
        self.one(
            &format!("SELECT {NETWORK_COLUMNS} FROM networks WHERE owner = ?1 AND state <> 'deleted'"),
            [owner.as_str()],
            network_row,
        )
    }

    fn list_networks(&self, filter: &NetworkFilter) -> Result<Vec<Network>> {
        let (query, values) = Select::from(format!("SELECT {NETWORK_COLUMNS} FROM networks"))
            .when("owner = ?", filter.owner.as_ref().map(|o| o.to_string()))
            .only("state <> 'deleted'", !filter.include_deleted)
            .when("id > ?", filter.after.map(|id| id.to_string()))
            .tail("ORDER BY id", filter.limit);
        self.all(&query, rusqlite::params_from_iter(values), network_row)
    }
}

impl SqlTx<'_> {
    /// The network's VLAN rows: none once it is deleted, one per LAN while it is live.
    fn hold_vlans(&self, n: &Network) -> Result<()> {
        self.exec("DELETE FROM network_vlans WHERE network_id = ?1", [n.id.to_string()]).map_err(crate::sql)?;
        if n.is_live() {
            for vlan in n.vlans() {
                self.insert(
                    "INSERT INTO network_vlans (vlan, network_id) VALUES (?1, ?2)",
                    params![vlan, n.id.to_string()],
                    "network_vlans",
                    &[("vlan", &vlan), ("network_id", &n.id)],
                )?;
            }
        }
        Ok(())
    }
}

impl SqlTx<'_> {
    /// Inserts (`missing`) or updates the network's row, then its VLAN rows.
    fn write_network(&self, statement: &str, n: &Network, missing: bool) -> Result<()> {
        let lans = network_lans_json(n)?;
        let params = params![
            n.id.to_string(),
            n.owner.as_str(),
            lans,
            n.mtu,
            ip(n.wan_address),
            n.state.as_str(),
            n.reason,
            micros(n.created_at),
            micros(n.updated_at)
        ];
        let values: crate::constraints::Values<'_> =
            &[("id", &n.id), ("owner", &n.owner), ("wan_address", &n.wan_address), ("state", &n.state)];
        if missing {
            self.insert(statement, params, "networks", values)?;
        } else {
            self.update(statement, params, "network", n.id, "networks", values)?;
        }
        self.hold_vlans(n)
    }
}

impl NetworksTx for SqlTx<'_> {
    fn insert_network(&mut self, n: &Network) -> Result<()> {
        self.write_network(
            &format!("INSERT INTO networks ({NETWORK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
            n,
            true,
        )
    }

    fn update_network(&mut self, n: &Network) -> Result<()> {
        self.write_network(
            "UPDATE networks SET owner = ?2, lans = ?3, mtu = ?4, wan_address = ?5, state = ?6, reason = ?7, \
             created_at = ?8, updated_at = ?9 WHERE id = ?1",
            n,
            false,
        )
    }
}
