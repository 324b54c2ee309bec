//! kube-vip as a static pod on every control-plane node, serving the cluster's VIP by ARP, and
//! the files that put it there.
//!
//! Kubernetes 1.29 split `super-admin.conf` (cluster-admin from the start) off `admin.conf`,
//! whose rights come from a binding `kubeadm init` makes late. kube-vip must hold the VIP before
//! that, so on the node that runs `kubeadm init` it mounts `super-admin.conf`; that file exists
//! only there, so the other nodes keep `admin.conf`. One control-plane template serves every
//! node, so the choice is made on the node at boot by a script. The pod resolves `kubernetes`
//! through a mounted hosts file, as `hostAliases` stopped working for static pods in 1.29.

use std::net::Ipv4Addr;

use serde_json::{json, Value};

use crate::layout::{Layout, API_SERVER_PORT};

pub const MANIFEST_PATH: &str = "/etc/kubernetes/manifests/kube-vip.yaml";
pub const HOSTS_PATH: &str = "/etc/kube-vip.hosts";
pub const PREPARE_PATH: &str = "/etc/pre-kubeadm-commands/50-kube-vip-prepare.sh";

/// Switches the manifest to `super-admin.conf` on the init node of Kubernetes >= 1.29.
const PREPARE_SCRIPT: &str = r#"#!/bin/bash
# Written by Basphere: kube-vip on the node that runs `kubeadm init` needs super-admin.conf with
# Kubernetes 1.29 and later, until kubeadm has granted admin.conf its rights.
set -euo pipefail
minor=$(kubeadm version -o short | cut -d. -f2)
if [[ "$minor" -lt 29 ]]; then
  exit 0
fi
# cloud-init writes the init configuration only on the first control-plane node.
if [[ -f /run/kubeadm/kubeadm.yaml ]] && grep -q "kind: InitConfiguration" /run/kubeadm/kubeadm.yaml; then
  sed -i 's#path: /etc/kubernetes/admin.conf#path: /etc/kubernetes/super-admin.conf#' /etc/kubernetes/manifests/kube-vip.yaml
fi
"#;

/// The kube-vip pod serving `vip`.
pub fn pod(layout: &Layout, vip: Ipv4Addr) -> Value {
    let env = [
        ("vip_arp", "true".to_owned()),
        ("port", API_SERVER_PORT.to_string()),
        ("vip_interface", layout.vip_interface.clone().unwrap_or_default()),
        ("vip_subnet", "32".to_owned()),
        ("cp_enable", "true".to_owned()),
        ("cp_namespace", "kube-system".to_owned()),
        ("svc_enable", "false".to_owned()),
        ("vip_leaderelection", "true".to_owned()),
        ("vip_leasename", "plndr-cp-lock".to_owned()),
        ("vip_leaseduration", "15".to_owned()),
        ("vip_renewdeadline", "10".to_owned()),
        ("vip_retryperiod", "2".to_owned()),
        ("address", vip.to_string()),
    ];
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kube-vip", "namespace": "kube-system"},
        "spec": {
            "hostNetwork": true,
            "containers": [{
                "name": "kube-vip",
                "image": layout.kube_vip_image,
                "imagePullPolicy": "IfNotPresent",
                "args": ["manager"],
                "env": env.iter().map(|(name, value)| json!({"name": name, "value": value})).collect::<Vec<_>>(),
                "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}},
                "volumeMounts": [
                    {"name": "kubeconfig", "mountPath": "/etc/kubernetes/admin.conf"},
                    {"name": "etchosts", "mountPath": "/etc/hosts"},
                ],
            }],
            "volumes": [
                {"name": "kubeconfig", "hostPath": {"path": "/etc/kubernetes/admin.conf", "type": "FileOrCreate"}},
                {"name": "etchosts", "hostPath": {"path": HOSTS_PATH, "type": "File"}},
            ],
        },
    })
}

/// The control-plane nodes' files: the manifest, its hosts file and the prepare script.
pub fn files(layout: &Layout, vip: Ipv4Addr) -> Value {
    let manifest = serde_yaml::to_string(&pod(layout, vip)).unwrap_or_default();
    json!([
        {"path": MANIFEST_PATH, "owner": "root:root", "permissions": "0644", "content": manifest},
        {"path": HOSTS_PATH, "owner": "root:root", "permissions": "0644", "content": "127.0.0.1 localhost kubernetes\n"},
        {"path": PREPARE_PATH, "owner": "root:root", "permissions": "0700", "content": PREPARE_SCRIPT},
    ])
}
