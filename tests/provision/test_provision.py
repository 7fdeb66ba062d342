"""playbooks/provision.yml and playbooks/teardown.yml against a local moto server.

Run from the repository root:  .venv/bin/pytest tests/provision -q
The moto server, the fake AMIs and the unrelated resources are set up by fixtures; nothing reaches AWS.
"""

import ipaddress
import json
import os
import re
import time
from pathlib import Path

import boto3
import pytest
import yaml
from playbook import ansible_env, run

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
INVENTORY = HERE / "inventory"
SETTINGS = yaml.safe_load((INVENTORY / "group_vars" / "all" / "aws.yml").read_text())

REGION = SETTINGS["aws_instance_region"]
ENV_NAME = SETTINGS["aws_instance_env"]
NAME = f"flask-stack-{ENV_NAME}-web"
OUR_TAGS = {"Project": "flask-stack", "Environment": ENV_NAME, "Name": NAME}
# The security group holds networks in address/prefix form: a single address becomes /32 or /128.
ADMIN_NETWORKS = [ipaddress.ip_network(c).with_prefixlen for c in SETTINGS["aws_instance_admin_cidrs"]]
ADMIN_V4 = [c for c in ADMIN_NETWORKS if ":" not in c]
ADMIN_V6 = [c for c in ADMIN_NETWORKS if ":" in c]
PUBLIC_PORTS = (80, 443)
AMI_PREFIX = SETTINGS["aws_instance_ami_name"].rstrip("*")

RECAP_RE = re.compile(
    r"^localhost\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)
LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]


# ---------------------------------------------------------------------------------------------- helpers


def run_playbook(playbook, endpoint, inventory_file, *extra_vars):
    """Run one of the repo's playbooks against moto; returns (CompletedProcess, seconds)."""
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "ANSIBLE_")) and key not in ("EC2_URL", "EC2_REGION")
    }
    env = ansible_env(
        project_config=False,
        base=clean,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        # Works with or without an ansible.cfg at the repo root.
        ANSIBLE_ROLES_PATH=str(REPO / "roles"),
        ANSIBLE_STDOUT_CALLBACK="default",
        ANSIBLE_RETRY_FILES_ENABLED="false",
    )
    args = ["-e", f"aws_endpoint_url={endpoint}", "-e", f"aws_instance_inventory_file={inventory_file}"]
    for extra in extra_vars:
        args += ["-e", extra]
    proc = run(INVENTORY, REPO / "playbooks" / playbook, *args, env=env, timeout=900)
    return proc, proc.seconds


def recap(proc):
    match = RECAP_RE.search(proc.stdout)
    assert match, f"no PLAY RECAP for localhost in output:\n{proc.stdout}\n{proc.stderr}"
    return {key: int(value) for key, value in match.groupdict().items()}


def output(proc):
    return f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"


def tag_filters(tags):
    return [{"Name": f"tag:{key}", "Values": [value]} for key, value in tags.items()]


def tags_of(resource):
    return {tag["Key"]: tag["Value"] for tag in resource.get("Tags", [])}


def ours(ec2):
    """Everything in moto that carries this environment's tags (live instances only)."""
    filters = tag_filters(OUR_TAGS)
    instances = [
        instance
        for reservation in ec2.describe_instances(Filters=filters + [{"Name": "instance-state-name", "Values": LIVE_STATES}])[
            "Reservations"
        ]
        for instance in reservation["Instances"]
    ]
    return {
        "security_groups": ec2.describe_security_groups(Filters=filters)["SecurityGroups"],
        "key_pairs": ec2.describe_key_pairs(Filters=filters, IncludePublicKey=True)["KeyPairs"],
        "instances": instances,
        "addresses": ec2.describe_addresses(Filters=filters)["Addresses"],
    }


