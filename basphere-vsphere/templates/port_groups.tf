# Rendered by Basphere for one tenant's network: a distributed port group per LAN. Every value
# comes from terraform.tfvars.json, never from this file's text, so no input can change the
# configuration.
terraform {
  required_version = ">= 1.0.0"
  required_providers {
    vsphere = {
      source  = "hashicorp/vsphere"
      version = "~> 2.0"
    }
  }
}

# VSPHERE_USER and VSPHERE_PASSWORD come from the environment of this run only.
provider "vsphere" {
  vsphere_server       = var.vsphere_server
  allow_unverified_ssl = var.allow_unverified_ssl
}

variable "vsphere_server" { type = string }
variable "allow_unverified_ssl" { type = bool }
variable "datacenter" { type = string }
variable "switch" { type = string }
# The tenant's marker: how Basphere tells its port groups from others of the same name.
variable "description" { type = string }
# Each port group's VLAN id, by its name.
variable "port_groups" { type = map(number) }

data "vsphere_datacenter" "dc" {
  name = var.datacenter
}

data "vsphere_distributed_virtual_switch" "switch" {
  name          = var.switch
  datacenter_id = data.vsphere_datacenter.dc.id
}

resource "vsphere_distributed_port_group" "lan" {
  for_each = var.port_groups

  name                            = each.key
  vlan_id                         = each.value
  description                     = var.description
  distributed_virtual_switch_uuid = data.vsphere_distributed_virtual_switch.switch.id
}
