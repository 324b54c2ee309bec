//! IPAM records: blocks, leases and the occupancy of a block.

use super::*;

/// A range of addresses assigned to one user, aligned to the pool's block size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpBlock {
    pub pool: String,
    pub start: Ipv4Addr,
    pub size: u32,
    pub owner: Username,
    pub allocated_at: Timestamp,
}

impl IpBlock {
    pub fn contains(&self, address: Ipv4Addr) -> bool {
        let (start, address) = (u32::from(self.start), u32::from(address));
        address >= start && address - start < self.size
    }

    /// The last address of the block.
    pub fn end(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.start) + (self.size - 1))
    }
}

string_enum!(
    /// What a lease is for.
    ResourceKind {
        Vm => "vm",
        ClusterEndpoint => "cluster-endpoint",
        ClusterNode => "cluster-node",
        Cluster => "cluster",
        Account => "account",
        Network => "network",
    }
);

string_enum!(
    /// `Reserved` from the moment of allocation; `Active` once the backend confirmed its use.
    LeaseState { Reserved => "reserved", Active => "active" }
);

/// What a lease (or an operation) is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResourceRef {
    pub kind: ResourceKind,
    /// The resource's id (a VM or cluster id).
    pub id: Uuid,
    /// A readable name: the VM name, or `<cluster>-node-3`.
    pub name: String,
}

/// One leased address.
///
/// Its scope is the flat pools (`network` none), where an address is leased at most once, or
/// one tenant network (`network` its id, `pool` the LAN's name), where the same holds inside
/// the network: two tenants hold 10.0.1.10 at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub address: Ipv4Addr,
    /// The tenant network the address is on; none for the flat pools.
    #[serde(default)]
    pub network: Option<Uuid>,
    /// The flat pool's name, or the tenant LAN's.
    pub pool: String,
    pub owner: Username,
    pub resource: ResourceRef,
    pub state: LeaseState,
    pub created_at: Timestamp,
}

/// A fixed-size set of offsets inside an IP block: which addresses are taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occupancy {
    words: Vec<u64>,
    len: u32,
}

impl Occupancy {
    pub fn new(len: u32) -> Self {
        Occupancy { words: vec![0; len.div_ceil(64) as usize], len }
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn set(&mut self, offset: u32) {
        assert!(offset < self.len, "offset {offset} outside a block of {}", self.len);
        self.words[(offset / 64) as usize] |= 1 << (offset % 64);
    }

    pub fn clear(&mut self, offset: u32) {
        assert!(offset < self.len, "offset {offset} outside a block of {}", self.len);
        self.words[(offset / 64) as usize] &= !(1 << (offset % 64));
    }

    pub fn contains(&self, offset: u32) -> bool {
        offset < self.len && self.words[(offset / 64) as usize] & (1 << (offset % 64)) != 0
    }

    pub fn count(&self) -> u32 {
        self.words.iter().map(|word| word.count_ones()).sum()
    }

    /// Adds every offset of `other` (same length).
    pub fn union_with(&mut self, other: &Occupancy) {
        for (word, other) in self.words.iter_mut().zip(&other.words) {
            *word |= other;
        }
    }

    /// The lowest offset not in the set, in constant time per 64 offsets.
    pub fn first_free(&self) -> Option<u32> {
        for (index, word) in self.words.iter().enumerate() {
            if *word != u64::MAX {
                let offset = index as u32 * 64 + word.trailing_ones();
                return (offset < self.len).then_some(offset);
            }
        }
        None
    }
}
