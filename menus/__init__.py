"""The urwid menus of the MX-ONE Maintenance Utility.

Views only: every menu item names a command of :mod:`mxone_maintenance.commands.registry`
(:mod:`mxone_menus.tree`), its screens are built from that command's parameters
(:mod:`mxone_menus.flows`), and its changes run through
:class:`mxone_maintenance.service.Maintenance`; the agents are reached through an
:class:`mxone_menus.operations.Operations` object. No rule and no SSH here.
Entry point: :func:`mxone_menus.app.run`.
"""