def snapshot(ec2):
    """Ids of every resource of the kinds the role manages (live instances only)."""
    return {
        "security_groups": {g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]},
        "key_pairs": {k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]},
        "instances": {
            i["InstanceId"]
            for r in ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": LIVE_STATES}])["Reservations"]
            for i in r["Instances"]
        },
        "addresses": {a["AllocationId"] for a in ec2.describe_addresses()["Addresses"]},
    }


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ec2(moto_endpoint):
    return boto3.client(
        "ec2",
        endpoint_url=moto_endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def world(ec2):
    """Fake Ubuntu AMIs (an older and a newer one) plus resources the role must never touch."""
    older = ec2.register_image(
        Name=f"{AMI_PREFIX}20240423", RootDeviceName="/dev/sda1", Architecture="x86_64", VirtualizationType="hvm"
    )["ImageId"]
    # moto stamps CreationDate with a one-second resolution.
    time.sleep(1.5)
    newer = ec2.register_image(
        Name=f"{AMI_PREFIX}20250115", RootDeviceName="/dev/sda1", Architecture="x86_64", VirtualizationType="hvm"
    )["ImageId"]
    # An image whose name does not match the pattern, registered last: must not be picked either.
    time.sleep(1.5)
    ec2.register_image(Name="someone-else/ubuntu-noble-24.04-arm64-server-20991231", RootDeviceName="/dev/sda1")

    vpc_id = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    staging_tags = {"Project": "flask-stack", "Environment": "staging", "Name": "flask-stack-staging-web"}

    def staging_spec(kind):
        return [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in staging_tags.items()]}]

    unrelated_sg = ec2.create_security_group(GroupName="unrelated-sg", Description="not ours", VpcId=vpc_id)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=unrelated_sg,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )
    staging_sg = ec2.create_security_group(
        GroupName="flask-stack-staging-web",
        Description="another environment",
        VpcId=vpc_id,
        TagSpecifications=staging_spec("security-group"),
    )["GroupId"]
    ec2.create_key_pair(KeyName="unrelated-key")
    ec2.import_key_pair(
        KeyName="flask-stack-staging-web",
        PublicKeyMaterial=b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKe/+0ICz6WHiqAAVMq/q8j64URuTnQgon1xkCvxeiI7 staging",
        TagSpecifications=staging_spec("key-pair"),
    )
    unrelated_instance = ec2.run_instances(
        ImageId=older, InstanceType="t3.nano", MinCount=1, MaxCount=1, SecurityGroupIds=[unrelated_sg]
    )["Instances"][0]["InstanceId"]
    staging_instance = ec2.run_instances(
        ImageId=older,
        InstanceType="t3.nano",
        MinCount=1,
        MaxCount=1,
        SecurityGroupIds=[staging_sg],
        TagSpecifications=staging_spec("instance"),
    )["Instances"][0]["InstanceId"]
    # Unassociated addresses the role must neither reuse nor release.
    unrelated_eip = ec2.allocate_address(Domain="vpc")["AllocationId"]
    staging_eip = ec2.allocate_address(Domain="vpc", TagSpecifications=staging_spec("elastic-ip"))["AllocationId"]

    return {
        "older_ami": older,
        "newer_ami": newer,
        "vpc_id": vpc_id,
        "unrelated": {
            "security_groups": {unrelated_sg, staging_sg},
            "key_pairs": {"unrelated-key", "flask-stack-staging-web"},
            "instances": {unrelated_instance, staging_instance},
            "addresses": {unrelated_eip, staging_eip},
        },
    }


@pytest.fixture(scope="module")
def inventory_file(tmp_path_factory):
    # A temporary path, so the repo's inventories are never written.
    return tmp_path_factory.mktemp("inventory") / "hosts.aws.yml"


# ---------------------------------------------------------------------------------------------- bad input


