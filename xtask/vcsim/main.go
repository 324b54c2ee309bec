// vcsim: the govmomi vCenter simulator (Debian's golang-github-vmware-govmomi-dev) as a
// process for Basphere's tests. It prints the SDK URL on its first line, then serves until
// SIGTERM or SIGINT. Built by `cargo xtask vcsim` in GOPATH mode, offline.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/vmware/govmomi/simulator"
)

func main() {
	hosts := flag.Int("hosts", 1, "standalone hosts")
	clusters := flag.Int("clusters", 1, "clusters")
	vms := flag.Int("vms", 2, "VMs per host and resource pool (usable as clone sources)")
	flag.Parse()

	model := simulator.VPX()
	model.Host = *hosts
	model.Cluster = *clusters
	model.Machine = *vms
	if err := model.Create(); err != nil {
		fmt.Fprintln(os.Stderr, "vcsim:", err)
		os.Exit(1)
	}
	defer model.Remove()
	model.Service.TLS = new(tls.Config)
	server := model.Service.NewServer()
	defer server.Close()
	fmt.Println(server.URL.String())

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, os.Interrupt)
	<-signals
}
