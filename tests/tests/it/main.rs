//! Cross-crate scenarios, one integration-test binary.

mod accounts;
mod api_concurrency;
mod api_crash;
mod authz;

mod bad_input;
mod cli_json;
mod cluster_cli;
mod clusters;
mod concurrency;
mod crash;
mod e2e;
mod fuzz;
mod ipam;
mod lifecycle;
mod limits;
mod network_cli;
mod networks;
mod onboarding;
mod openapi;
mod operator;
mod platform;
mod replicas;
mod terraform_backend;
mod terraform_replicas;
mod web;
mod work;
