"""bench-sync: exchange-data sync throughput against plain scp, in one lab, in one run.

Figures, not a test. Builds its own lab (lim2 and standby1), writes a data version of
SIZE_MB on lim2 in 64 MiB files, then over the same lab link and the same ssh options:
  * scp -r of the version directory to standby1 (the reference),
  * our sync of that version to standby1 (fetch, verify against the manifest, fsync, rename),
  * a re-sync with nothing changed (target <= 1 s),
  * a re-sync after one 64 MiB file changed (only that file travels).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from mxone_lab.lab import Lab
from mxone_lab.spec import HostSpec, LabSpec

ROOT = "/var/opt/mxone/xdata"
PY = sys.executable
AGENT = f"{PY} -m mxone_agent.xdata_sync"
FILE_MB = 64

WRITE = """
import os, sys
from pathlib import Path
from mxone_agent import xdata
size_mb, file_mb, salt = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
block = os.urandom(1 << 20)
files = {}
for i in range(size_mb // file_mb):
    # distinct content per file, cheap to make: a random MiB repeated with a per-file prefix
    files[f"sysdb/part{i:03d}"] = (salt + str(i)).encode().ljust(64, b".") + block * file_mb
files["reload/ext.db"] = salt.encode() * 1000
m = xdata.write_version(Path("%(root)s"), 2, files)
print(m.version, m.total_bytes)
""" % {"root": ROOT}

CHANGE_ONE = """
import os
from pathlib import Path
from mxone_agent import xdata
path, m = xdata.newest_valid(Path("%(root)s"), 2)
files = {f.path: (path / f.path).read_bytes() for f in m.files}
files["sysdb/part000"] = b"changed" + files["sysdb/part000"][7:]
print(xdata.write_version(Path("%(root)s"), 2, files).version)
""" % {"root": ROOT}

SYNC = """
import json, sys, time
from pathlib import Path
from mxone_agent import xdata_sync
ssh = xdata_sync.ssh_args(sys.argv[1], Path("/root/.ssh/id_ed25519"), Path("/root/.ssh/known_hosts"))
peer = xdata_sync.Peer("standby1", ssh, agent=sys.argv[2], root=Path("%(root)s"))
t0 = time.perf_counter()
r = xdata_sync.sync_lim(2, Path("%(root)s"), "lim2", peer)
print(json.dumps({**r.to_dict(), "wall": time.perf_counter() - t0}))
""" % {"root": ROOT}

SCP = """
import subprocess, sys, time
from pathlib import Path
from mxone_agent import xdata
path, m = xdata.newest_valid(Path("%(root)s"), 2)
t0 = time.perf_counter()
subprocess.run(["scp", "-q", "-r", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                str(path), f"root@{sys.argv[1]}:/var/tmp/scp-copy-{sys.argv[2]}"], check=True)
print(time.perf_counter() - t0)
""" % {"root": ROOT}


def standby_config(lab: Lab) -> str:
    """standby1's node config: `xdata serve` answers only for the LIMs it names (LIM 2)."""
    servers = [{"name": n, "base_ip": str(lab.hosts[n].ip), "prefix": 24, "interface": "eth0",
                "role": r} for n, r in (("lim2", "regular"), ("standby1", "standby"))]
    return json.dumps({
        "format": 1, "generation": 1, "node": "standby1", "cluster": "bench",
        "fallback": "manual", "failover": "regular", "timers": {"interval": 1.0, "misses": 3},
        "garp": {"burst": 3, "second_burst_after": 1.0, "refresh_interval": None},
        "heartbeat_port": 7011, "servers": servers,
        "lims": [{"lim": 2, "server": "lim2", "alias_ip": "10.77.0.52", "prefix": 24,
                  "interface": "eth0", "priority": 1, "lock": "none"}]})


def main() -> int:
    p = argparse.ArgumentParser(prog="bench-sync", description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=int, default=1024, help="data size (default 1024 = 1 GiB)")
    p.add_argument("--runs", type=int, default=3, help="runs of each full transfer (default 3)")
    args = p.parse_args()
    spec = LabSpec(hosts=(HostSpec("lim2", 12), HostSpec("standby1", 20)))
    with Lab.up(spec) as lab:
        sb = str(lab.hosts["standby1"].ip)
        lab.exec("standby1", "mkdir -p /etc/mxone/agent && cat > /etc/mxone/agent/node.json",
                 input=standby_config(lab))
        made = lab.run_python("lim2", WRITE, args=[str(args.size_mb), str(FILE_MB), "v1"], timeout=600)
        total = int(made.stdout.split()[1])
        print(f"bench-sync: {total / 2**20:.0f} MiB in {args.size_mb // FILE_MB} files + reload data, "
              f"lim2 -> standby1 over the lab bridge, same ssh options")
        scp_s, ours_s = [], []
        for run in range(args.runs):
            # Each timed transfer starts with no dirty pages left by the one before (their
            # writeback would land on the next one's clock); not timed.
            lab.exec("standby1", "sync")
            scp_s.append(float(lab.run_python("lim2", SCP, args=[sb, str(run)], timeout=900).stdout))
            lab.exec("standby1", f"rm -rf /var/tmp/scp-copy-{run} {ROOT} && sync")
            out = json.loads(lab.run_python("lim2", SYNC, args=[sb, AGENT], timeout=900).stdout)
            assert out["direction"] == "to-standby" and out["fetched_bytes"] == total, out
            ours_s.append(out["wall"])
            if run < args.runs - 1:
                lab.exec("standby1", f"rm -rf {ROOT} && sync")
        scp_med, ours_med = statistics.median(scp_s), statistics.median(ours_s)
        mib = total / 2**20
        print(f"  scp -r            median {scp_med:6.2f} s  {mib / scp_med:7.1f} MiB/s  "
              f"(runs: {', '.join(f'{x:.2f}' for x in scp_s)})")
        print(f"  mxone sync        median {ours_med:6.2f} s  {mib / ours_med:7.1f} MiB/s  "
              f"(runs: {', '.join(f'{x:.2f}' for x in ours_s)}; incl. manifest check and fsync)")
        print(f"  throughput ours/scp: {scp_med / ours_med:.2f}  (target >= 0.90)")
        same = [json.loads(lab.run_python("lim2", SYNC, args=[sb, AGENT]).stdout) for _ in range(5)]
        assert all(s["direction"] == "none" for s in same)
        print(f"  re-sync, nothing changed: median {statistics.median(s['wall'] for s in same):.3f} s "
              f"(5 runs; target <= 1 s)")
        lab.run_python("lim2", CHANGE_ONE, timeout=600)
        one = json.loads(lab.run_python("lim2", SYNC, args=[sb, AGENT], timeout=900).stdout)
        print(f"  re-sync, one {FILE_MB} MiB file changed: {one['wall']:.2f} s, "
              f"{one['fetched_files']} file(s) / {one['fetched_bytes'] / 2**20:.0f} MiB sent, "
              f"{one['reused_files']} reused locally")
    return 0


if __name__ == "__main__":
    sys.exit(main())
