"""ssh.Pool against the lab's real sshd, run inside lim1 (where the lab addresses are)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.lab

POOL_SCRIPT = r'''
import json, sys, time
from pathlib import Path
from mxone_maintenance import ssh
req = json.loads(sys.stdin.read())
pool = ssh.Pool(Path(req["known_hosts"]), Path(req["key"]), accept_new=req.get("accept", False))
targets = [ssh.Target(n, (ip,)) for n, ip in req["targets"]]
out = {}
try:
    if req["what"] == "reuse":
        t0 = time.monotonic()
        first = pool.run_all(targets, "hostname")
        out["first_call_s"] = time.monotonic() - t0
        t0 = time.monotonic()
        for _ in range(10):
            res = pool.run_all(targets, ["cat", "/proc/sys/kernel/hostname"])
        out["ten_calls_s"] = time.monotonic() - t0
        out["hostnames"] = {k: v.stdout.strip() for k, v in res.items()}
        out["connects"] = pool.connects
        out["connect_seconds"] = pool.connect_seconds
    elif req["what"] == "parallel":
        pool.run_all(targets, "true")
        t0 = time.monotonic()
        res = pool.run_all(targets, "sleep 1; echo done")
        out["seconds"] = time.monotonic() - t0
        out["ok"] = {k: v.ok for k, v in res.items()}
    elif req["what"] == "one":
        r = pool.run(targets[0], "hostname")
        out = {"ok": r.ok, "error": r.error, "stdout": r.stdout}
    elif req["what"] == "timeout":
        r = pool.run(targets[0], "sleep 30", timeout=1)
        out = {"ok": r.ok, "error": r.error, "seconds": r.seconds}
except ssh.UnknownHostKey as e:
    out = {"unknown": e.fingerprint, "server": e.server, "message": str(e)}
print(json.dumps(out))
'''


def _pool(lab, what: str, targets: list[str], known_hosts: str = "/etc/mxone/known_hosts",
          accept: bool = False) -> dict:
    req = {"what": what, "known_hosts": known_hosts, "key": str(lab.user_key_path),
           "accept": accept, "targets": [[n, str(lab.hosts[n].ip)] for n in targets]}
    r = lab.run_python("lim1", POOL_SCRIPT, input=json.dumps(req), timeout=60)
    return json.loads(r.stdout)


def _pin(lab, names: list[str]) -> None:
    lines = "".join(lab.hosts[n].known_hosts_line + "\n" for n in names)
    lab.exec("lim1", "mkdir -p /etc/mxone && cat > /etc/mxone/known_hosts", input=lines)


HOSTS = ["lim1", "lim2", "lim3", "standby1"]


def test_one_connection_per_server_for_many_calls(lab) -> None:
    _pin(lab, HOSTS)
    out = _pool(lab, "reuse", HOSTS)
    assert out["hostnames"] == {n: n for n in HOSTS}
    assert out["connects"] == len(HOSTS)  # 11 calls each, one connection each
    print(f"\nconnect+auth per host: {out['connect_seconds']}; first call over 4 hosts "
          f"{out['first_call_s']:.3f} s; 10 more calls over 4 hosts {out['ten_calls_s']:.3f} s")


def test_calls_over_servers_run_in_parallel(lab) -> None:
    _pin(lab, HOSTS)
    out = _pool(lab, "parallel", HOSTS)
    assert all(out["ok"].values())
    assert out["seconds"] < 1.8, out


def test_command_timeout_is_bounded(lab) -> None:
    _pin(lab, HOSTS)
    out = _pool(lab, "timeout", ["lim2"])
    assert not out["ok"] and "did not finish within 1 s" in out["error"]
    assert out["seconds"] < 3


def test_unknown_host_key_refused_with_fingerprint_then_accepted(lab) -> None:
    _pin(lab, ["lim1"])
    out = _pool(lab, "one", ["lim2"])
    expect = lab.run_python("lim1", "import sys, base64, hashlib; k = sys.argv[1].split()[1]; "
                            "print('SHA256:' + base64.b64encode(hashlib.sha256(base64.b64decode(k))"
                            ".digest()).decode().rstrip('='))",
                            args=[lab.hosts["lim2"].host_key]).stdout.strip()
    assert "host key not known yet" in out["error"] and expect in out["error"]
    out = _pool(lab, "one", ["lim2"], accept=True)
    assert out["ok"] and out["stdout"].strip() == "lim2"
    kh = lab.exec("lim1", ["cat", "/etc/mxone/known_hosts"]).stdout
    assert f"lim2,{lab.hosts['lim2'].ip} {lab.hosts['lim2'].host_key}" in kh
    out = _pool(lab, "one", ["lim2"])  # pinned now: no acceptance needed
    assert out["ok"]


def test_changed_host_key_refused_even_with_accept(lab) -> None:
    wrong = lab.hosts["lim3"].host_key
    lab.exec("lim1", "mkdir -p /etc/mxone && cat > /etc/mxone/known_hosts",
             input=f"lim2,{lab.hosts['lim2'].ip} {wrong}\n")
    out = _pool(lab, "one", ["lim2"], accept=True)
    assert not out["ok"]
    assert "HOST KEY CHANGED" in out["error"] and "lim2" in out["error"]
    assert "remove the line for lim2 from /etc/mxone/known_hosts" in out["error"]


def test_unreachable_server_is_named_and_others_unaffected(lab) -> None:
    _pin(lab, HOSTS)
    lab.faults.cut("lim3")
    req = {"what": "parallel", "known_hosts": "/etc/mxone/known_hosts",
           "key": str(lab.user_key_path), "targets": [[n, str(lab.hosts[n].ip)] for n in HOSTS]}
    code = POOL_SCRIPT.replace('pool = ssh.Pool(Path(req["known_hosts"]), Path(req["key"]), '
                               'accept_new=req.get("accept", False))',
                               'pool = ssh.Pool(Path(req["known_hosts"]), Path(req["key"]), '
                               'connect_timeout=1.0)')
    code = code.replace('        out["ok"] = {k: v.ok for k, v in res.items()}',
                        '        out["ok"] = {k: v.ok for k, v in res.items()}\n'
                        '        out["error"] = {k: v.error for k, v in res.items()}')
    out = json.loads(lab.run_python("lim1", code, input=json.dumps(req), timeout=60).stdout)
    assert out["ok"] == {"lim1": True, "lim2": True, "lim3": False, "standby1": True}
    assert "server lim3 unreachable" in out["error"]["lim3"]
