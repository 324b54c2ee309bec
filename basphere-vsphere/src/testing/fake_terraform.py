#!@PYTHON@
"""A fake `terraform` for Basphere's tests. It checks what it is given (arguments, working
directory, files, environment), keeps a tiny vSphere of its own in STATE_DIR, records every
call, and can be told to fail, hang, or half-apply. STATE_DIR is written in by the test.

State: in `terraform.tfstate` in the working directory, or, when the configuration declares
`backend "pg"`, where Terraform's pg backend keeps it: in PostgreSQL, the table `states`
(`name`, `data`) of the schema given at init, a row per workspace (TF_WORKSPACE, else the one
.terraform/environment selects, else `default`), reached with the conn_str given at init and
PGPASSWORD, through psql. Commands that write the state (apply, destroy, import, state rm) take
the workspace's lock, shared by every replica as Terraform's is (a file lock in STATE_DIR here,
an advisory lock there), waiting as long as -lock-timeout says, and fail at once without it, as
Terraform does. A file `behaviour/delay-<command>` holding seconds makes every such command
that slow (while holding the lock). Init refuses what Terraform 1.0.3 refuses: a pg backend without
conn_str, -backend-config for a backend that is not declared, TF_WORKSPACE naming a workspace
that does not exist yet, and a local state left behind.

Its vSphere has the network `VM Network` and the distributed switch `dvs-tenants` (SWITCHES),
and keeps what it is given to make in STATE_DIR/vsphere: VMs, folders, and distributed port
groups (`vsphere_distributed_port_group.lan`, one per key of `for_each = var.port_groups`), which
it makes, changes, destroys and imports (by inventory path, `/<datacenter>/network/<name>`) as
the vSphere provider does, with vCenter's words for a name that is taken ("The name '...' already
exists."), for a network that is not there ("network '...' not found") and for a port group
that a VM is on."""
import fcntl, glob, json, os, re, shutil, subprocess, sys, time
from urllib.parse import quote

STATE_DIR = "@STATE_DIR@"
VSPHERE = os.path.join(STATE_DIR, "vsphere")
CALLS = os.path.join(STATE_DIR, "calls.jsonl")
BEHAVIOUR = os.path.join(STATE_DIR, "behaviour")
# Networks of the fake vCenter that are not Basphere's to make, and its distributed switches.
NETWORKS = {"VM Network"}
SWITCHES = {"dvs-tenants"}
PORT_GROUP = "vsphere_distributed_port_group.lan"
ALLOWED_ENV = {"PATH", "VSPHERE_USER", "VSPHERE_PASSWORD", "TF_IN_AUTOMATION", "TF_INPUT",
               "CHECKPOINT_DISABLE", "HOME", "TF_PLUGIN_CACHE_DIR", "TF_CLI_CONFIG_FILE", "TF_WORKSPACE",
               "PGPASSWORD"}


def die(message, code=1):
    print("Error: " + message)
    sys.exit(code)


def take(name):
    """Uses up one count of a behaviour file (its content is the count)."""
    path = os.path.join(BEHAVIOUR, name)
    if not os.path.exists(path):
        return False
    count = int(open(path).read().strip() or "0")
    if count <= 0:
        return False
    with open(path, "w") as f:
        f.write(str(count - 1))
    return True


def vars_():
    return json.load(open("terraform.tfvars.json"))


def vm_file(name):
    return os.path.join(VSPHERE, "vms", name + ".json")


def folder_file(path):
    return os.path.join(VSPHERE, "folders", path.replace("/", "__"))


def port_group_file(name):
    return os.path.join(VSPHERE, "port_groups", quote(name, safe="") + ".json")


def port_groups_in_vsphere():
    """Every distributed port group of the fake vCenter, by name."""
    found = {}
    for path in glob.glob(os.path.join(VSPHERE, "port_groups", "*.json")):
        group = json.load(open(path))
        found[group["name"]] = group
    return found


def network_exists(name):
    return name in NETWORKS or os.path.exists(port_group_file(name))


