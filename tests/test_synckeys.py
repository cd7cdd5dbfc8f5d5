"""The cluster's sync key: generation, the forced-command line, authorized_keys merging."""

from __future__ import annotations

from mxone_maintenance import synckeys


def test_a_generated_key_loads_back_with_the_same_public_key() -> None:
    key = synckeys.SyncKey.generate()
    assert key.private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert key.public.startswith("ssh-ed25519 ")
    assert synckeys.SyncKey.from_private(key.private) == key


def test_the_authorized_line_forces_xdata_serve_and_restricts_everything_else() -> None:
    key = synckeys.SyncKey.generate()
    line = synckeys.authorized_line(key, "north")
    assert line == (f'command="/opt/mxone/agent/current/bin/mxone-agent xdata serve",restrict '
                    f"{key.public} mxone-sync-north")
    assert synckeys.is_sync_line(line)


def test_merging_keeps_the_administrators_lines_and_replaces_only_sync_lines() -> None:
    own = "# admin keys\nssh-ed25519 AAAAadmin admin@desk\n\nssh-rsa AAAAother ops\n"
    old = synckeys.authorized_line(synckeys.SyncKey.generate(), "north")
    new = synckeys.authorized_line(synckeys.SyncKey.generate(), "south")
    merged = synckeys.merged_authorized_keys(own + old + "\n", new)
    assert merged == own + new + "\n"
    assert synckeys.merged_authorized_keys(merged, None) == own
    # an administrator's key whose comment merely starts like ours is not touched
    lookalike = "ssh-ed25519 AAAAx mxone-sync-notes\n"
    assert synckeys.merged_authorized_keys(lookalike, None) == lookalike


def test_known_hosts_lines_are_by_address() -> None:
    assert synckeys.known_hosts_text([("10.0.0.2", "ssh-ed25519", "AAAA")]) == \
        "10.0.0.2 ssh-ed25519 AAAA\n"
