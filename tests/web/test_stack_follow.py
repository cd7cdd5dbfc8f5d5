"""The database replaced or rewound only where that loses nothing: never on the server that
holds the virtual IP, and what it held kept as ``main.previous`` (a split brain's rows, a
stand-alone server's own rows) until the next replacement."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from mxone_web.stack import follow, host, postgres
from mxone_web.stack.api import PairRole, PairServer, PairSettings, WebFallback
from mxone_web.stack.host import StackError

SETTINGS = PairSettings(
    role=PairRole.STANDBY,
    master=PairServer("lim1", ipaddress.IPv4Address("10.77.0.11")),
    standby=PairServer("standby1", ipaddress.IPv4Address("10.77.0.20")),
    cluster="north", network=ipaddress.IPv4Network("10.77.0.0/24"), interface="eth0",
    vip=ipaddress.IPv4Address("10.77.0.50"), replication_user="replicator",
    replication_password="Tr4in-Sh3d-Vault", fallback=WebFallback.MANUAL)


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """The database directory under tmp_path; every systemctl and command recorded."""
    d = tmp_path / "15" / "main"
    d.mkdir(parents=True)
    (d / "PG_VERSION").write_text("15\n")
    monkeypatch.setattr(postgres, "DATA", d)
    monkeypatch.setattr(follow, "PREVIOUS", d.with_name("main.previous"))
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(host, "systemctl", lambda *a: calls.append(("systemctl", *a)))
    monkeypatch.setattr(follow.hook, "holds_vip", lambda vip, interface: True)
    return calls


@pytest.mark.parametrize("replace", [
    lambda: follow.base_backup(SETTINGS, SETTINGS.master, lambda line: None),
    lambda: follow.rewind(SETTINGS, SETTINGS.master, lambda line: None),
    lambda: follow.rejoin(SETTINGS, lambda line: None),
], ids=["base backup", "rewind", "rejoin"])
def test_the_server_holding_the_virtual_ip_keeps_its_database(data, replace) -> None:
    with pytest.raises(StackError, match="standby1 holds the virtual IP 10.77.0.50: its "
                                         "database is the active one and is not"):
        replace()
    assert data == []  # not even stopped
    assert (postgres.DATA / "PG_VERSION").exists() and not follow.PREVIOUS.exists()


def test_a_replaced_database_is_kept_and_the_one_kept_before_dropped(data) -> None:
    follow.PREVIOUS.mkdir()
    (follow.PREVIOUS / "old").write_text("older")
    said: list[str] = []
    follow.keep_previous(said.append, move=False)  # before a rewind: a copy
    assert (follow.PREVIOUS / "PG_VERSION").read_text() == "15\n"
    assert not (follow.PREVIOUS / "old").exists()
    assert (postgres.DATA / "PG_VERSION").exists()
    (postgres.DATA / "PG_VERSION").write_text("changed")
    follow.keep_previous(said.append, move=True)  # before a base backup: moved away
    assert (follow.PREVIOUS / "PG_VERSION").read_text() == "changed"
    assert not postgres.DATA.exists()
    assert said == [f"PostgreSQL: the database as it was kept in {follow.PREVIOUS}"] * 2


def test_a_database_that_cannot_be_renamed_is_copied_then_removed(data, monkeypatch) -> None:
    """On overlayfs a directory of the lower layer cannot be renamed (EXDEV)."""
    import errno

    def exdev(self, target):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(type(postgres.DATA), "rename", exdev)
    follow.keep_previous(lambda line: None, move=True)
    assert (follow.PREVIOUS / "PG_VERSION").read_text() == "15\n"
    assert not postgres.DATA.exists()


@pytest.fixture
def rewinding(data, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """As ``data``, on a server without the VIP; every command run recorded (all succeed)."""
    monkeypatch.setattr(follow.hook, "holds_vip", lambda vip, interface: False)
    monkeypatch.setattr(follow.postgres, "pgpass_path", lambda: Path("/nonexistent/.pgpass"))

    def run(argv, **kwargs):
        data.append(tuple(argv))

    monkeypatch.setattr(host, "run", run)
    return data


def test_a_rewind_makes_its_source_checkpoint_first(rewinding, monkeypatch) -> None:
    """A primary promoted moments ago has its old timeline in its control file until its
    first checkpoint, and pg_rewind reads it there: the source checkpoints before."""
    monkeypatch.setattr(follow, "start_as_standby", lambda say: rewinding.append(("started",)))
    follow.rewind(SETTINGS, SETTINGS.master, lambda line: None)
    commands = [c[4] if c[0] == "runuser" else c[0] for c in rewinding]
    assert commands == ["systemctl", "psql", f"{follow.PG_BIN}/pg_rewind", "started"]
    checkpoint = rewinding[1]
    assert checkpoint[-2:] == ("-c", "CHECKPOINT") and "host='10.77.0.11'" in " ".join(checkpoint)
    assert (follow.PREVIOUS / "PG_VERSION").exists()  # kept before the rewind touched it


def test_a_rewound_database_that_does_not_start_is_a_failed_rewind(rewinding,
                                                                   monkeypatch) -> None:
    """What rewind made must start as a standby; if not, the rejoin falls back to a base
    backup (the database as it was already kept)."""
    def fails(say):
        raise StackError("PostgreSQL: the database did not start as a hot standby")

    monkeypatch.setattr(follow, "start_as_standby", fails)
    with pytest.raises(follow.RewindFailed, match="the rewound database did not start as a "
                                                  "standby: PostgreSQL: the database did not"):
        follow.rewind(SETTINGS, SETTINGS.master, lambda line: None)
    assert (follow.PREVIOUS / "PG_VERSION").exists()
