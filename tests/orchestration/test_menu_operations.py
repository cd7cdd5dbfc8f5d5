"""The menus' Operations, backed by the core: lines out, errors through, no rules inside."""

from __future__ import annotations

from pathlib import Path

import pytest

from mxone_maintenance import operations, store
from mxone_maintenance.service import Maintenance
from mxone_menus.operations import AgentOperations

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "system.toml"


class StubOps:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def status(self, system):
        return operations.SystemStatus(system.generation, ())

    def fallback(self, system, cluster, lim, **how):
        self.calls.append(("fallback", cluster, lim, *sorted(how.items())))
        if how:
            return operations.AgentAnswer("standby1", True, "fallback of LIM 2 waits for lim2 "
                                          "to be ready: lim2 is not heard yet", pending=True)
        return operations.AgentAnswer("standby1", True, "LIM 2 handed back")

    def tell_lock(self, system, cluster, lim, lock):
        self.calls.append(("lock", cluster, lim, lock))
        return [operations.AgentAnswer("lim2", True, "ok"),
                operations.AgentAnswer("lim3", False, "agent not running")]

    def sync(self, system, cluster):
        raise NotImplementedError("exchange data sync comes with the data-sync issue")


def test_agent_operations_turn_answers_into_lines(tmp_path: Path) -> None:
    path = tmp_path / "system.toml"
    path.write_bytes(EXAMPLE.read_bytes())
    stub = StubOps()
    ops = AgentOperations(Maintenance(path), stub)
    assert ops.status() == ["System generation 1: no cluster configured."]
    assert ops.fallback("north", 2) == ["standby1     OK      LIM 2 handed back"]
    assert ops.lock("north", 2, "regular") == ["lim2         OK      ok",
                                               "lim3         FAILED  agent not running"]
    assert stub.calls == [("fallback", "north", 2), ("lock", "north", 2, "regular")]
    assert ops.fallback("north", 2, wait=60.0) == [
        "standby1     PENDING fallback of LIM 2 waits for lim2 to be ready: lim2 is not heard yet"]
    assert stub.calls[-1] == ("fallback", "north", 2, ("wait", 60.0))
    with pytest.raises(NotImplementedError, match="data-sync issue"):
        ops.sync("north")
    assert store.load(path).generation == 1
