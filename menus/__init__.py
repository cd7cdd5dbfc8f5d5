"""The urwid menus of the MX-ONE Maintenance Utility.

Views only: every action is a function of :mod:`mxone_maintenance.actions`, reached through
:class:`mxone_maintenance.service.Maintenance`; the agents are reached through an
:class:`mxone_menus.operations.Operations` object. Entry point: :func:`mxone_menus.app.run`.
"""
