"""The node's network configuration writers (mxone_agent.netconfig), on temp dirs that
hold real sample files of each format: ifupdown, systemd-networkd, NetworkManager keyfiles,
SUSE ifcfg. Each is rewritten so the new base address comes back at boot and the old one
(now the alias) does not, kept as it was under /etc/mxone/netconfig, and put back byte for
byte on revert and on restore."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mxone_agent.netconfig import formats as nc_formats
from mxone_agent.netconfig import plan as nc_plan
from mxone_agent.netconfig import request as nc_request
from mxone_agent.netconfig import text as nc_text
from mxone_agent.netconfig import write as nc_write
from mxone_agent.node import release as node_release
from mxone_maintenance import artefact

OLD, NEW = "10.77.0.12", "10.77.0.52"
WHY = "base address 10.77.0.52 replaces 10.77.0.12, now the alias of LIM 2 (cluster c1)"

DEBIAN_INTERFACES = """\
# This file describes the network interfaces available on your system
# and how to activate them. For more information, see interfaces(5).

source /etc/network/interfaces.d/*

# The loopback network interface
auto lo
iface lo inet loopback
"""
DEBIAN_ETH0 = """\
auto eth0
iface eth0 inet static
    address 10.77.0.12/24
    gateway 10.77.0.1
    dns-nameservers 10.77.0.1
"""
NETWORKD = """\
[Match]
Name=eth0

[Network]
Address=10.77.0.12/24
Gateway=10.77.0.1
DNS=10.77.0.1
"""
NETWORKD_ADDRESS_SECTION = """\
[Match]
Name=eth0

[Network]
Gateway=10.77.0.1

[Address]
Address=10.77.0.12/24
"""
NM_KEYFILE = """\
[connection]
id=eth0
uuid=4a0d5a2c-1b2e-4a7f-9b8e-2f1c3d4e5f60
type=ethernet
interface-name=eth0

[ethernet]

[ipv4]
address1=10.77.0.12/24,10.77.0.1
dns=10.77.0.1;
method=manual

[ipv6]
addr-gen-mode=default
method=disabled

[proxy]
"""
SUSE_IFCFG = """\
BOOTPROTO='static'
STARTMODE='auto'
IPADDR='10.77.0.12/24'
IPADDR_1='10.77.0.120/24'
LABEL_1='1'
ZONE=''
"""

# format -> (the file holding the address, its text, its mode, other files of the node)
SAMPLES = {
    "ifupdown": ("/etc/network/interfaces.d/eth0", DEBIAN_ETH0, 0o644,
                 {"/etc/network/interfaces": DEBIAN_INTERFACES}),
    "networkd": ("/etc/systemd/network/10-eth0.network", NETWORKD, 0o644, {}),
    "networkd [Address]": ("/etc/systemd/network/10-eth0.network", NETWORKD_ADDRESS_SECTION,
                           0o644, {}),
    "NetworkManager": ("/etc/NetworkManager/system-connections/eth0.nmconnection", NM_KEYFILE,
                       0o600, {}),
    "SUSE": ("/etc/sysconfig/network/ifcfg-eth0", SUSE_IFCFG, 0o600, {}),
}


def put(root: Path, path: str, text: str, mode: int = 0o644) -> Path:
    p = root / path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    p.chmod(mode)
    return p


def node(tmp_path: Path, fmt: str) -> tuple[str, Path]:
    path, text, mode, others = SAMPLES[fmt]
    for p, t in others.items():
        put(tmp_path, p, t)
    return path, put(tmp_path, path, text, mode)


def active(text: str) -> list[str]:
    return [x.strip() for x in text.splitlines() if x.strip() and not x.strip().startswith("#")]


def tree(root: Path) -> dict[str, tuple[bytes, int] | str]:
    out: dict[str, tuple[bytes, int] | str] = {}
    for d, dirs, files in os.walk(root):
        out[d] = "dir %o" % (os.stat(d).st_mode & 0o7777)
        for f in files:
            p = os.path.join(d, f)
            out[p] = (Path(p).read_bytes(), os.stat(p).st_mode & 0o7777)
    return out


@pytest.mark.parametrize("fmt", list(SAMPLES))
def test_each_format_gets_the_new_base_then_is_put_back_byte_for_byte(tmp_path: Path,
                                                                      fmt: str) -> None:
    path, f = node(tmp_path, fmt)
    before_bytes, mode = f.read_bytes(), f.stat().st_mode & 0o7777
    root = str(tmp_path)
    plan = nc_plan.plan_rebase(root, "eth0", OLD, NEW, WHY)
    assert not plan.refusal, plan.refusal
    assert [e.path for e in plan.edits] == [path]
    assert nc_write.apply_plan(root, plan, keep_backup=True) == [path]

    text = f.read_text()
    lines = active(text)
    assert any(NEW in x for x in lines) and not any(nc_text.mentions(x, OLD) for x in lines)
    assert f"{nc_text.WAS}" in text and WHY in text
    assert f.stat().st_mode & 0o7777 == mode  # NetworkManager ignores a keyfile that is not 0600
    backup = tmp_path / nc_write.backup_path(path).lstrip("/")
    assert backup.read_bytes() == before_bytes and backup.stat().st_mode & 0o7777 == mode
    assert (tmp_path / "etc/mxone/netconfig").stat().st_mode & 0o777 == 0o700
    if fmt.startswith("networkd"):
        assert "KeepConfiguration=static" in lines
    if fmt == "SUSE":  # the secondary 10.77.0.120 is another address: untouched
        assert "IPADDR_1='10.77.0.120/24'" in lines and "IPADDR='10.77.0.52/24'" in lines
    # A second look finds nothing to do: the new base is configured.
    again = nc_plan.plan_rebase(root, "eth0", OLD, NEW, WHY)
    assert again.edits == [] and not again.refusal

    undo = nc_plan.plan_revert(root, "eth0")
    assert [e.path for e in undo.edits] == [path]
    nc_write.apply_plan(root, undo, keep_backup=False)
    assert f.read_bytes() == before_bytes and f.stat().st_mode & 0o7777 == mode
    assert not (tmp_path / "etc/mxone/netconfig").exists()


def test_exact_lines_per_format(tmp_path: Path) -> None:
    root = str(tmp_path)
    node(tmp_path, "ifupdown")
    nc_write.apply_plan(root, nc_plan.plan_rebase(root, "eth0", OLD, NEW, WHY), True)
    assert (tmp_path / "etc/network/interfaces.d/eth0").read_text() == (
        "auto eth0\n"
        "iface eth0 inet static\n"
        f"# mxone_maintenance: begin: {WHY}\n"
        "#mxone-was#     address 10.77.0.12/24\n"
        "    address 10.77.0.52/24\n"
        "# mxone_maintenance: end\n"
        "    gateway 10.77.0.1\n"
        "    dns-nameservers 10.77.0.1\n")
    (tmp_path / "etc").rename(tmp_path / "etc.ifupdown")
    node(tmp_path, "networkd [Address]")
    nc_write.apply_plan(root, nc_plan.plan_rebase(root, "eth0", OLD, NEW, WHY), True)
    text = (tmp_path / "etc/systemd/network/10-eth0.network").read_text()
    assert text == (
        "[Match]\nName=eth0\n\n"
        f"# mxone_maintenance: begin: {WHY}; networkd keeps the agent's alias when it restarts\n"
        "#mxone-was# [Network]\n[Network]\nKeepConfiguration=static\n"
        "# mxone_maintenance: end\n"
        "Gateway=10.77.0.1\n\n[Address]\n"
        f"# mxone_maintenance: begin: {WHY}\n"
        "#mxone-was# Address=10.77.0.12/24\nAddress=10.77.0.52/24\n"
        "# mxone_maintenance: end\n")


def test_an_existing_keep_configuration_is_left_alone(tmp_path: Path) -> None:
    put(tmp_path, "/etc/systemd/network/10-eth0.network",
        NETWORKD.replace("DNS=", "KeepConfiguration=yes\nDNS="))
    plan = nc_plan.plan_rebase(str(tmp_path), "eth0", OLD, NEW, WHY)
    assert plan.edits[0].after.count("KeepConfiguration") == 1


def test_ifupdown_with_netmask_and_a_sourced_directory(tmp_path: Path) -> None:
    put(tmp_path, "/etc/network/interfaces",
        "auto lo\niface lo inet loopback\nsource-directory interfaces.d\n")
    put(tmp_path, "/etc/network/interfaces.d/eth0",
        "iface eth0 inet static\n\taddress 10.77.0.12\n\tnetmask 255.255.255.0\n")
    put(tmp_path, "/etc/network/interfaces.d/eth0.bak",  # not sourced: name with a dot
        "iface eth0 inet static\n\taddress 10.77.0.12\n")
    plan = nc_plan.plan_rebase(str(tmp_path), "eth0", OLD, NEW, WHY)
    assert [e.path for e in plan.edits] == ["/etc/network/interfaces.d/eth0"]
    assert "\taddress 10.77.0.52\n" in plan.edits[0].after
    assert "\tnetmask 255.255.255.0\n" in plan.edits[0].after


@pytest.mark.parametrize("text, end", [
    ("[Network]\nAddress=10.77.0.12/24",
     "Address=10.77.0.52/24\nKeepConfiguration=static\n# mxone_maintenance: end"),
    ("[Network]\r\nAddress=10.77.0.12/24\r\n", None),
])
def test_odd_line_endings_round_trip(tmp_path: Path, text: str, end: str | None) -> None:
    f = put(tmp_path, "/etc/systemd/network/eth0.network", text)
    root = str(tmp_path)
    plan = nc_plan.plan_rebase(root, "eth0", OLD, NEW, WHY)
    nc_write.apply_plan(root, plan, True)
    if end is not None:  # no newline at the end of the file: none after the block either
        assert f.read_text().endswith(end)
    nc_write.apply_plan(root, nc_plan.plan_revert(root, "eth0"), False)
    assert f.read_bytes() == text.encode()


@given(st.lists(st.sampled_from([
    "Address=10.77.0.12/24", "Address=10.77.0.120/24", "Gateway=10.77.0.1", "", "# a comment",
    "[Network]", "[Address]", "DNS=10.77.0.12", "  Address = 10.77.0.12/24  ", "x\r",
]), max_size=12), st.booleans())
def test_revert_undoes_any_rewrite_exactly(lines: list[str], trailing: bool) -> None:
    text = "\n".join(lines) + ("\n" if trailing and lines else "")
    f = nc_formats.ConfigFile("/etc/systemd/network/a.network", nc_formats.NETWORKD, text, 0o644,
                             True)
    uses = [u for u in nc_formats.uses_networkd(f, "eth0", OLD) if u.handled]
    for has_new in (False, True):
        rewritten = nc_plan._rebased(f, uses, OLD, NEW, has_new, WHY)
        reverted, count, problems = nc_text.revert_text(rewritten)
        assert reverted == text and not problems
        assert count == rewritten.count(nc_text.BEGIN) >= len(uses)
        if uses:  # each handled line is commented out; only the others still hold OLD
            assert "KeepConfiguration=static" in active(rewritten)
            others = [u for u in nc_formats.uses_networkd(f, "eth0", OLD) if not u.handled]
            assert sum(nc_text.mentions(x, OLD) for x in active(rewritten)) == len(others)


def test_a_whole_address_only(tmp_path: Path) -> None:
    assert nc_text.mentions("IPADDR='10.77.0.12/24'", OLD)
    assert nc_text.mentions("address1=10.77.0.12,10.77.0.1", OLD)
    assert not nc_text.mentions("IPADDR='10.77.0.120/24'", OLD)
    assert not nc_text.mentions("Address=110.77.0.12/24", OLD)
    assert not nc_text.mentions("x=10.77.0.12.5", OLD)


# ---- refusals, each naming the file to change ------------------------------------------


def refusal(tmp_path: Path) -> str:
    plan = nc_plan.plan_rebase(str(tmp_path), "eth0", OLD, NEW, WHY)
    assert plan.refusal and not plan.edits
    return plan.refusal


def test_nothing_configures_the_address(tmp_path: Path) -> None:
    put(tmp_path, "/etc/systemd/network/20-eth1.network",
        "[Match]\nName=eth1\n[Network]\nAddress=10.77.0.12/24\n")  # another interface
    msg = refusal(tmp_path)
    assert msg.startswith("no network configuration file here brings up 10.77.0.12 or "
                          "10.77.0.52 on eth0 (looked in /etc/network/interfaces")
    assert "/etc/systemd/network/*.network" in msg and "/etc/sysconfig/network/ifcfg-*" in msg
    assert "configure eth0 statically with 10.77.0.52 instead of 10.77.0.12" in msg


def test_an_up_command_is_refused_with_its_file_and_line(tmp_path: Path) -> None:
    put(tmp_path, "/etc/network/interfaces",
        "auto eth0\niface eth0 inet dhcp\n    post-up ip addr add 10.77.0.12/24 dev eth0\n")
    msg = refusal(tmp_path)
    assert ("/etc/network/interfaces line 3 ('post-up ip addr add 10.77.0.12/24 dev eth0'): "
            "not an 'address' line of an 'iface eth0 inet static' stanza") in msg
    assert "Change it by hand so that eth0 comes up with 10.77.0.52 and not 10.77.0.12" in msg


def test_a_dhcp_stanza_is_refused(tmp_path: Path) -> None:
    put(tmp_path, "/etc/network/interfaces",
        "iface eth0 inet dhcp\n    address 10.77.0.12/24\n")
    assert "the tool changes only those of 'inet static' stanzas" in refusal(tmp_path)


@pytest.mark.parametrize("path, what", [
    ("/etc/netplan/01-netcfg.yaml", "a netplan file"),
    ("/etc/sysconfig/network-scripts/ifcfg-eth0", "a Red Hat ifcfg file"),
    ("/etc/wicked/ifconfig/eth0.xml", "a wicked XML file"),
])
def test_formats_the_tool_does_not_change(tmp_path: Path, path: str, what: str) -> None:
    put(tmp_path, path, "addresses: [10.77.0.12/24]\n")
    assert f"{path}: {what}, a format the tool does not change" in refusal(tmp_path)


def test_a_networkd_file_outside_etc_is_refused_unless_shadowed(tmp_path: Path) -> None:
    put(tmp_path, "/usr/lib/systemd/network/80-eth0.network", NETWORKD)
    msg = refusal(tmp_path)
    assert "/usr/lib/systemd/network/80-eth0.network: a networkd file outside " \
           "/etc/systemd/network" in msg
    # The operator's copy of the same name in /etc hides it: that one is changed.
    put(tmp_path, "/etc/systemd/network/80-eth0.network", NETWORKD)
    plan = nc_plan.plan_rebase(str(tmp_path), "eth0", OLD, NEW, WHY)
    assert [e.path for e in plan.edits] == ["/etc/systemd/network/80-eth0.network"]


def test_a_networkd_drop_in_is_changed(tmp_path: Path) -> None:
    put(tmp_path, "/etc/systemd/network/10-eth0.network", "[Match]\nName=eth*\n")
    put(tmp_path, "/etc/systemd/network/10-eth0.network.d/addr.conf",
        "[Network]\nAddress=10.77.0.12/24\n")
    plan = nc_plan.plan_rebase(str(tmp_path), "eth0", OLD, NEW, WHY)
    assert [e.path for e in plan.edits] == ["/etc/systemd/network/10-eth0.network.d/addr.conf"]


def test_a_line_the_tool_does_not_handle_in_a_known_format(tmp_path: Path) -> None:
    put(tmp_path, "/etc/systemd/network/10-eth0.network",
        NETWORKD + "[Route]\nPreferredSource=10.77.0.12\n")
    assert "line 9 ('PreferredSource=10.77.0.12'): PreferredSource= in [Route]" in \
        refusal(tmp_path)


def test_an_earlier_change_never_undone_is_refused(tmp_path: Path) -> None:
    """A file that still holds a block of the tool and brings up the old address again
    (someone added it back by hand) is not rewritten a second time."""
    root = str(tmp_path)
    _, f = node(tmp_path, "networkd")
    nc_write.apply_plan(root, nc_plan.plan_rebase(root, "eth0", OLD, NEW, WHY), True)
    f.write_text(f.read_text() + "[Address]\nAddress=10.77.0.12/24\n")
    msg = nc_plan.plan_rebase(root, "eth0", OLD, NEW, WHY).refusal
    assert f"{nc_formats.NETWORKD_DIRS[0]}/10-eth0.network: holds an earlier change of " \
           "mxone_maintenance" in msg


def test_nm_profile_of_another_interface_is_not_ours(tmp_path: Path) -> None:
    put(tmp_path, "/etc/NetworkManager/system-connections/eth1.nmconnection",
        NM_KEYFILE.replace("interface-name=eth0", "interface-name=eth1"), 0o600)
    assert refusal(tmp_path).startswith("no network configuration file here")


def test_revert_keeps_what_the_operator_changed_since(tmp_path: Path) -> None:
    root = str(tmp_path)
    _, f = node(tmp_path, "networkd")
    nc_write.apply_plan(root, nc_plan.plan_rebase(root, "eth0", OLD, NEW, WHY), True)
    f.write_text(f.read_text() + "NTP=10.77.0.1\n")
    nc_write.apply_plan(root, nc_plan.plan_revert(root, "eth0"), False)
    assert f.read_text() == NETWORKD + "NTP=10.77.0.1\n"


def test_an_unterminated_block_is_left_and_named() -> None:
    text = f"{nc_text.BEGIN}: x\n#mxone-was# Address=1\nAddress=2\n"
    assert nc_text.revert_text(text) == (text, 0, [
        f"line 1: a '{nc_text.BEGIN}' without its '{nc_text.END}' line (left as is)"])


# ---- the node program: inspect, apply, restore --------------------------------------------


def request(**kw: object) -> dict[str, object]:
    return {"interface": "eth0", "old": OLD, "new": NEW, "why": WHY, **kw}


@pytest.mark.parametrize("fmt", list(SAMPLES))
def test_inspect_apply_restore(tmp_path: Path, fmt: str) -> None:
    root = str(tmp_path)
    path, f = node(tmp_path, fmt)
    (tmp_path / "etc/mxone").mkdir(mode=0o755)  # as the tool made it on the node
    before = tree(tmp_path)
    seen = nc_request.handle("inspect", request(), root)
    formats = {"ifupdown": nc_formats.IFUPDOWN, "networkd": nc_formats.NETWORKD,
               "networkd [Address]": nc_formats.NETWORKD, "NetworkManager": nc_formats.NM,
               "SUSE": nc_formats.SUSE}
    assert seen["ok"] and seen["edits"] == [{"path": path, "format": formats[fmt]}]
    now = {"data": f.read_bytes().hex(), "mode": f.stat().st_mode & 0o7777}
    assert seen["files"] == {path: now, nc_write.backup_path(path): None}
    done = nc_request.handle("apply", request(expect=seen["expect"]), root)
    assert done == {"ok": True, "written": [path], "notes": []}
    assert tree(tmp_path) != before
    assert seen["dirs"] == {"/etc/mxone": True, nc_write.BACKUP_ROOT: False}
    back = nc_request.handle("restore", {"files": seen["files"], "dirs": seen["dirs"]}, root)
    assert back["ok"] and sorted(back["restored"]) == sorted(seen["files"])
    assert tree(tmp_path) == before

    # Leaving the cluster: revert, and the rollback of that revert.
    nc_request.handle("apply", request(expect=seen["expect"]), root)
    changed = tree(tmp_path)
    undo = nc_request.handle("inspect", {"interface": "eth0", "revert": True}, root)
    assert set(undo["files"]) == {path, nc_write.backup_path(path)}
    r = nc_request.handle("apply", {"interface": "eth0", "revert": True,
                                   "expect": undo["expect"]}, root)
    assert r["ok"] and tree(tmp_path) == before
    nc_request.handle("restore", {"files": undo["files"], "dirs": undo["dirs"]}, root)
    assert tree(tmp_path) == changed


def test_restore_removes_the_directories_it_made(tmp_path: Path) -> None:
    root = str(tmp_path)
    node(tmp_path, "SUSE")
    before = tree(tmp_path)
    seen = nc_request.handle("inspect", request(), root)
    assert seen["dirs"] == {"/etc/mxone": False, nc_write.BACKUP_ROOT: False}
    nc_request.handle("apply", request(expect=seen["expect"]), root)
    assert (tmp_path / "etc/mxone").stat().st_mode & 0o777 == 0o700
    nc_request.handle("restore", {"files": seen["files"], "dirs": seen["dirs"]}, root)
    assert tree(tmp_path) == before


def test_apply_refuses_a_file_changed_since_inspect(tmp_path: Path) -> None:
    root = str(tmp_path)
    path, f = node(tmp_path, "networkd")
    seen = nc_request.handle("inspect", request(), root)
    f.write_text(NETWORKD + "# edited meanwhile\n")
    r = nc_request.handle("apply", request(expect=seen["expect"]), root)
    assert r == {"ok": False, "error": "network configuration changed since it was read: "
                 f"{path}; nothing written (start the action again)"}
    assert f.read_text() == NETWORKD + "# edited meanwhile\n"
    assert not (tmp_path / "etc/mxone").exists()


def test_a_refused_node_says_why(tmp_path: Path) -> None:
    r = nc_request.handle("inspect", request(), str(tmp_path))
    assert r["ok"] is False and str(r["error"]).startswith("no network configuration file")
    assert nc_request.handle("bogus", {}, str(tmp_path)) == {"ok": False,
                                                           "error": "unknown op 'bogus'"}


def release_program(tmp_path: Path) -> str:
    """The agent release as the tool deploys it, unpacked here by the tool's bootstrap
    (``python3 -c``): its ``mxone-agent``."""
    data = artefact.build_bytes()
    upload = tmp_path / ".upload"
    upload.write_bytes(data)
    req = {"releases": str(tmp_path / "releases"), "release": "r1",
           "sha256": hashlib.sha256(data).hexdigest(), "upload": str(upload)}
    r = subprocess.run(["sh", "-c", node_release.bootstrap_command()], input=json.dumps(req),
                       capture_output=True, text=True, timeout=60, check=True, cwd="/")
    assert json.loads(r.stdout) == {"ok": True}
    return str(tmp_path / "releases" / "r1" / "bin" / "mxone-agent")


def test_the_node_command_runs_on_a_bare_python3(tmp_path: Path) -> None:
    """What the tool runs on a node - the network configuration's operations of the
    release it deploys - needs nothing but python3 (no tool installed), read-only here: an
    interface that does not exist is refused with the places it looked."""
    program = release_program(tmp_path)
    cmd = f"{program} node net-inspect"
    assert len(cmd.encode()) < 128 * 1024  # one argument of at most MAX_ARG_STRLEN
    r = subprocess.run(["sh", "-c", cmd], check=False, input=json.dumps({
        "interface": "mxtest0", "old": "192.0.2.1", "new": "192.0.2.2", "why": "test"}),
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}, cwd="/")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] is False and "no network configuration file here brings up 192.0.2.1" \
        in out["error"]
    bad = subprocess.run(["sh", "-c", f"{program} node net-restore"], check=False, input="[]",
                         capture_output=True, text=True, timeout=60, cwd="/")
    assert json.loads(bad.stdout) == {"ok": False, "error": "network configuration: the "
                                      "request must be a JSON object, not list"}
    bad = subprocess.run(["sh", "-c", f"{program} node net-restore"], check=False,
                         input='{"files": [1]}', capture_output=True, text=True, timeout=60,
                         cwd="/")
    assert json.loads(bad.stdout) == {"ok": False, "error": "network configuration: request "
                                      "field 'files' must be an object, not [1]"}
