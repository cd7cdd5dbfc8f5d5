"""The registry is the one command layer: every command has a menu item and a CLI
subcommand, and every menu item and every system subcommand is a registry command.

A command that by nature belongs to one face says so (``only`` and ``why``); that list is
asserted here and kept tiny.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator

from mxone_maintenance import cli
from mxone_maintenance.commands import registry
from mxone_maintenance.commands.base import Command, Kind
from mxone_menus import flows, tree


def menu_commands(menu: tree.SubMenu) -> Iterator[str]:
    """The command named by every item of the menu tree, depth first."""
    for item in menu.items:
        if isinstance(item, tree.SubMenu):
            yield from menu_commands(item)
        elif isinstance(item, tree.Choice):
            yield item.command


def cli_commands(parser: argparse.ArgumentParser) -> Iterator[str]:
    """``group.word`` of every server/standby/cluster subcommand of the parser."""
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for group in registry.GROUPS:
        sub = next(a for a in top.choices[group]._actions
                   if isinstance(a, argparse._SubParsersAction))
        for word, p in sub.choices.items():
            assert p.get_default("run") is registry.command(f"{group}.{word}"), (group, word)
            yield f"{group}.{word}"


def gaps(commands: tuple[Command, ...], menu: tree.SubMenu,
         parser: argparse.ArgumentParser) -> list[str]:
    """What breaks the rule, one line each (empty when both faces cover the registry)."""
    in_menu, in_cli = list(menu_commands(menu)), list(cli_commands(parser))
    names = {c.name for c in commands}
    out = []
    for c in commands:
        if c.only and not c.why:
            out.append(f"{c.name}: only on the {c.only} face, without a reason")
        if c.only != "cli" and c.name not in in_menu:
            out.append(f"{c.name}: no menu item")
        if c.only == "cli" and c.name in in_menu:
            out.append(f"{c.name}: says CLI only, but the menu has it")
        if c.only != "menu" and c.name not in in_cli:
            out.append(f"{c.name}: no CLI subcommand")
    out += [f"menu item {n}: not a registry command" for n in in_menu if n not in names]
    out += [f"menu item {n}: no flow" for n in in_menu if n not in flows.FLOWS]
    out += [f"menu item {n}: twice in the menu" for n in set(in_menu) if in_menu.count(n) > 1]
    out += [f"subcommand {n}: not a registry command" for n in in_cli if n not in names]
    return out


def test_every_command_has_a_menu_item_and_a_subcommand() -> None:
    assert gaps(registry.COMMANDS, tree.main_menu(), cli._parser()) == []


def test_one_face_commands_are_few_and_say_why() -> None:
    one_face = {c.name: (c.only, c.why) for c in registry.COMMANDS if c.only}
    print("\n".join(f"{name}: {only} only: {why}" for name, (only, why) in one_face.items()))
    assert {name: only for name, (only, _why) in one_face.items()} == {"cluster.repair": "cli"}
    assert all(why for _only, why in one_face.values())


def test_every_command_is_complete_for_its_kind() -> None:
    for c in registry.COMMANDS:
        assert c.help and c.group in registry.GROUPS, c.name
        if c.kind is Kind.CHANGE:
            assert c.change is not None and c.run is None, c.name
        else:
            assert c.run is not None and c.change is None, c.name


def test_the_walk_catches_a_command_missing_from_a_face() -> None:
    menu = tree.main_menu()
    cluster = next(i for i in menu.items if isinstance(i, tree.SubMenu) and i.label == "Cluster handling")
    pruned = dataclasses.replace(cluster, items=tuple(
        i for i in cluster.items if not (isinstance(i, tree.Choice) and i.command == "cluster.sync")))
    without_sync = dataclasses.replace(menu, items=tuple(
        pruned if i is cluster else i for i in menu.items))
    assert gaps(registry.COMMANDS, without_sync, cli._parser()) == ["cluster.sync: no menu item"]
    stray = dataclasses.replace(menu, items=(*menu.items[:-1], tree.Choice(
        "Reboot the system", "not a command", "system.reboot"), menu.items[-1]))
    assert gaps(registry.COMMANDS, stray, cli._parser()) == [
        "menu item system.reboot: not a registry command", "menu item system.reboot: no flow"]
    extra = Command("cluster.rename", "rename a cluster", Kind.CHANGE, change=lambda s, v: None)  # type: ignore[arg-type,return-value]
    assert gaps((*registry.COMMANDS, extra), menu, cli._parser()) == [
        "cluster.rename: no menu item", "cluster.rename: no CLI subcommand"]
