"""The Maintenance facade over the config file: preview, plan, apply, stale refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from mxone_maintenance import actions
from mxone_maintenance.errors import ConfigFileError, ValidationError
from mxone_maintenance.service import Maintenance


def test_preview_plan_apply_round(tmp_path: Path) -> None:
    m = Maintenance(tmp_path / "system.toml")
    assert m.system().generation == 0
    change = m.preview(actions.add_server, "lim1", "10.0.2.11/24", lim=1)
    assert not (tmp_path / "system.toml").exists()  # preview writes nothing
    plan = m.plan(change)
    assert plan[0].what.startswith("server lim1 (10.0.2.11/24 on eth0) joins the system")
    assert plan[-1].server == "lim1" and "generation 1" in plan[-1].what
    seen: list[tuple[str, float]] = []
    result = m.apply(change, lambda line, frac: seen.append((line, frac)))
    assert result.ok and result.generation == 1
    assert seen[-1][1] == 1.0
    assert m.system().server("lim1").lim == 1


def test_bad_input_raises_and_writes_nothing(tmp_path: Path) -> None:
    m = Maintenance(tmp_path / "system.toml")
    m.apply(m.preview(actions.add_server, "lim1", "10.0.2.11/24", lim=1))
    before = (tmp_path / "system.toml").read_bytes()
    with pytest.raises(ValidationError, match="base-ip-syntax"):
        m.preview(actions.add_server, "lim2", "10.0.2.300/24", lim=2)
    assert (tmp_path / "system.toml").read_bytes() == before


def test_stale_change_is_refused(tmp_path: Path) -> None:
    m = Maintenance(tmp_path / "system.toml")
    first = m.preview(actions.add_server, "lim1", "10.0.2.11/24", lim=1)
    second = m.preview(actions.add_server, "lim2", "10.0.2.12/24", lim=2)
    m.apply(first)
    with pytest.raises(ConfigFileError, match="the system changed meanwhile"):
        m.apply(second)
    assert [s.name for s in m.system().servers] == ["lim1"]
