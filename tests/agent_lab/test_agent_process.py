"""The agent as a process: --daemon and its pidfile, SIGTERM leaves services running, a
restarted agent learns what runs, ctl exit codes, memory."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from mxone_lab import Lab

from tests.agent_lab.cluster import STANDBY, Cluster, answers_during, eventually, wait_answer

pytestmark = pytest.mark.lab
MARGIN = 5.0
RSS_LIMIT_KB = 64 * 1024


def test_daemon_mode_pidfile_means_ready_and_sigterm_keeps_services(lab: Lab) -> None:
    # Slow timers (6 s detection): the agent's restart must fit in one detection period
    # for the peers not to take it for a failure (see mxone_agent.daemon).
    cluster = Cluster(lab, regulars=("lim1",), interval=2.0)
    try:
        cluster.write("lim1")
        cluster.write(STANDBY)
        cluster.start([STANDBY], write=False)
        lab.exec("lim1", [sys.executable, "-m", "mxone_agent", "run", "--daemon", "--pidfile",
                          "/run/mxone/agent.pid", "--log", "/var/log/mxone/agent.log"])
        # the parent returned: the pidfile exists and the control socket answers
        pid = int(lab.exec("lim1", "cat /run/mxone/agent.pid").stdout)
        code, st = cluster.ctl("lim1", "status")
        assert code == 0 and st["pid"] == pid
        assert wait_answer(lab, 1, "lim1", timeout=MARGIN)[0]
        rss = int(lab.exec("lim1", f"grep VmRSS /proc/{pid}/status").stdout.split()[1])
        print(f"agent RSS {rss} kB")
        assert rss <= RSS_LIMIT_KB
        svc = lab.exec("lim1", "cat /run/mxone/service-lim1.pid").stdout.strip()
        lab.exec("lim1", f"kill -TERM {pid}")
        eventually(lambda: lab.exec("lim1", f"test -d /proc/{pid}", check=False).returncode,
                   MARGIN, "the agent exits on SIGTERM")
        assert lab.exec("lim1", "test -e /run/mxone/agent.pid", check=False).returncode != 0
        code, _ = cluster.ctl("lim1", "status")
        assert code == 2
        cluster.start_agent("lim1")
        cluster.wait_ready("lim1")
        # the service kept running through the restart (same PID), and the new agent
        # learned that it runs: no outage, no failover
        assert cluster.runs("lim1") == {1: "active"}
        assert lab.exec("lim1", "cat /run/mxone/service-lim1.pid").stdout.strip() == svc
        assert answers_during(lab, 1, 1.0) == {"LIM 1 on lim1"}
        assert cluster.status(STANDBY)["transitions"] == []
        assert cluster.runs(STANDBY) == {}
    finally:
        cluster.stop_all()
        lab.exec("lim1", "kill $(cat /run/mxone/agent.pid 2>/dev/null) 2>/dev/null; true")


def test_refuses_to_start_with_an_open_secret(lab: Lab) -> None:
    cluster = Cluster(lab, regulars=("lim1",))
    cluster.write("lim1")
    lab.exec("lim1", "chmod 644 /etc/mxone/agent/cluster.key")
    r = lab.exec("lim1", [sys.executable, "-m", "mxone_agent", "run"], check=False)
    assert r.returncode == 1
    assert "mode 0644; it must be 0600" in r.stderr


def test_agent_memory_and_cpu_at_fastest_timers(lab: Lab) -> None:
    cluster = Cluster(lab)
    try:
        cluster.start()
        time.sleep(1.0)
        pid = cluster.status(STANDBY)["pid"]
        ticks = lambda: sum(map(int, lab.exec(STANDBY, f"cat /proc/{pid}/stat").stdout
                                .rsplit(")", 1)[1].split()[11:13]))
        t0, c0 = time.monotonic(), ticks()
        time.sleep(3.0)
        cpu = (ticks() - c0) / 100 / (time.monotonic() - t0) * 100
        rss = int(lab.exec(STANDBY, f"grep VmRSS /proc/{pid}/status").stdout.split()[1])
        print(f"standby agent at 0.1 s interval: RSS {rss} kB, CPU {cpu:.1f} %")
        assert rss <= RSS_LIMIT_KB
        assert cpu < 25
    finally:
        cluster.stop_all()


def test_deployed_layout_on_the_system_python(lab: Lab) -> None:
    """/opt/mxone/agent/current/{bin/mxone-agent, lib/} with only mxone_agent, pyroute2 and
    scapy in lib/, run by /usr/bin/python3 in isolated mode: the standby takes over."""
    import mxone_agent
    import pyroute2
    import scapy

    lib = "/opt/mxone/agent/current/lib"
    links = " && ".join(f"ln -s {Path(m.__file__).parent} {lib}/{name}" for name, m in (
        ("mxone_agent", mxone_agent), ("pyroute2", pyroute2), ("scapy", scapy)))
    script = ("#!/usr/bin/python3 -I\nimport sys\nsys.path.insert(0, "
              f"{lib!r})\nfrom mxone_agent.main import main\nsys.exit(main())\n")
    lab.exec(STANDBY, f"mkdir -p {lib} /opt/mxone/agent/current/bin && {links} && "
             "cat > /opt/mxone/agent/current/bin/mxone-agent && "
             "chmod 755 /opt/mxone/agent/current/bin/mxone-agent", input=script)
    cluster = Cluster(lab, regulars=("lim1",))
    try:
        cluster.start(["lim1"])
        cluster.write(STANDBY)
        cluster.start_agent(STANDBY, ["/opt/mxone/agent/current/bin/mxone-agent"])
        cluster.wait_ready(STANDBY)
        st = cluster.status(STANDBY)
        exe = lab.exec(STANDBY, f"readlink /proc/{st['pid']}/exe").stdout.strip()
        assert exe.startswith("/usr/bin/python3")
        assert wait_answer(lab, 1, "lim1")[0]
        cluster.kill_agent("lim1")
        cluster.kill_service("lim1", 1)
        ok, out = wait_answer(lab, 1, STANDBY, timeout=cluster.detection + MARGIN)
        assert ok, out + cluster.log(STANDBY)
    finally:
        cluster.stop_all()
