"""The command layer: every maintenance action once, as a named command.

A command (:class:`~mxone_maintenance.commands.base.Command`) has its name
(``cluster.add-lim``), its help in the operator's words, its parameters with their
validation and the choices the system offers now, its plan, its apply and its result as
data. :mod:`~mxone_maintenance.commands.registry` lists them all; the CLI subcommands
(:mod:`mxone_maintenance.cli`) and the menu items (``mxone_menus.tree``) are views of that
one registry, and :func:`~mxone_maintenance.commands.base.explain` is the one mapping from
an error to what the operator sees, shared by both faces.
"""
