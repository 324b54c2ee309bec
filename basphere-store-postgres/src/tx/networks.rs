//! Tenant network records, as on SQLite: a live network's VLAN ids are rows of `network_vlans`
//! (the id the key), written with the network and removed when it is deleted; its WAN address
//! is unique among live networks by a partial index.

use basphere_core::model::*;
use basphere_core::store::{NetworkFilter, NetworksRead, NetworksTx};
use basphere_core::validate::Username;
use basphere_core::Result;
use uuid::Uuid;

use super::{ip, Param, PgTx, Select};
use crate::rows::*;

const NETWORK_COLUMNS: &str = "id, owner, lans, mtu, wan_address, state, reason, created_at, updated_at";

impl NetworksRead for PgTx<'_> {
    fn get_network(&self, id: Uuid) -> Result<Option<Network>> {
        self.one(&format!("SELECT {NETWORK_COLUMNS} FROM networks WHERE id = $1"), &[&id], network_row)
    }

    fn network_of(&self, owner: &Username) -> Result<Option<Network>> {
        self.one(
            &format!("SELECT {NETWORK_COLUMNS} FROM networks WHERE owner = $1 AND state <> 'deleted'"),
            &[&owner.as_str()],
            network_row,
        )
    }

    fn list_networks(&self, filter: &NetworkFilter) -> Result<Vec<Network>> {
        let query = Select::from(format!("SELECT {NETWORK_COLUMNS} FROM networks"))
            .when("owner = ?", filter.owner.as_ref().map(|o| o.to_string()))
            .only("state <> 'deleted'", !filter.include_deleted)
            .when("id > ?", filter.after)
            .tail("ORDER BY id", filter.limit);
        self.all(&query.sql, &query.params(), network_row)
    }
}

impl PgTx<'_> {
    fn write_network(&self, statement: &str, n: &Network, missing: bool) -> Result<()> {
        let lans = network_lans_json(n)?;
        let params: [Param<'_>; 9] = [
            &n.id,
            &n.owner.as_str(),
            &lans,
            &i64::from(n.mtu),
            &ip(n.wan_address),
            &n.state.as_str(),
            &n.reason,
            &n.created_at,
            &n.updated_at,
        ];
        let values: super::Values<'_> =
            &[("id", &n.id), ("owner", &n.owner), ("wan_address", &n.wan_address), ("state", &n.state)];
        if missing {
            self.insert(statement, &params, "networks", values)?;
        } else {
            self.update(statement, &params, "network", n.id, "networks", values)?;
        }
        // The network's VLAN rows: none once it is deleted, one per LAN while it is live.
        self.exec("DELETE FROM network_vlans WHERE network_id = $1", &[&n.id])?;
        if n.is_live() {
            for vlan in n.vlans() {
                self.insert(
                    "INSERT INTO network_vlans (vlan, network_id) VALUES ($1, $2)",
                    &[&i64::from(vlan), &n.id],
                    "network_vlans",
                    &[("vlan", &vlan), ("network_id", &n.id)],
                )?;
            }
        }
        Ok(())
    }
}

impl NetworksTx for PgTx<'_> {
    fn insert_network(&mut self, n: &Network) -> Result<()> {
        self.write_network(
            &format!("INSERT INTO networks ({NETWORK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
            n,
            true,
        )
    }

    fn update_network(&mut self, n: &Network) -> Result<()> {
        self.write_network(
            "UPDATE networks SET owner = $2, lans = $3, mtu = $4, wan_address = $5, state = $6, reason = $7, \
             created_at = $8, updated_at = $9 WHERE id = $1",
            n,
            false,
        )
    }
}
