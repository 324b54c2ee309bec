// vcsim: the govmomi vCenter simulator (Debian's golang-github-vmware-govmomi-dev) as a
// process for Basphere's tests. It prints the SDK URL on its first line, then `call METHOD` for
// each API call as its request arrives (before any -method-delay), and serves until SIGTERM or
// SIGINT. Built by `cargo xtask vcsim` in GOPATH mode, offline.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"bufio"
	"fmt"
	"io"
	"os"
	"net/url"
	"os/signal"
	"strings"
	"syscall"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

func main() {
	hosts := flag.Int("hosts", 1, "standalone hosts")
	clusters := flag.Int("clusters", 1, "clusters")
	vms := flag.Int("vms", 2, "VMs per host and resource pool (usable as clone sources)")
	username := flag.String("username", "basphere@vsphere.local", "the only login the simulator accepts")
	password := flag.String("password", "sim-Passw0rd", "its password")
	folder := flag.String("folder", "", "a VM folder to create in DC0/vm (Basphere's base folder)")
	delays := flag.String("method-delay", "", "comma-separated METHOD=MILLISECONDS: how long the simulator takes to answer those calls (e.g. CloneVM_Task=300)")
	templates := flag.String("templates", "", "comma-separated template names to create in DC0/vm (clones of DC0_H0_VM0)")
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
	// Without a login of its own the simulator would accept any user and password.
	model.Service.Listen = &url.URL{User: url.UserPassword(*username, *password)}
	server := model.Service.NewServer()
	defer server.Close()
	if err := prepare(server, *folder, *templates); err != nil {
		fmt.Fprintln(os.Stderr, "vcsim: preparing the inventory:", err)
		os.Exit(1)
	}
	// Set after the inventory is prepared; the service reads the delays through a pointer.
	for _, entry := range strings.Split(*delays, ",") {
		if entry == "" {
			continue
		}
		var method string
		var millis int
		parts := strings.SplitN(entry, "=", 2)
		if len(parts) == 2 {
			method = parts[0]
			_, err := fmt.Sscanf(parts[1], "%d", &millis)
			if err != nil {
				method = ""
			}
		}
		if method == "" {
			fmt.Fprintln(os.Stderr, "vcsim: -method-delay wants METHOD=MILLISECONDS, got", entry)
			os.Exit(2)
		}
		if model.DelayConfig.MethodDelay == nil {
			model.DelayConfig.MethodDelay = map[string]int{}
		}
		model.DelayConfig.MethodDelay[method] = millis
	}
	// The simulator traces each request before it runs (and delays) the call: the trace, cut
	// down to the method's name, tells a test what vCenter has been asked so far. Set before the
	// URL is printed, so no request comes before it.
	trace, traced, err := os.Pipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "vcsim:", err)
		os.Exit(1)
	}
	go logCalls(trace, os.Stdout)
	simulator.TraceFile = traced
	simulator.Trace = true
	fmt.Println(server.URL.String())

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, os.Interrupt)
	<-signals
}

// logCalls reads the simulator's trace ("Request: <envelope>", "Response: <envelope>", an
// envelope possibly over several lines) and writes `call METHOD` for each request: the first
// element in its body.
func logCalls(trace io.Reader, out io.Writer) {
	reader := bufio.NewReader(trace)
	request := false
	for {
		line, err := reader.ReadString('\n')
		if strings.HasPrefix(line, "Request: ") {
			request = true
		} else if strings.HasPrefix(line, "Response: ") {
			request = false
		}
		if request {
			if at := strings.Index(line, "Body>"); at >= 0 {
				if name := firstElement(line[at+len("Body>"):]); name != "" {
					fmt.Fprintln(out, "call", name)
				}
				request = false
			}
		}
		if err != nil {
			return
		}
	}
}

// firstElement: `CloneVM_Task` of ` <vim25:CloneVM_Task xmlns="urn:vim25">...`.
func firstElement(text string) string {
	text = strings.TrimLeft(text, " \t\r\n")
	if !strings.HasPrefix(text, "<") {
		return ""
	}
	name := text[1:]
	if end := strings.IndexAny(name, " \t\r\n/>"); end >= 0 {
		name = name[:end]
	}
	if colon := strings.Index(name, ":"); colon >= 0 {
		name = name[colon+1:]
	}
	return name
}

// prepare makes, through the simulator's own API as an admin would with govc, the base folder
// DC0/vm/<folder> and the templates DC0/vm/<name> (1 CPU, 1 GiB, a 10 GiB disk, powered off).
func prepare(server *simulator.Server, folder string, templates string) error {
	if folder == "" && templates == "" {
		return nil
	}
	ctx := context.Background()
	client, err := govmomi.NewClient(ctx, server.URL, true)
	if err != nil {
		return err
	}
	defer client.Logout(ctx)
	finder := find.NewFinder(client.Client, false)
	datacenter, err := finder.Datacenter(ctx, "DC0")
	if err != nil {
		return err
	}
	finder.SetDatacenter(datacenter)
	folders, err := datacenter.Folders(ctx)
	if err != nil {
		return err
	}
	if folder != "" {
		if _, err := folders.VmFolder.CreateFolder(ctx, folder); err != nil {
			return err
		}
	}
	if templates == "" {
		return nil
	}
	// Made from scratch, not cloned: the simulator shares device objects between a VM and its
	// clones, and templates that shared them would race when cloned concurrently.
	pool, err := finder.ResourcePool(ctx, "DC0_C0/Resources")
	if err != nil {
		return err
	}
	hosts, err := finder.HostSystemList(ctx, "DC0_C0/*")
	if err != nil {
		return err
	}
	datastore, err := finder.Datastore(ctx, "LocalDS_0")
	if err != nil {
		return err
	}
	network, err := finder.Network(ctx, "VM Network")
	if err != nil {
		return err
	}
	backing, err := network.EthernetCardBackingInfo(ctx)
	if err != nil {
		return err
	}
	for _, name := range strings.Split(templates, ",") {
		devices := object.VirtualDeviceList{}
		scsi, err := devices.CreateSCSIController("pvscsi")
		if err != nil {
			return err
		}
		devices = append(devices, scsi)
		disk := devices.CreateDisk(scsi.(types.BaseVirtualController), datastore.Reference(), "")
		disk.CapacityInKB = 10 * 1024 * 1024
		devices = append(devices, disk)
		nic, err := devices.CreateEthernetCard("vmxnet3", backing)
		if err != nil {
			return err
		}
		devices = append(devices, nic)
		changes, err := devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)
		if err != nil {
			return err
		}
		spec := types.VirtualMachineConfigSpec{
			Name:         name,
			GuestId:      "otherGuest64",
			NumCPUs:      1,
			MemoryMB:     1024,
			Files:        &types.VirtualMachineFileInfo{VmPathName: "[LocalDS_0]"},
			DeviceChange: changes,
		}
		task, err := folders.VmFolder.CreateVM(ctx, spec, pool, hosts[0])
		if err != nil {
			return err
		}
		info, err := task.WaitForResult(ctx, nil)
		if err != nil {
			return fmt.Errorf("creating %s: %w", name, err)
		}
		vm := object.NewVirtualMachine(client.Client, info.Result.(types.ManagedObjectReference))
		if err := vm.MarkAsTemplate(ctx); err != nil {
			return fmt.Errorf("marking %s as a template: %w", name, err)
		}
	}
	return nil
}
