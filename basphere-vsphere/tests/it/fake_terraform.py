#!@PYTHON@
"""A fake `terraform` for Basphere's tests. It checks what it is given (arguments, working
directory, files, environment), keeps a tiny vSphere of its own in STATE_DIR, records every
call, and can be told to fail, hang, or half-apply. STATE_DIR is written in by the test."""
import json, os, subprocess, sys, time

STATE_DIR = "@STATE_DIR@"
VSPHERE = os.path.join(STATE_DIR, "vsphere")
CALLS = os.path.join(STATE_DIR, "calls.jsonl")
BEHAVIOUR = os.path.join(STATE_DIR, "behaviour")
ALLOWED_ENV = {"PATH", "VSPHERE_USER", "VSPHERE_PASSWORD", "TF_IN_AUTOMATION", "TF_INPUT",
               "CHECKPOINT_DISABLE", "HOME", "TF_PLUGIN_CACHE_DIR", "TF_CLI_CONFIG_FILE"}


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


def main():
    args = sys.argv[1:]
    os.makedirs(os.path.join(VSPHERE, "vms"), exist_ok=True)
    os.makedirs(os.path.join(VSPHERE, "folders"), exist_ok=True)
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
        if args[1:] != ["-input=false", "-no-color"]:
            die("unexpected init arguments %s" % args, 2)
        os.makedirs(".terraform", exist_ok=True)
        open(".terraform.lock.hcl", "w").write("# fake lock\n")
        print("Terraform has been successfully initialized!")
        return
    if not os.path.exists(".terraform"):
        die("run terraform init first", 1)
    v = vars_()
    if command == "apply":
        if args[1:] != ["-auto-approve", "-input=false", "-no-color"]:
            die("unexpected apply arguments %s" % args, 2)
        if take("fail-apply"):
            die("the vSphere API refused the request (injected)")
        if take("hang-apply"):
            subprocess.Popen(["sleep", "3017"])  # a grandchild (a duration nothing else uses): the timeout must kill it too
            time.sleep(300)
        if "vm_name" not in v:
            open(folder_file(v["folder"]), "w").write("folder")
            json.dump({"folder": v["folder"]}, open("terraform.tfstate", "w"))
            print("Apply complete! Resources: 1 added, 0 changed, 0 destroyed.")
            return
        if os.path.exists("terraform.tfstate"):
            print("No changes. Your infrastructure matches the configuration.")
            return
        name = v["vm_name"]
        if os.path.exists(vm_file(name)):
            die('a virtual machine named "%s" already exists in folder %s' % (name, v["folder"]))
        if not os.path.exists(folder_file(v["folder"])):
            die("folder %s not found" % v["folder"])
        count = len(os.listdir(os.path.join(VSPHERE, "vms")))
        vm = {"moid": "vm-%d" % (1000 + count), "basphere_id": v["basphere_id"], "folder": v["folder"],
              "num_cpus": v["num_cpus"], "memory": v["memory"], "disk_size": v["disk_size"], "template": v["template"]}
        json.dump(vm, open(vm_file(name), "w"))
        if take("half-apply"):
            die("timeout waiting for the guest network (the VM was made, the state was not written)")
        json.dump({"name": name, "moid": vm["moid"], "basphere_id": vm["basphere_id"]}, open("terraform.tfstate", "w"))
        print("Apply complete! Resources: 1 added, 0 changed, 0 destroyed.")
        return
    if command == "import":
        if args[1:4] != ["-input=false", "-no-color", "vsphere_virtual_machine.vm"] or len(args) != 5:
            die("unexpected import arguments %s" % args, 2)
        name = v["vm_name"]
        expected = "/%s/vm/%s/%s" % (v["datacenter"], v["folder"], name)
        if args[4] != expected:
            die("import path %s is not %s" % (args[4], expected), 2)
        vm = json.load(open(vm_file(name)))
        json.dump({"name": name, "moid": vm["moid"], "basphere_id": vm["basphere_id"]}, open("terraform.tfstate", "w"))
        print("Import successful!")
        return
    if command == "output":
        if args[1:] != ["-json"]:
            die("unexpected output arguments %s" % args, 2)
        state = json.load(open("terraform.tfstate"))
        print(json.dumps({"vm_moid": {"value": state["moid"]}, "vm_id": {"value": state["moid"]},
                          "vsphere_vm_name": {"value": state["name"]}, "basphere_id": {"value": state["basphere_id"]}}))
        return
    if command == "show":
        if args[1:] != ["-json", "-no-color"]:
            die("unexpected show arguments %s" % args, 2)
        shown = {"format_version": "1.0"}
        state = json.load(open("terraform.tfstate")) if os.path.exists("terraform.tfstate") else {}
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
        if os.path.exists("terraform.tfstate"):
            os.remove("terraform.tfstate")
        print("Removed vsphere_virtual_machine.vm")
        return
    if command == "destroy":
        if args[1:] != ["-auto-approve", "-input=false", "-no-color"]:
            die("unexpected destroy arguments %s" % args, 2)
        if take("fail-destroy"):
            die("the VM is locked by another task (injected)")
        if os.path.exists("terraform.tfstate"):
            state = json.load(open("terraform.tfstate"))
            if "name" in state and os.path.exists(vm_file(state["name"])):
                os.remove(vm_file(state["name"]))
            os.remove("terraform.tfstate")
        print("Destroy complete! Resources: 1 destroyed.")
        return
    die("unknown command %s" % command, 2)


main()