BAD_INPUTS = {
    "admin-cidr": ('{"aws_instance_admin_cidrs": ["203.0.113.7/32", "not-a-cidr"]}', "aws_instance_admin_cidrs", "not-a-cidr"),
    "admin-cidr-host-bits": ('{"aws_instance_admin_cidrs": ["10.1.2.3/8"]}', "aws_instance_admin_cidrs[0]", "10.1.2.3/8"),
    "admin-cidr-empty": ('{"aws_instance_admin_cidrs": []}', "aws_instance_admin_cidrs", "must list the networks"),
    "instance-type": ('{"aws_instance_type": ""}', "aws_instance_type", 'got: ""'),
    "region": ('{"aws_instance_region": ""}', "aws_instance_region", 'got: ""'),
    "port": ('{"aws_instance_public_ports": [80, 70000]}', "aws_instance_public_ports", "70000"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_fails_before_touching_aws(case, moto_endpoint, ec2, world, inventory_file):
    extra, variable, bad_value = BAD_INPUTS[case]
    before = snapshot(ec2)

    proc, _ = run_playbook("provision.yml", moto_endpoint, inventory_file, extra)

    assert proc.returncode != 0, output(proc)
    assert recap(proc)["failed"] == 1
    failure = "\n".join(line for line in proc.stdout.splitlines() if "fatal:" in line or "msg" in line or "got" in line)
    assert variable in proc.stdout, output(proc)
    assert bad_value in proc.stdout, output(proc)
    assert "Validate" in proc.stdout.split("fatal:")[0].rsplit("TASK [", 1)[-1], f"failed outside validation:\n{failure}"
    assert snapshot(ec2) == before, "a rejected run changed moto"
    assert not any(ours(ec2).values())
    assert not inventory_file.exists()


# ---------------------------------------------------------------------------------------------- lifecycle


def test_provision_is_idempotent_and_teardown_is_exact(moto_endpoint, ec2, world, inventory_file, timings, record_property):
    # ---- first provision
    proc, seconds = run_playbook("provision.yml", moto_endpoint, inventory_file)
    timings.append(f"provision, first run: {seconds:.1f}s")
    record_property("provision_seconds", round(seconds, 1))
    print(f"\nprovision (first run): {seconds:.1f}s")
    assert proc.returncode == 0, output(proc)
    assert recap(proc)["changed"] > 0

    found = ours(ec2)

    # Security group: exactly SSH from the admin CIDRs and the public ports from everywhere, nothing else inbound.
    assert len(found["security_groups"]) == 1, found["security_groups"]
    sg = found["security_groups"][0]
    assert sg["GroupName"] == NAME
    assert sg["VpcId"] == world["vpc_id"]
    assert tags_of(sg).items() >= OUR_TAGS.items()
    rules = set()
    for perm in sg["IpPermissions"]:
        assert not perm.get("UserIdGroupPairs") and not perm.get("PrefixListIds"), perm
        for rng in perm.get("IpRanges", []):
            rules.add((perm["IpProtocol"], perm["FromPort"], perm["ToPort"], rng["CidrIp"]))
        for rng in perm.get("Ipv6Ranges", []):
            rules.add((perm["IpProtocol"], perm["FromPort"], perm["ToPort"], rng["CidrIpv6"]))
    expected = {("tcp", 22, 22, cidr) for cidr in ADMIN_V4 + ADMIN_V6}
    expected |= {("tcp", port, port, cidr) for port in PUBLIC_PORTS for cidr in ("0.0.0.0/0", "::/0")}
    assert rules == expected

    # Key pair: the operator's key.
    assert len(found["key_pairs"]) == 1, found["key_pairs"]
    key = found["key_pairs"][0]
    assert key["KeyName"] == NAME
    assert key["PublicKey"].split()[:2] == SETTINGS["aws_instance_ssh_public_key"].split()[:2]

    # Instance: one, running, right type, newest matching AMI, our key, group and tags.
    assert len(found["instances"]) == 1, found["instances"]
    instance = found["instances"][0]
    assert instance["State"]["Name"] == "running"
    assert instance["InstanceType"] == SETTINGS["aws_instance_type"]
    assert instance["ImageId"] == world["newer_ami"]
    assert instance["KeyName"] == NAME
    assert [g["GroupId"] for g in instance["SecurityGroups"]] == [sg["GroupId"]]
    assert tags_of(instance).items() >= OUR_TAGS.items()

    # Elastic IP: a new tagged address (the unrelated free ones were not taken), associated with the instance.
    assert len(found["addresses"]) == 1, found["addresses"]
    eip = found["addresses"][0]
    assert eip["InstanceId"] == instance["InstanceId"]
    assert eip["AllocationId"] not in world["unrelated"]["addresses"]

    # Inventory handoff.
    written = yaml.safe_load(inventory_file.read_text())
    host = written["all"]["children"]["web"]["hosts"][NAME]
    assert host == {"ansible_host": eip["PublicIp"], "ansible_user": "ubuntu"}

    # ---- second provision: nothing to do
    proc, seconds = run_playbook("provision.yml", moto_endpoint, inventory_file)
    timings.append(f"provision, second run: {seconds:.1f}s")
    print(f"provision (second run): {seconds:.1f}s")
    assert proc.returncode == 0, output(proc)
    second = recap(proc)
    timings.append(f"provision, second run PLAY RECAP: changed={second['changed']}")
    assert second["changed"] == 0, output(proc)
    again = ours(ec2)
    assert [i["InstanceId"] for i in again["instances"]] == [instance["InstanceId"]]
    assert [a["PublicIp"] for a in again["addresses"]] == [eip["PublicIp"]]

    # ---- teardown
    proc, seconds = run_playbook("teardown.yml", moto_endpoint, inventory_file)
    timings.append(f"teardown: {seconds:.1f}s")
    record_property("teardown_seconds", round(seconds, 1))
    print(f"teardown: {seconds:.1f}s")
    assert proc.returncode == 0, output(proc)

    assert not any(ours(ec2).values()), ours(ec2)
    reservations = ec2.describe_instances(InstanceIds=[instance["InstanceId"]])["Reservations"]
    assert reservations[0]["Instances"][0]["State"]["Name"] == "terminated"
    assert not [k for k in ec2.describe_key_pairs()["KeyPairs"] if k["KeyName"] == NAME]
    assert not [g for g in ec2.describe_security_groups()["SecurityGroups"] if g["GroupName"] == NAME]
    assert eip["AllocationId"] not in {a["AllocationId"] for a in ec2.describe_addresses()["Addresses"]}
    assert not inventory_file.exists()

    # Everything without this environment's tags survived.
    remaining = snapshot(ec2)
    for kind, ids in world["unrelated"].items():
        assert ids <= remaining[kind], f"teardown removed unrelated {kind}: {ids - remaining[kind]}"

    # ---- teardown again: nothing left to do
    proc, seconds = run_playbook("teardown.yml", moto_endpoint, inventory_file)
    timings.append(f"teardown, second run: {seconds:.1f}s")
    assert proc.returncode == 0, output(proc)
    assert recap(proc)["changed"] == 0, output(proc)


# ---------------------------------------------------------------------------------------------- several hosts

CLUSTER_ENV = "moto-cluster"
CLUSTER_HOSTS = [
    {"name": "lb1", "groups": ["lb"]},
    {"name": "web1", "groups": ["web", "worker"]},
    {"name": "web2", "groups": ["web", "worker"]},
    {"name": "redis1", "groups": ["redis"]},
]
CLUSTER_VARS = json.dumps({"aws_instance_env": CLUSTER_ENV, "aws_instance_hosts": CLUSTER_HOSTS})
CLUSTER_PREFIX = f"flask-stack-{CLUSTER_ENV}"


def cluster_resources(ec2):
    env = [{"Name": "tag:Project", "Values": ["flask-stack"]}, {"Name": "tag:Environment", "Values": [CLUSTER_ENV]}]
    return {
        "security_groups": {g["GroupName"]: g for g in ec2.describe_security_groups(Filters=env)["SecurityGroups"]},
        "instances": {
            tags_of(i)["Name"]: i
            for r in ec2.describe_instances(Filters=env + [{"Name": "instance-state-name", "Values": LIVE_STATES}])[
                "Reservations"
            ]
            for i in r["Instances"]
        },
        "addresses": ec2.describe_addresses(Filters=env)["Addresses"],
    }


def sg_rules(sg):
    """Inbound rules as (port, source): a CIDR or ("group", group id)."""
    rules = set()
    for perm in sg["IpPermissions"]:
        assert perm["IpProtocol"] == "tcp" and perm["FromPort"] == perm["ToPort"], perm
        assert not perm.get("PrefixListIds"), perm
        for rng in perm.get("IpRanges", []):
            rules.add((perm["FromPort"], rng["CidrIp"]))
        for rng in perm.get("Ipv6Ranges", []):
            rules.add((perm["FromPort"], rng["CidrIpv6"]))
        for pair in perm.get("UserIdGroupPairs", []):
            rules.add((perm["FromPort"], ("group", pair["GroupId"])))
    return rules


def test_several_hosts_get_an_lb_group_and_an_app_group_open_only_to_it(moto_endpoint, ec2, world, tmp_path):
    inventory_file = tmp_path / "hosts.aws.yml"
    before = snapshot(ec2)
    proc, seconds = run_playbook("provision.yml", moto_endpoint, inventory_file, CLUSTER_VARS)
    print(f"\nprovision of 4 hosts: {seconds:.1f}s")
    assert proc.returncode == 0, output(proc)

    found = cluster_resources(ec2)
    lb, app = found["security_groups"][f"{CLUSTER_PREFIX}-lb"], found["security_groups"][f"{CLUSTER_PREFIX}-app"]
    assert set(found["security_groups"]) == {lb["GroupName"], app["GroupName"]}
    ssh = {(22, cidr) for cidr in ADMIN_V4 + ADMIN_V6}
    # the LB: the web ports from the world, SSH from the admin networks
    assert sg_rules(lb) == ssh | {(port, cidr) for port in PUBLIC_PORTS for cidr in ("0.0.0.0/0", "::/0")}
    # the app hosts: the web ports only from the LB group, Redis only from the app group, SSH from the admins
    assert sg_rules(app) == ssh | {(port, ("group", lb["GroupId"])) for port in PUBLIC_PORTS} | {
        (6379, ("group", app["GroupId"]))}
    for sg in (lb, app):
        assert tags_of(sg)["Name"] == sg["GroupName"] and tags_of(sg)["Environment"] == CLUSTER_ENV

    # each instance in the group its inventory groups call for
    groups_of = {name: [g["GroupId"] for g in i["SecurityGroups"]] for name, i in found["instances"].items()}
    assert groups_of == {
        f"{CLUSTER_PREFIX}-lb1": [lb["GroupId"]],
        f"{CLUSTER_PREFIX}-web1": [app["GroupId"]],
        f"{CLUSTER_PREFIX}-web2": [app["GroupId"]],
        f"{CLUSTER_PREFIX}-redis1": [app["GroupId"]],
    }
    assert len(found["addresses"]) == 4

    # the inventory: each host in its groups, with the address the others reach it at
    written = yaml.safe_load(inventory_file.read_text())["all"]["children"]
    assert {g: sorted(v["hosts"]) for g, v in written.items()} == {
        "lb": [f"{CLUSTER_PREFIX}-lb1"],
        "web": [f"{CLUSTER_PREFIX}-web1", f"{CLUSTER_PREFIX}-web2"],
        "worker": [f"{CLUSTER_PREFIX}-web1", f"{CLUSTER_PREFIX}-web2"],
        "redis": [f"{CLUSTER_PREFIX}-redis1"],
    }
    web1 = written["web"]["hosts"][f"{CLUSTER_PREFIX}-web1"]
    assert web1["private_address"] == found["instances"][f"{CLUSTER_PREFIX}-web1"]["PrivateIpAddress"]

    # a second run changes nothing
    proc, _ = run_playbook("provision.yml", moto_endpoint, inventory_file, CLUSTER_VARS)
    assert proc.returncode == 0, output(proc)
    assert recap(proc)["changed"] == 0, output(proc)

    # teardown removes exactly this environment's resources
    proc, _ = run_playbook("teardown.yml", moto_endpoint, inventory_file, CLUSTER_VARS)
    assert proc.returncode == 0, output(proc)
    assert not any(cluster_resources(ec2).values()), cluster_resources(ec2)
    assert snapshot(ec2) == before
    assert not inventory_file.exists()


def test_bad_hosts_fail_before_touching_aws(moto_endpoint, ec2, world, tmp_path):
    before = snapshot(ec2)
    bad = json.dumps({"aws_instance_env": CLUSTER_ENV,
                      "aws_instance_hosts": [{"name": "lb1", "groups": ["lb"]}, {"name": "Web 1", "groups": ["www"]}]})
    proc, _ = run_playbook("provision.yml", moto_endpoint, tmp_path / "hosts.aws.yml", bad)
    assert proc.returncode != 0
    assert "aws_instance_hosts[1].name: 'Web 1'" in proc.stdout, output(proc)
    assert "aws_instance_hosts[1].groups: ['www']" in proc.stdout, output(proc)
    assert "Validate" in proc.stdout.split("fatal:")[0].rsplit("TASK [", 1)[-1]
    assert snapshot(ec2) == before
