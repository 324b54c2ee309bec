//! Cluster records in memory.

use uuid::Uuid;

use super::{after, page, remember, ReadTx, State, WriteTx};
use crate::error::{Error, Result};
use crate::model::*;
use crate::store::{ClusterFilter, ClustersRead, ClustersTx};
use crate::validate::{ResourceName, Username};

macro_rules! reads {
    ($ty:ty) => {
        impl ClustersRead for $ty {
            fn get_cluster(&self, id: Uuid) -> Result<Option<Cluster>> {
                Ok(self.state().clusters.get(&id).cloned())
            }
            fn cluster_by_name(&self, owner: &Username, name: &ResourceName) -> Result<Option<Cluster>> {
                Ok(self.state().live_cluster_named(owner, name).cloned())
            }
            fn list_clusters(&self, filter: &ClusterFilter) -> Result<Vec<Cluster>> {
                Ok(page(
                    after(&self.state().clusters, filter.after)
                        .filter(|c| {
                            filter.owner.as_ref().is_none_or(|o| c.owner == *o)
                                && (filter.include_deleted || c.is_live())
                        })
                        .cloned(),
                    filter.limit,
                ))
            }
        }
    };
}

reads!(ReadTx<'_>);
reads!(WriteTx<'_>);

impl ClustersTx for WriteTx<'_> {
    fn insert_cluster(&mut self, cluster: &Cluster) -> Result<()> {
        if self.state.clusters.contains_key(&cluster.id) {
            return Err(Error::already_exists("cluster", cluster.id));
        }
        if cluster.is_live() && self.state.live_cluster_named(&cluster.owner, &cluster.name).is_some() {
            return Err(Error::already_exists("cluster", &cluster.name));
        }
        self.state.clusters.insert(cluster.id, cluster.clone());
        remember!(self, clusters, cluster.id, None::<Cluster>);
        Ok(())
    }

    fn update_cluster(&mut self, cluster: &Cluster) -> Result<()> {
        if !self.state.clusters.contains_key(&cluster.id) {
            return Err(Error::not_found("cluster", cluster.id));
        }
        if cluster.is_live()
            && self.state.live_cluster_named(&cluster.owner, &cluster.name).is_some_and(|other| other.id != cluster.id)
        {
            return Err(Error::already_exists("cluster", &cluster.name));
        }
        let previous = self.state.clusters.insert(cluster.id, cluster.clone());
        remember!(self, clusters, cluster.id, previous);
        Ok(())
    }
}
