# Rendered by Basphere for one VM. Every value comes from terraform.tfvars.json, never from
# this file's text, so no input can change the configuration.
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
variable "cluster" { type = string }
variable "datastore" { type = string }
variable "network" { type = string }
variable "template" { type = string }
variable "folder" { type = string }
variable "vm_name" { type = string }
variable "num_cpus" { type = number }
variable "memory" { type = number }
variable "disk_size" { type = number }
variable "guestinfo_metadata" { type = string }
variable "guestinfo_userdata" { type = string }
variable "basphere_id" { type = string }

data "vsphere_datacenter" "dc" {
  name = var.datacenter
}

data "vsphere_compute_cluster" "cluster" {
  name          = var.cluster
  datacenter_id = data.vsphere_datacenter.dc.id
}

data "vsphere_datastore" "datastore" {
  name          = var.datastore
  datacenter_id = data.vsphere_datacenter.dc.id
}

data "vsphere_network" "network" {
  name          = var.network
  datacenter_id = data.vsphere_datacenter.dc.id
}

data "vsphere_virtual_machine" "template" {
  name          = var.template
  datacenter_id = data.vsphere_datacenter.dc.id
}

resource "vsphere_virtual_machine" "vm" {
  name             = var.vm_name
  resource_pool_id = data.vsphere_compute_cluster.cluster.resource_pool_id
  datastore_id     = data.vsphere_datastore.datastore.id
  folder           = var.folder
  annotation       = "basphere-id=${var.basphere_id}"

  num_cpus  = var.num_cpus
  memory    = var.memory
  guest_id  = data.vsphere_virtual_machine.template.guest_id
  firmware  = data.vsphere_virtual_machine.template.firmware
  scsi_type = data.vsphere_virtual_machine.template.scsi_type

  network_interface {
    network_id   = data.vsphere_network.network.id
    adapter_type = data.vsphere_virtual_machine.template.network_interface_types[0]
  }

  disk {
    label            = "disk0"
    size             = var.disk_size
    thin_provisioned = true
    eagerly_scrub    = false
  }

  cdrom {
    client_device = true
  }

  clone {
    template_uuid = data.vsphere_virtual_machine.template.id
  }

  extra_config = {
    "guestinfo.metadata"          = var.guestinfo_metadata
    "guestinfo.metadata.encoding" = "base64"
    "guestinfo.userdata"          = var.guestinfo_userdata
    "guestinfo.userdata.encoding" = "base64"
    "guestinfo.basphere.id"       = var.basphere_id
  }

  lifecycle {
    ignore_changes = [
      extra_config["guestinfo.metadata"],
      extra_config["guestinfo.userdata"],
    ]
  }
}

output "vm_id" {
  value = vsphere_virtual_machine.vm.id
}

output "vm_moid" {
  value = vsphere_virtual_machine.vm.moid
}

output "vsphere_vm_name" {
  value = vsphere_virtual_machine.vm.name
}

# The marker as vSphere holds it: after an import it tells whose VM this is.
output "basphere_id" {
  value = vsphere_virtual_machine.vm.extra_config["guestinfo.basphere.id"]
}
