"""``mxone-agent node OP`` (mxone_agent.node): the request/answer contract, the release
bootstrap, the disk facts and the retire operations with the agent's commands stubbed.
The kernel parts (addresses, the agent as a service) run in the orchestration lab."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from mxone_agent import paths
from mxone_agent.node import address, cli, files, release, retire, service, snapshot


def tarball(files_: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, data in files_.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def test_release_probe_install_and_a_damaged_upload(tmp_path: Path) -> None:
    releases = str(tmp_path / "opt/releases")
    data = tarball({"bin/mxone-agent": b"#!/usr/bin/python3\n"})
    sha = hashlib.sha256(data).hexdigest()
    assert release.handle({"releases": releases, "release": "r1", "sha256": sha}) == {
        "ok": True, "has": False, "created": [releases, str(tmp_path / "opt")]}
    upload = Path(releases) / ".upload-r1-0001"
    upload.write_bytes(data[:-1] + b"x")
    bad = release.handle({"releases": releases, "release": "r1", "sha256": sha,
                          "upload": str(upload)})
    assert bad["ok"] is False and "(upload damaged; try again)" in bad["error"]
    assert not upload.exists()
    upload.write_bytes(data)
    assert release.handle({"releases": releases, "release": "r1", "sha256": sha,
                           "upload": str(upload)}) == {"ok": True}
    assert not upload.exists()
    assert (Path(releases) / "r1" / "bin/mxone-agent").read_bytes() == b"#!/usr/bin/python3\n"
    assert (Path(releases) / "r1" / paths.RELEASE_MARKER).read_text() == sha + "\n"
    assert sorted(p.name for p in Path(releases).iterdir()) == ["r1"]
    assert release.handle({"releases": releases, "release": "r1", "sha256": sha})["has"]
    assert not release.has(releases, "r1", "0" * 64)


def test_the_bootstrap_runs_under_a_bare_python3(tmp_path: Path) -> None:
    cmd = release.bootstrap_command()
    assert len(cmd.encode()) < 128 * 1024  # one argument of at most MAX_ARG_STRLEN
    r = subprocess.run(["sh", "-c", cmd], input=json.dumps({
        "releases": str(tmp_path / "rel"), "release": "x", "sha256": "0" * 64}),
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}, cwd="/",
        check=True)
    assert json.loads(r.stdout) == {"ok": True, "has": False,
                                    "created": [str(tmp_path / "rel")]}
    assert (tmp_path / "rel").is_dir()
    assert release.MARKER == paths.RELEASE_MARKER


def unpacked(releases: Path, name: str, sha: str) -> Path:
    d = releases / name
    (d / "bin").mkdir(parents=True)
    (d / "bin/mxone-agent").write_text("#!/usr/bin/python3\n")
    (d / paths.RELEASE_MARKER).write_text(sha + "\n")
    return d


def test_remove_takes_back_an_unpacked_release_and_nothing_else(tmp_path: Path) -> None:
    home = tmp_path / "opt/agent"
    releases, sha, other = home / "releases", "a" * 64, "b" * 64
    old, new = unpacked(releases, "111111111111", other), unpacked(releases, "aaaaaaaaaaaa", sha)
    (home / "current").symlink_to("releases/111111111111")
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep").write_text("x")
    (new / "lib").symlink_to(outside)  # a link inside is removed, never followed

    def rm(name: str, sha256: str = sha) -> dict[str, Any]:
        return release.handle({"releases": str(releases), "release": name, "sha256": sha256,
                               "remove": True})

    assert rm("aaaaaaaaaaaa") == {"ok": True, "removed": True}
    assert sorted(p.name for p in releases.iterdir()) == ["111111111111"]
    assert (outside / "keep").read_text() == "x" and old.is_dir()
    assert rm("aaaaaaaaaaaa") == {"ok": True, "removed": False}  # gone already: nothing to do

    refused = {
        "111111111111": "is the current release",  # what current points to
        "../precious": "is not a release name",
        "current": "is not a release name",
        "AAAAAAAAAAAA": "is not a release name",
        "cccccccccccc": "is not a release directory",  # a link to a release
        "dddddddddddd": "is not a release directory",  # a file
        "eeeeeeeeeeee": "holds another artefact",
    }
    (releases / "cccccccccccc").symlink_to(old)
    (releases / "dddddddddddd").write_text("")
    unpacked(releases, "eeeeeeeeeeee", other)
    for name, why in refused.items():
        answer = rm(name, other if name == "111111111111" else sha)
        assert answer["ok"] is False and why in answer["error"], (name, answer)
    assert sorted(p.name for p in releases.iterdir()) == [
        "111111111111", "cccccccccccc", "dddddddddddd", "eeeeeeeeeeee"]
    assert (old / paths.RELEASE_MARKER).read_text() == other + "\n"
    # current by an absolute link: still current
    (home / "current").unlink()
    (home / "current").symlink_to(releases / "eeeeeeeeeeee")
    assert "is the current release" in rm("eeeeeeeeeeee", other)["error"]


def test_remove_runs_under_a_bare_python3_and_takes_back_the_probes_dirs(
        tmp_path: Path) -> None:
    releases = tmp_path / "opt/mxone/agent/releases"
    (tmp_path / "opt").mkdir()
    (tmp_path / "opt/other").write_text("")
    req = {"releases": str(releases), "release": "aaaaaaaaaaaa", "sha256": "a" * 64}
    probe = release.handle(req)
    assert probe["created"] == [str(releases), str(releases.parent), str(releases.parent.parent)]
    unpacked(releases, "aaaaaaaaaaaa", "a" * 64)
    (releases.parent / "current").symlink_to("releases/bbbbbbbbbbbb")  # not this one
    r = subprocess.run(["sh", "-c", release.bootstrap_command()], input=json.dumps({
        **req, "remove": True, "dirs": probe["created"]}), capture_output=True, text=True,
        timeout=60, env={"PATH": "/usr/bin:/bin"}, cwd="/", check=True)
    assert json.loads(r.stdout) == {"ok": True, "removed": True}
    # the release and releases/ gone; agent/ is not empty (current): it and mxone/ stay
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "opt", "opt/mxone", "opt/mxone/agent", "opt/mxone/agent/current", "opt/other"]
    (releases.parent / "current").unlink()
    assert release.handle({**req, "remove": True, "dirs": [*probe["created"], "/etc", "/"]}
                          ) == {"ok": True, "removed": False}
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "opt", "opt/other"]


def run_cli(op: str, stdin: str) -> tuple[int, dict[str, Any]]:
    r = subprocess.run([sys.executable, "-m", "mxone_agent.main", "node", op], input=stdin,
                       capture_output=True, text=True, timeout=60, check=False)
    return r.returncode, json.loads(r.stdout)


def test_one_json_answer_and_exit_0_whatever_it_says() -> None:
    assert run_cli("bogus", "{}") == (0, {"ok": False, "error": "unknown op bogus"})
    assert run_cli("net-restore", "not json") == (0, {
        "ok": False, "error": "network configuration: JSONDecodeError: Expecting value: line 1 "
        "column 1 (char 0)"})
    assert run_cli("net-inspect", "[]") == (0, {
        "ok": False, "error": "network configuration: the request must be a JSON object, not "
        "list"})
    assert set(cli.OPS) == {
        "snapshot", "prepare-dirs", "switch", "write", "restore", "commit", "add-base",
        "del-base", "retire", "retire-lims", "unretire", "stop", "start", "restart", "reload",
        "status", "net-inspect", "net-apply", "net-restore"}


def test_a_crash_is_not_an_answer() -> None:
    r = subprocess.run([sys.executable, "-m", "mxone_agent.main", "node", "switch"], input="{}",
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1 and r.stdout == "" and "KeyError" in r.stderr


def test_xdata_facts(tmp_path: Path) -> None:
    xdata = "/var/opt/mxone/xdata"
    assert snapshot.xdata_facts(str(tmp_path), xdata)["used"] == 0  # nothing there yet
    top = tmp_path / xdata.lstrip("/")
    for name, size, valid in (("lim2-0001", 10, True), ("lim2-0002", 30, True),
                              ("lim3-0001", 5, False)):
        (top / name).mkdir(parents=True)
        (top / name / "data").write_bytes(b"x" * size)
        if valid:
            (top / name / "MANIFEST.json").write_bytes(b"{}")
    facts = snapshot.xdata_facts(str(tmp_path), xdata)
    assert facts["used"] == 10 + 30 + 5 + 2 * 2 and facts["newest"] == {"2": 32}
    assert facts["free"] > 0


class Agent:
    """``current``'s agent, stubbed: records stop and answers ctl from a script."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, answers: list[dict[str, Any]]) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.answers = answers
        monkeypatch.setattr(service, "stop", lambda: self.calls.append(("stop",)))
        monkeypatch.setattr(service, "leave_cluster", lambda: ["LIM 2 keeps running"])
        monkeypatch.setattr(service, "ctl", self.ctl)

    def ctl(self, *args: str) -> dict[str, Any]:
        self.calls.append(("ctl", *args))
        data = self.answers.pop(0) if self.answers else {"ok": True}
        return {"rc": 0 if data.get("ok", True) else 1, "stdout": json.dumps(data), "stderr": ""}


