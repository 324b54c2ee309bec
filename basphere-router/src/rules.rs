//! A tenant's nftables rules, as the JSON `nft -j -f -` reads: one table, `inet basphere`, in
//! the tenant's own namespace, replaced whole in one transaction (the table flushed and filled
//! again), so a change never leaves half a ruleset and never touches another tenant's.
//!
//! - `input`: the router answers its own LANs; from the WAN only what answers the router's own
//!   traffic.
//! - `forward`: the tenant's LANs reach each other and the WAN; nothing new from the WAN gets in.
//! - `postrouting`: what leaves by the WAN leaves from the router's WAN address (masquerade).

use basphere_core::router::TenantRouterSpec;
use serde_json::{json, Value};

/// The table every tenant's rules live in.
pub const TABLE: &str = "basphere";

/// The chains, with their hook, type, priority and policy.
const CHAINS: [(&str, &str, &str, i32, &str); 3] = [
    ("input", "filter", "input", 0, "drop"),
    ("forward", "filter", "forward", 0, "drop"),
    ("postrouting", "nat", "postrouting", 100, "accept"),
];

/// The interface on the WAN side, in every tenant's namespace.
pub const WAN: &str = "wan";

fn chain(name: &str, kind: &str, hook: &str, prio: i32, policy: &str) -> Value {
    json!({"add": {"chain": {"family": "inet", "table": TABLE, "name": name, "type": kind, "hook": hook, "prio": prio, "policy": policy}}})
}

fn rule(chain: &str, expr: Value) -> Value {
    json!({"add": {"rule": {"family": "inet", "table": TABLE, "chain": chain, "expr": expr}}})
}

fn interface(key: &str, names: &[&str]) -> Value {
    let right = match names {
        [one] => json!(one),
        many => json!({"set": many}),
    };
    json!({"match": {"op": "==", "left": {"meta": {"key": key}}, "right": right}})
}

fn state(states: &[&str]) -> Value {
    json!({"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": states}})
}

/// The whole ruleset of the tenant `spec` describes, as one `nft -j` document.
pub fn ruleset(spec: &TenantRouterSpec) -> Value {
    let lans: Vec<&str> = spec.lans.iter().map(|lan| lan.name.as_str()).collect();
    let table = json!({"family": "inet", "name": TABLE});
    let mut commands = vec![json!({"add": {"table": table}}), json!({"flush": {"table": table}})];
    commands.extend(CHAINS.iter().map(|(name, kind, hook, prio, policy)| chain(name, kind, hook, *prio, policy)));
    let accept = json!({"accept": null});
    let drop = json!({"drop": null});
    commands.extend([
        rule("input", json!([state(&["invalid"]), drop])),
        rule("input", json!([state(&["established", "related"]), accept])),
        rule("input", json!([interface("iifname", &["lo"]), accept])),
        rule("input", json!([interface("iifname", &lans), accept])),
        rule("forward", json!([state(&["invalid"]), drop])),
        rule("forward", json!([state(&["established", "related"]), accept])),
        rule("forward", json!([interface("iifname", &lans), interface("oifname", &lans), accept])),
        rule("forward", json!([interface("iifname", &lans), interface("oifname", &[WAN]), accept])),
        rule("postrouting", json!([interface("oifname", &[WAN]), {"masquerade": null}])),
    ]);
    json!({"nftables": commands})
}

/// Whether `listed` (`nft -j list table inet basphere`) holds the three chains with their hooks
/// and policies, each with rules.
pub fn complete(listed: &Value) -> bool {
    let Some(items) = listed["nftables"].as_array() else { return false };
    CHAINS.iter().all(|(name, kind, hook, _, policy)| {
        let chain = items.iter().any(|item| {
            let chain = &item["chain"];
            chain["name"] == *name && chain["type"] == *kind && chain["hook"] == *hook && chain["policy"] == *policy
        });
        let rules = items.iter().any(|item| item["rule"]["chain"] == *name);
        chain && rules
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use basphere_core::router::TenantLan;

    fn spec() -> TenantRouterSpec {
        TenantRouterSpec {
            tenant: basphere_core::testing::username("alice"),
            lans: vec![
                TenantLan { name: "lan1".into(), vlan: 2001, gateway: "10.0.1.1/24".parse().unwrap() },
                TenantLan { name: "lan2".into(), vlan: 2002, gateway: "10.0.2.1/24".parse().unwrap() },
            ],
            mtu: 1450,
            wan_address: "192.0.2.11/24".parse().unwrap(),
            wan_gateway: None,
        }
    }

    #[test]
    fn the_ruleset_flushes_the_table_then_fills_it_and_lets_nothing_in_from_the_wan() {
        let rules = ruleset(&spec());
        let commands = rules["nftables"].as_array().unwrap();
        assert_eq!(commands[0]["add"]["table"]["name"], TABLE);
        assert_eq!(commands[1]["flush"]["table"]["name"], TABLE);
        let forward: Vec<&Value> =
            commands.iter().filter(|command| command["add"]["rule"]["chain"] == "forward").collect();
        // Every accepting forward rule but the answers' starts from a LAN.
        for rule in &forward {
            let expr = rule["add"]["rule"]["expr"].as_array().unwrap();
            if expr.last().unwrap().get("accept").is_some() && expr[0]["match"]["left"]["ct"].is_null() {
                assert_eq!(expr[0]["match"]["left"]["meta"]["key"], "iifname", "{rule}");
                assert_eq!(expr[0]["match"]["right"]["set"], json!(["lan1", "lan2"]), "{rule}");
            }
        }
        assert!(commands
            .iter()
            .any(|c| c["add"]["chain"]["name"] == "forward" && c["add"]["chain"]["policy"] == "drop"));
    }

    #[test]
    fn a_listing_without_a_chain_or_its_rules_is_incomplete() {
        let rules = ruleset(&spec());
        let listed = json!({"nftables": rules["nftables"].as_array().unwrap().iter().filter_map(|command| {
            command["add"].get("chain").map(|chain| json!({"chain": chain})).or_else(|| command["add"].get("rule").map(|rule| json!({"rule": rule})))
        }).collect::<Vec<_>>()});
        assert!(complete(&listed));
        let without_nat = json!({"nftables": listed["nftables"].as_array().unwrap().iter().filter(|item| item["rule"]["chain"] != "postrouting").cloned().collect::<Vec<_>>()});
        assert!(!complete(&without_nat));
        assert!(!complete(&json!({})));
    }
}
