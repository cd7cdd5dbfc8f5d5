"""The loop thread's scheduling at sub-second timers.

At the ``fastest`` and ``bfd`` presets a peer is declared dead after 0.3 or 0.15 s of
silence, and this node's lease runs out a little earlier: a loop that waits 50 ms for a CPU
behind busy processes is a silence its peers see. So when the heartbeat interval is
:data:`RT_INTERVAL` or less, the loop thread (the heartbeats, the lease renewals, the
decisions) runs SCHED_FIFO at :data:`RT_PRIORITY`: it preempts every ordinary process the
moment a timer or a datagram wakes it, and it sleeps otherwise (it uses well under 1% of a
core). Only that thread: the action worker, the sync and hook threads are started before
and stay ordinary, and SCHED_RESET_ON_FORK gives every process or thread started from the
loop ordinary scheduling again. The kernel's real-time throttling
(``/proc/sys/kernel/sched_rt_runtime_us``) still leaves other work 5% of each second,
whatever happens.

Where real-time scheduling is not allowed (a container without CAP_SYS_NICE, systemd's
RestrictRealtime=, cgroup v1 without a real-time budget) the thread gets the strongest
niceness it may (:data:`NICE`) instead, and the log says which one it got. Slower presets
leave the loop ordinary.
"""

from __future__ import annotations

import os
import threading

RT_INTERVAL = 0.1
"""Heartbeat intervals at or below this (seconds) get the raised priority."""
RT_PRIORITY = 10
"""SCHED_FIFO priority of the loop thread: above ordinary work, below the kernel's own
threads (which run at 50) and below anything an administrator already raised."""
NICE = -10
"""The niceness tried when SCHED_FIFO is refused."""


_state = threading.local()  # .raised: how this thread was raised (absent: it was not)


def apply(interval: float) -> str:
    """Set the calling thread's scheduling for heartbeats every ``interval`` seconds (call
    it on the loop thread, again after a reload); returns what it got, in words for the
    log. A thread this module did not raise is left as it was at slower presets."""
    raised: str | None = getattr(_state, "raised", None)
    fifo = getattr(os, "SCHED_FIFO", None)
    reset = getattr(os, "SCHED_RESET_ON_FORK", 0)
    if interval > RT_INTERVAL:
        if raised is not None:
            try:
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
                os.setpriority(os.PRIO_PROCESS, 0, 0)
            except OSError:
                pass
            _state.raised = None
        return "ordinary scheduling"
    if raised is not None:
        return raised
    if fifo is not None:
        try:
            os.sched_setscheduler(0, fifo | reset, os.sched_param(RT_PRIORITY))
            _state.raised = f"SCHED_FIFO priority {RT_PRIORITY} for the loop thread"
            return str(_state.raised)
        except OSError as e:
            refused = f"SCHED_FIFO refused ({e.strerror or e})"
    else:
        refused = "no SCHED_FIFO here"
    try:
        os.setpriority(os.PRIO_PROCESS, 0, NICE)  # on Linux: this thread only
    except OSError as e:
        return f"{refused}; niceness {NICE} refused too ({e.strerror or e}): ordinary scheduling"
    _state.raised = f"{refused}; niceness {NICE} for the loop thread"
    return str(_state.raised)