def test_retire_leaves_the_cluster_and_keeps_the_config_as_prev(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = str(tmp_path)
    files.prepare_dirs(root)
    for name in ("node", "key", "sync", "hosts", "auth"):
        (tmp_path / files.FILES[name].lstrip("/")).write_bytes(name.encode())
    agent = Agent(monkeypatch, [])
    out = retire.retire(root, {"data": b"other key\n".hex(), "mode": 0o600})
    assert out == {"ok": True, "leave": ["LIM 2 keeps running"]} and agent.calls == [("stop",)]
    left = files.snapshot(root)["files"]
    assert {k for k, v in left.items() if v is not None} == {"prev", "auth"}
    assert bytes.fromhex(left["prev"]["data"]) == b"node"
    assert bytes.fromhex(left["auth"]["data"]) == b"other key\n"


def test_retire_lims_waits_until_none_runs_here(monkeypatch: pytest.MonkeyPatch) -> None:
    agent = Agent(monkeypatch, [
        {"ok": True, "text": "LIM 3 retired"},
        {"lims": [{"lim": 3, "here": True}]},
        {"lims": [], "retiring": [{"lim": 3, "here": False}]}])
    assert retire.retire_lims([3], 5.0) == {"ok": True, "said": ["LIM 3 retired"]}
    assert agent.calls == [("ctl", "retire", "3"), ("ctl", "status"), ("ctl", "status")]
    Agent(monkeypatch, [{"ok": True}, *[{"lims": [{"lim": 3, "here": True}]}] * 100])
    late = retire.retire_lims([3], 0.0)
    assert late["ok"] is False and late["error"] == "LIM 3 still runs here after 0.0 s"
    Agent(monkeypatch, [{"ok": False, "error": "LIM 3 is not in this cluster"}])
    assert retire.retire_lims([3], 5.0) == {"ok": False, "said": [],
                                           "error": "LIM 3: LIM 3 is not in this cluster"}
    agent = Agent(monkeypatch, [{"ok": True, "text": "LIM 3 may be taken over again"}])
    assert retire.unretire([3]) == {"ok": True, "said": ["LIM 3 may be taken over again"]}
    assert agent.calls == [("ctl", "retire", "3", "--cancel")]


def test_reload_without_an_agent_says_so(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    monkeypatch.setattr(paths, "AGENT_BIN", str(tmp_path / "missing"))
    assert service.reload() == {"ok": False, "error": "no agent installed "
                                f"({tmp_path / 'missing'} missing)"}


class FakeNetlink:
    """pyroute2's IPRoute, as far as the node's address operations use it."""

    def __init__(self) -> None:
        self.addrs: set[tuple[int, str, int]] = {(2, "10.77.0.12", 24)}
        self.closed = False

    def link_lookup(self, ifname: str) -> list[int]:
        return [2] if ifname == "eth0" else []

    def get_addr(self, family: int, index: int | None = None) -> list[Any]:
        return [Msg(i, a) for i, a, _ in sorted(self.addrs) if index in (None, i)]

    def get_links(self) -> list[Any]:
        return [Msg(2, "", name="eth0")]

    def addr(self, verb: str, index: int, address: str, prefixlen: int) -> None:
        (self.addrs.add if verb == "add" else self.addrs.discard)((index, address, prefixlen))

    def close(self) -> None:
        self.closed = True


class Msg(dict):  # type: ignore[type-arg]
    def __init__(self, index: int, addr: str, name: str = "") -> None:
        super().__init__(index=index)
        self.attrs = {"IFA_ADDRESS": addr, "IFLA_IFNAME": name}

    def get_attr(self, key: str) -> str:
        return self.attrs[key]


def test_base_addresses_go_through_netlink(monkeypatch: pytest.MonkeyPatch) -> None:
    from contextlib import contextmanager

    nl = FakeNetlink()

    @contextmanager
    def netlink():  # type: ignore[no-untyped-def]
        yield nl

    monkeypatch.setattr(address, "_netlink", netlink)
    monkeypatch.setattr(address, "promote_secondaries", lambda interface: None)
    assert address.addresses() == [("eth0", "10.77.0.12")]
    assert address.add_base("eth0", "10.77.0.52", 24) == {"ok": True, "added": True}
    assert address.add_base("eth0", "10.77.0.52", 24) == {"ok": True, "added": False}
    assert ("eth0", "10.77.0.52") in address.addresses()
    assert address.del_base("eth0", "10.77.0.52", 24) == {"ok": True}
    assert address.del_base("eth0", "10.77.0.52", 24) == {"ok": True}
    assert address.addresses() == [("eth0", "10.77.0.12")]
    missing = address.add_base("eth9", "10.77.0.52", 24)
    assert missing == {"ok": False, "added": False, "error": "cannot add 10.77.0.52/24 on "
                       "eth9: interface eth9 does not exist on this host"}
    assert address.del_base("eth9", "10.77.0.52", 24) == {"ok": True}
    monkeypatch.setattr(address, "promote_secondaries", lambda interface: "cannot, for a test")
    assert address.add_base("eth0", "10.77.0.53", 24) == {"ok": True, "added": True,
                                                          "warning": "cannot, for a test"}


def test_promote_secondaries_writes_the_interfaces_own_directory_dot_and_all(
        tmp_path: Path) -> None:
    """A VLAN's /proc directory keeps its dot (conf/eth0.100); only a `sysctl -w` key writes
    it as "/", and the dot written there is the bug that once lost the setting."""
    conf = tmp_path / "conf"
    for name in ("eth0", "eth0.100", "all", "default"):
        (conf / name).mkdir(parents=True)
        (conf / name / "promote_secondaries").write_text("0\n")
    assert address.conf_path("eth0.100", "promote_secondaries") == \
        "/proc/sys/net/ipv4/conf/eth0.100/promote_secondaries"
    assert address.promote_secondaries("eth0.100", str(conf)) is None
    assert (conf / "eth0.100/promote_secondaries").read_text() == "1\n"
    assert (conf / "eth0/promote_secondaries").read_text() == "0\n"
    said = address.promote_secondaries("eth9.7", str(conf))
    assert said is not None and said.startswith("promote_secondaries not set on eth9.7: ")
    for name in ("all", "default", ".."):
        said = address.promote_secondaries(name, str(conf))
        assert said is not None and "not a network interface name" in said
    assert (conf / "all/promote_secondaries").read_text() == "0\n"
    assert (conf / "default/promote_secondaries").read_text() == "0\n"
