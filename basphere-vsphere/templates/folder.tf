# Rendered by Basphere for one user's VM folder. Values come from terraform.tfvars.json.
terraform {
  required_version = ">= 1.0.0"
  required_providers {
    vsphere = {
      source  = "hashicorp/vsphere"
      version = "~> 2.0"
    }
  }
}

provider "vsphere" {
  vsphere_server       = var.vsphere_server
  allow_unverified_ssl = var.allow_unverified_ssl
}

variable "vsphere_server" { type = string }
variable "allow_unverified_ssl" { type = bool }
variable "datacenter" { type = string }
variable "folder" { type = string }

data "vsphere_datacenter" "dc" {
  name = var.datacenter
}

resource "vsphere_folder" "user_folder" {
  path          = var.folder
  type          = "vm"
  datacenter_id = data.vsphere_datacenter.dc.id
}

output "folder_path" {
  value = vsphere_folder.user_folder.path
}
