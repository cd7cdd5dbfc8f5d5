"""The loop thread's scheduling at sub-second timers (mxone_agent.priority)."""

from __future__ import annotations

import os
import subprocess
import threading
from typing import Any

from mxone_agent import priority


def in_thread(fn: Any) -> Any:
    """Run ``fn`` in a thread of its own (the test's thread keeps its scheduling)."""
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join(timeout=10)
    return out[0]


def policy() -> tuple[int, int, int]:
    return (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority,
            os.getpriority(os.PRIO_PROCESS, 0))


def test_fast_timers_raise_the_calling_thread_and_nothing_it_starts() -> None:
    def body() -> tuple[str, tuple[int, int, int], str, tuple[int, int, int], str]:
        said = priority.apply(0.05)
        raised = policy()
        child = subprocess.run(["cat", "/proc/self/sched"], capture_output=True, text=True,
                               check=True).stdout
        again = priority.apply(1.0)
        return said, raised, child, policy(), again

    said, raised, child, after, again = in_thread(body)
    if said.startswith("SCHED_FIFO"):
        assert raised[0] & ~os.SCHED_RESET_ON_FORK == os.SCHED_FIFO
        assert raised[1] == priority.RT_PRIORITY
        policy_line = next(x for x in child.splitlines() if x.startswith("policy"))
        assert policy_line.split()[-1] == "0"  # the child: SCHED_OTHER (reset on fork)
    else:  # no real-time here: the niceness instead, and the log says so
        assert "niceness" in said and raised[2] in (priority.NICE, 0)
    assert again == "ordinary scheduling"
    assert after[0] == os.SCHED_OTHER and after[2] == 0
    assert policy()[0] == os.SCHED_OTHER  # the test's own thread was never touched


def test_slow_timers_leave_a_thread_as_it_was() -> None:
    def body() -> tuple[str, tuple[int, int, int]]:
        os.setpriority(os.PRIO_PROCESS, 0, 5)  # an administrator's niceness
        return priority.apply(5.0), policy()

    said, after = in_thread(body)
    assert said == "ordinary scheduling"
    assert after[0] == os.SCHED_OTHER and after[2] == 5
