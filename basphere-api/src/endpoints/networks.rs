//! The caller's tenant network (`networks.mode: tenant`); administrators' endpoints for every
//! account's are in `admin`.

use crate::endpoint::ProblemResponse::*;
use crate::endpoint::{endpoint, Reply};
use crate::NetworkView;

endpoint! {
    /// `GET /api/v1/network`
    Get = Get "/api/v1/network", network, tag "networks",
    types((), (), () => NetworkView);
    SUMMARY = "Your tenant network: its LANs (VLAN ids, subnets, gateways), MTU, the router's WAN address\nand what the router holds now. 404 when you have none; 501 when the server's tenant networks\nare off (`networks.mode: flat`). *user*";
    REPLIES = &[Reply::OK];
    PROBLEMS = &[Unauthenticated, Forbidden, NotFound, ServerError];
}