def next_id(kind):
    """A fresh managed object id (`dvportgroup-N`), never given twice."""
    path = os.path.join(VSPHERE, "next-id")
    number = int(open(path).read()) + 1 if os.path.exists(path) else 100
    open(path, "w").write(str(number))
    return "%s-%d" % (kind, number)


def hcl_unquote(text):
    """The value of an HCL quoted string's body, as Terraform reads an instance key."""
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            nxt = text[i + 1]
            if nxt == "u":
                out.append(chr(int(text[i + 2:i + 6], 16)))
                i += 6
                continue
            out.append({"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}[nxt])
            i += 2
        elif text.startswith("$${", i) or text.startswith("%%{", i):
            out.append(c)
            i += 2
        elif c == '"' or text.startswith("${", i) or text.startswith("%{", i):
            die("Invalid address: unescaped %r in an instance key" % text[i:i + 2], 1)
        else:
            out.append(c)
            i += 1
    return "".join(out)


def port_group_key(address):
    """The name in `vsphere_distributed_port_group.lan["<name>"]`."""
    match = re.fullmatch(r'vsphere_distributed_port_group\.lan\["(.*)"\]', address, re.S)
    if not match:
        die("unexpected resource address %s" % address, 2)
    return hcl_unquote(match.group(1))


def read_switch(v):
    """The `vsphere_distributed_virtual_switch` data source."""
    if v["switch"] not in SWITCHES:
        die("error fetching distributed virtual switch: network '%s' not found" % v["switch"])


def refresh_port_groups(state):
    """The state's port groups as vSphere has them now. One that is gone fails the refresh, as
    the provider's read does (it looks the port group up by its id)."""
    groups, gone = {}, []
    in_vsphere = {group["id"]: group for group in port_groups_in_vsphere().values()}
    for name, held in sorted(state.get("port_groups", {}).items()):
        if held["id"] in in_vsphere:
            groups[name] = dict(in_vsphere[held["id"]])
        else:
            gone.append(held["id"])
    if gone:
        for moid in gone:
            print('Error: could not find portgroup "%s": ServerFaultCode: The object '
                  "'vim.dvs.DistributedVirtualPortgroup:%s' has already been deleted or has not been completely created"
                  % (moid, moid))
        sys.exit(1)
    return groups


def show_port_groups(groups):
    resources = []
    for name, group in sorted(groups.items()):
        resources.append({"address": '%s[%s]' % (PORT_GROUP, json.dumps(name)), "mode": "managed",
                          "type": "vsphere_distributed_port_group", "name": "lan", "index": name,
                          "values": {"id": group["id"], "name": group["name"], "vlan_id": group["vlan_id"],
                                     "description": group["description"],
                                     "distributed_virtual_switch_uuid": group["switch_uuid"]}})
    return resources


def users_of(name):
    """The VMs on the port group `name`."""
    return sorted(os.path.basename(path)[:-len(".json")] for path in glob.glob(os.path.join(VSPHERE, "vms", "*.json"))
                  if json.load(open(path)).get("network") == name)


def port_groups(command, args, v, state):
    """A tenant network's working directory: `templates/port_groups.tf`."""
    wanted = v["port_groups"]
    if command == "apply":
        read_switch(v)
        groups = refresh_port_groups(state)
        errors, added, changed, destroyed = [], 0, 0, 0
        for name in sorted(set(groups) - set(wanted)):
            if users_of(name):
                errors.append("error waiting for portgroup deletion to complete: The resource '%s' is in use." % name)
                continue
            os.remove(port_group_file(name))
            del groups[name]
            destroyed += 1
        for name, vlan in sorted(wanted.items()):
            if name in groups:
                group = groups[name]
                if (group["vlan_id"], group["description"]) != (vlan, v["description"]):
                    group.update(vlan_id=vlan, description=v["description"])
                    json.dump(group, open(port_group_file(name), "w"))
                    changed += 1
                continue
            if network_exists(name):
                # vCenter's DuplicateName fault, as the provider passes it on.
                errors.append("error waiting for portgroup creation to complete: The name '%s' already exists." % name)
                continue
            group = {"id": next_id("dvportgroup"), "name": name, "vlan_id": vlan, "description": v["description"],
                     "switch": v["switch"], "switch_uuid": "dvs-uuid-" + v["switch"]}
            json.dump(group, open(port_group_file(name), "w"))
            groups[name] = group
            added += 1
        if take("half-apply"):
            die("timeout waiting for the port groups (vSphere made them, the state was not written)")
        save_state({"port_groups": groups} if groups else {})
        if errors:
            for error in errors:
                print("Error: " + error)
            sys.exit(1)
        if added + changed + destroyed == 0:
            print("No changes. Your infrastructure matches the configuration.")
        else:
            print("Apply complete! Resources: %d added, %d changed, %d destroyed." % (added, changed, destroyed))
        return
    if command == "import":
        if args[1:3] != ["-input=false", "-no-color"] or len(args) != 5:
            die("unexpected import arguments %s" % args, 2)
        name = port_group_key(args[3])
        if name not in wanted:
            die("Configuration for import target does not exist: %s" % args[3])
        expected = "/%s/network/%s" % (v["datacenter"], name)
        if args[4] != expected:
            die("import path %s is not %s" % (args[4], expected), 2)
        if name in state.get("port_groups", {}):
            die("Resource already managed by Terraform: %s" % args[3])
        if take("fail-import"):
            die("error locating portgroup: ServerFaultCode: Cannot complete login due to an incorrect user name or password (injected)")
        if name in NETWORKS:
            die('error locating portgroup: network at path "%s" is not a portgroup (type Network)' % args[4])
        if not os.path.exists(port_group_file(name)):
            # What the vSphere provider says (govmomi's finder) when no network is at the path.
            die("error locating portgroup: network '%s' not found" % args[4])
        state.setdefault("port_groups", {})[name] = json.load(open(port_group_file(name)))
        save_state(state)
        print("Import successful!")
        return
    if command == "output":
        print("{}")
        return
    if command == "show":
        if args[1:] != ["-json", "-no-color"]:
            die("unexpected show arguments %s" % args, 2)
        shown = {"format_version": "1.0"}
        if state.get("port_groups"):
            shown["values"] = {"root_module": {"resources": show_port_groups(state["port_groups"])}}
        print(json.dumps(shown))
        return
    if command == "state":
        if args[1:3] != ["rm", "-no-color"] or len(args) < 4:
            die("unexpected state arguments %s" % args, 2)
        held = state.get("port_groups", {})
        names = [port_group_key(address) for address in args[3:]]
        for address, name in zip(args[3:], names):
            if name not in held:
                die("Invalid target address: no matching objects found for %s" % address)
        for address, name in zip(args[3:], names):
            del held[name]
            print("Removed %s" % address)
        save_state(state if held else {})
        return
    if command == "destroy":
        if args[1:] != ["-auto-approve", "-input=false", "-no-color"]:
            die("unexpected destroy arguments %s" % args, 2)
        if take("fail-destroy"):
            die("the port group is locked by another task (injected)")
        read_switch(v)
        groups = refresh_port_groups(state)
        errors, destroyed = [], []
        for name in sorted(groups):
            if users_of(name):
                errors.append("error waiting for portgroup deletion to complete: The resource '%s' is in use." % name)
                continue
            os.remove(port_group_file(name))
            destroyed.append(name)
        for name in destroyed:
            del groups[name]
        save_state({"port_groups": groups} if groups else {})
        if errors:
            for error in errors:
                print("Error: " + error)
            sys.exit(1)
        print("Destroy complete! Resources: %d destroyed." % len(destroyed))
        return
    die("unknown command %s" % command, 2)


def declares_pg():
    """Whether the configuration declares Terraform's pg backend."""
    return any('backend "pg"' in open(f).read() for f in glob.glob("*.tf"))


def psql(conn_str, sql, **variables):
    """Runs SQL (with psql variables) on the database conn_str names; what it printed."""
    binary = shutil.which("psql") or (sorted(glob.glob("/usr/lib/postgresql/*/bin/psql")) or ["psql"])[-1]
    command = [binary, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conn_str]
    for name, value in variables.items():
        command += ["-v", "%s=%s" % (name, value)]
    done = subprocess.run(command, input=sql, capture_output=True, text=True)
    if done.returncode != 0:
        die("Failed to query the pg backend: %s" % done.stderr.strip())
    return done.stdout.strip()


def workspace():
    if os.environ.get("TF_WORKSPACE"):
        return os.environ["TF_WORKSPACE"]
    if os.path.exists(".terraform/environment"):
        return open(".terraform/environment").read().strip() or "default"
    return "default"


def pg_backend():
    """The pg settings init recorded, as Terraform records them in .terraform/terraform.tfstate."""
    recorded = ".terraform/terraform.tfstate"
    if not os.path.exists(recorded):
        die('Backend initialization required, please run "terraform init"')
    backend = json.load(open(recorded)).get("backend", {})
    if backend.get("type") != "pg":
        die('Backend configuration changed: run "terraform init"')
    return backend["config"]


def load_state():
    """The state of this directory (pg: of the selected workspace, made empty if new)."""
    if not declares_pg():
        return json.load(open("terraform.tfstate")) if os.path.exists("terraform.tfstate") else {}
    config = pg_backend()
    schema = config["schema_name"]
    data = psql(config["conn_str"], "SELECT data FROM :\"schema\".states WHERE name = :'ws';", schema=schema, ws=workspace())
    if not data:
        # Terraform's pg backend writes an empty state when a workspace is first used.
        save_state({})
        return {}
    return json.loads(data)


def save_state(state):
    if not declares_pg():
        if state:
            json.dump(state, open("terraform.tfstate", "w"))
        elif os.path.exists("terraform.tfstate"):
            os.remove("terraform.tfstate")
        return
    config = pg_backend()
    psql(config["conn_str"], "INSERT INTO :\"schema\".states (name, data) VALUES (:'ws', :'data') "
         "ON CONFLICT (name) DO UPDATE SET data = EXCLUDED.data;",
         schema=config["schema_name"], ws=workspace(), data=json.dumps(state))


def delay(command):
    path = os.path.join(BEHAVIOUR, "delay-" + command)
    if os.path.exists(path):
        time.sleep(float(open(path).read().strip() or "0"))


def lock_state(timeout):
    """Takes the workspace's lock (pg backend) for the rest of this process, like Terraform."""
    if not declares_pg():
        return None
    config = pg_backend()
    os.makedirs(os.path.join(STATE_DIR, "locks"), exist_ok=True)
    held = open(os.path.join(STATE_DIR, "locks", "%s.%s" % (config["schema_name"], workspace())), "w")
    deadline = time.time() + timeout
    while True:
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return held
        except BlockingIOError:
            if time.time() >= deadline:
                die("Error acquiring the state lock: workspace %s is locked by another terraform" % workspace())
            time.sleep(0.05)


def init(args):
    if args[:2] != ["-input=false", "-no-color"]:
        die("unexpected init arguments %s" % args, 2)
    settings = {}
    for arg in args[2:]:
        if arg == "-reconfigure":
            continue
        if not arg.startswith("-backend-config="):
            die("unexpected init argument %s" % arg, 2)
        key, _, value = arg[len("-backend-config="):].partition("=")
        settings[key] = value
    if not declares_pg():
        if settings:
            die('Invalid backend configuration argument: the local backend takes no %s' % sorted(settings))
        os.makedirs(".terraform", exist_ok=True)
        open(".terraform.lock.hcl", "w").write("# fake lock\n")
        print("Terraform has been successfully initialized!")
        return
    unknown = set(settings) - {"conn_str", "schema_name", "skip_schema_creation"}
    if unknown:
        die('Invalid backend configuration argument: An argument named "%s" is not expected here.' % sorted(unknown)[0])
    if not settings.get("conn_str"):
        die('The argument "conn_str" is required, but no definition was found.')
    if "-reconfigure" not in args and os.path.exists(".terraform/terraform.tfstate"):
        die("Backend configuration changed: use -reconfigure or -migrate-state")
    if os.path.exists("terraform.tfstate") and os.path.getsize("terraform.tfstate") > 0:
        die("Do you want to copy existing state to the new backend? (input is disabled)")
    schema = settings.get("schema_name", "terraform_remote_state")
    psql(settings["conn_str"], "CREATE SCHEMA IF NOT EXISTS :\"schema\";\n"
         "CREATE TABLE IF NOT EXISTS :\"schema\".states (id bigserial PRIMARY KEY, name text UNIQUE, data text);",
         schema=schema)
    ws = workspace()
    if ws != "default" and not psql(settings["conn_str"], "SELECT 1 FROM :\"schema\".states WHERE name = :'ws';",
                                   schema=schema, ws=ws):
        die("Failed to select workspace: the currently selected workspace (%s) does not exist, and input is disabled" % ws)
    os.makedirs(".terraform", exist_ok=True)
    json.dump({"version": 3, "backend": {"type": "pg", "config": {"conn_str": settings["conn_str"], "schema_name": schema}}},
              open(".terraform/terraform.tfstate", "w"))
    open(".terraform.lock.hcl", "w").write("# fake lock\n")
    print('Successfully configured the backend "pg"! Terraform has been successfully initialized!')


def main():
    args = sys.argv[1:]
    os.makedirs(os.path.join(VSPHERE, "vms"), exist_ok=True)
    os.makedirs(os.path.join(VSPHERE, "folders"), exist_ok=True)
    os.makedirs(os.path.join(VSPHERE, "port_groups"), exist_ok=True)
    with open(CALLS, "a") as log:
        log.write(json.dumps({"args": args, "cwd": os.getcwd(), "env": sorted(os.environ),
                              "user": os.environ.get("VSPHERE_USER")}) + "\n")
    # Python itself sets LC_CTYPE when no locale is set (PEP 538); anything else came from outside.
    unexpected = set(os.environ) - ALLOWED_ENV - {"LC_CTYPE"}
    if unexpected:
        die("unexpected environment variables: %s" % sorted(unexpected), 97)
    if not args:
        die("no command", 2)
    command = args[0]
    if command == "version":
        print("Terraform v1.0.3 (fake)")
        return
    if not os.environ.get("VSPHERE_USER") or not os.environ.get("VSPHERE_PASSWORD"):
        die("no vSphere credentials in the environment", 98)
    if not os.path.exists("main.tf") or not os.path.exists("terraform.tfvars.json"):
        die("main.tf and terraform.tfvars.json must be in the working directory", 99)
    if oct(os.stat(".").st_mode & 0o777) != "0o700":
        die("the working directory is not private: %s" % oct(os.stat(".").st_mode & 0o777), 96)
    if command == "init":
        init(args[1:])
        return
    if not os.path.exists(".terraform"):
        die("run terraform init first", 1)
    if declares_pg() and os.path.exists("terraform.tfstate"):
        die("a local terraform.tfstate beside a pg backend: the state would be split", 95)
    lock_timeout = 0.0
    for arg in list(args):
        if arg.startswith("-lock-timeout="):
            if command not in ("apply", "destroy", "import", "state"):
                die("terraform %s takes no -lock-timeout" % command, 2)
            value = arg[len("-lock-timeout="):]
            if not value.endswith("s") or not value[:-1].isdigit():
                die("invalid -lock-timeout %s" % value, 2)
            lock_timeout = float(value[:-1])
            args.remove(arg)
    held = lock_state(lock_timeout) if command in ("apply", "destroy", "import", "state") else None
    if held is not None:
        delay(command)
    v = vars_()
    state = load_state()
    if command == "apply":
        if args[1:] != ["-auto-approve", "-input=false", "-no-color"]:
            die("unexpected apply arguments %s" % args, 2)
        if take("fail-apply"):
            die("the vSphere API refused the request (injected)")
        if take("hang-apply"):
            subprocess.Popen(["sleep", "3017"])  # a grandchild (a duration nothing else uses): the timeout must kill it too
            time.sleep(300)
    if "port_groups" in v:
        port_groups(command, args, v, state)
        return
    if command == "apply":
        if "vm_name" not in v:
            if state.get("folder") == v["folder"]:
                print("No changes. Your infrastructure matches the configuration.")
                return
            if os.path.exists(folder_file(v["folder"])):
                die("folder '%s' already exists" % v["folder"])
            open(folder_file(v["folder"]), "w").write("folder")
            save_state({"folder": v["folder"]})
            print("Apply complete! Resources: 1 added, 0 changed, 0 destroyed.")
            return
        if "name" in state:
            print("No changes. Your infrastructure matches the configuration.")
            return
        name = v["vm_name"]
        if os.path.exists(vm_file(name)):
            die('a virtual machine named "%s" already exists in folder %s' % (name, v["folder"]))
        if not os.path.exists(folder_file(v["folder"])):
            die("folder %s not found" % v["folder"])
        if not network_exists(v["network"]):
            # The `vsphere_network` data source, as the provider words it (govmomi's finder).
            die("error fetching network: error finding network %s: network '%s' not found" % (v["network"], v["network"]))
        count = len(os.listdir(os.path.join(VSPHERE, "vms")))
        vm = {"moid": "vm-%d" % (1000 + count), "basphere_id": v["basphere_id"], "folder": v["folder"],
              "num_cpus": v["num_cpus"], "memory": v["memory"], "disk_size": v["disk_size"], "template": v["template"],
              "network": v["network"]}
        json.dump(vm, open(vm_file(name), "w"))
        if take("half-apply"):
            die("timeout waiting for the guest network (the VM was made, the state was not written)")
        save_state({"name": name, "moid": vm["moid"], "basphere_id": vm["basphere_id"]})
        print("Apply complete! Resources: 1 added, 0 changed, 0 destroyed.")
        return
    if command == "import":
        if args[1:4] != ["-input=false", "-no-color", "vsphere_virtual_machine.vm"] or len(args) != 5:
            die("unexpected import arguments %s" % args, 2)
        name = v["vm_name"]
        expected = "/%s/vm/%s/%s" % (v["datacenter"], v["folder"], name)
        if args[4] != expected:
            die("import path %s is not %s" % (args[4], expected), 2)
        if "name" in state:
            die("Resource already managed by Terraform: vsphere_virtual_machine.vm")
        if take("fail-import"):
            die("error fetching virtual machine: ServerFaultCode: Cannot complete login due to an incorrect user name or password (injected)")
        if not os.path.exists(vm_file(name)):
            # What the vSphere provider says (govmomi's finder) when no VM is at the path.
            die("error fetching virtual machine: vm '%s' not found" % args[4])
        vm = json.load(open(vm_file(name)))
        save_state({"name": name, "moid": vm["moid"], "basphere_id": vm["basphere_id"]})
        print("Import successful!")
        return
    if command == "output":
        if args[1:] != ["-json"]:
            die("unexpected output arguments %s" % args, 2)
        if "name" not in state:
            print("{}")
            return
        print(json.dumps({"vm_moid": {"value": state["moid"]}, "vm_id": {"value": state["moid"]},
                          "vsphere_vm_name": {"value": state["name"]}, "basphere_id": {"value": state["basphere_id"]}}))
        return
    if command == "show":
        if args[1:] != ["-json", "-no-color"]:
            die("unexpected show arguments %s" % args, 2)
        shown = {"format_version": "1.0"}
        if "name" in state:
            vm = {"address": "vsphere_virtual_machine.vm", "mode": "managed", "type": "vsphere_virtual_machine",
                  "name": "vm", "values": {"name": state["name"], "moid": state["moid"],
                                           "extra_config": {"guestinfo.basphere.id": state["basphere_id"]}}}
            shown["values"] = {"root_module": {"resources": [vm]}}
        print(json.dumps(shown))
        return
    if command == "state":
        if args[1:] != ["rm", "-no-color", "vsphere_virtual_machine.vm"]:
            die("unexpected state arguments %s" % args, 2)
        if "name" not in state:
            die("Invalid target address: no matching objects found")
        save_state({})
        print("Removed vsphere_virtual_machine.vm")
        return
    if command == "destroy":
        if args[1:] != ["-auto-approve", "-input=false", "-no-color"]:
            die("unexpected destroy arguments %s" % args, 2)
        if take("fail-destroy"):
            die("the VM is locked by another task (injected)")
        if "name" in state and os.path.exists(vm_file(state["name"])):
            os.remove(vm_file(state["name"]))
        save_state({})
        print("Destroy complete! Resources: 1 destroyed.")
        return
    die("unknown command %s" % command, 2)


main()
