"""Where the running agent's log goes (``mxone-agent run --log``), chosen once at start.

* ``--log journal``, or no ``--log`` under systemd (:func:`journal.under_systemd`): the
  journal, natively (:mod:`mxone_agent.journal`): syslog priorities and the fields
  MXONE_CLUSTER, MXONE_NODE, MXONE_LIM (``journalctl -u mxone-agent MXONE_LIM=2``).
* ``--log FILE``, or no ``--log`` with ``--daemon`` outside systemd: the file
  (:data:`paths.LOG` by default), through a :class:`logging.handlers.WatchedFileHandler`
  that reopens the file once logrotate has moved it away. The rotation is logrotate's
  (``logrotate/mxone-agent``, installed as ``/etc/logrotate.d/mxone-agent``): the
  administrator's tool keeps retention and compression in one place, alarms.log rotates
  with the same rules (the alarm book opens it for every line), and the agent never renames
  files itself - a size-rotating handler would rename and reopen inside the log call that
  comes first in a failover (the decision's sentence, logged before the actions start).
* ``--log stderr``, or neither: standard error, as in the foreground.
"""

from __future__ import annotations

import dataclasses
import logging
import logging.handlers
import os
import sys
from collections.abc import Mapping

from mxone_agent import journal, paths

LOGGER = "mxone_agent"
JOURNAL = "journal"
STDERR = "stderr"


@dataclasses.dataclass(frozen=True)
class Destination:
    """``kind`` journal, file or stderr; ``path`` the file's."""

    kind: str
    path: str | None = None


def destination(log: str | None, daemon: bool, environ: Mapping[str, str],
                journal_socket: str = journal.SOCKET) -> Destination:
    """Where the log goes for ``--log`` ``log`` (None: not given) - see the module."""
    if log == JOURNAL:
        return Destination(JOURNAL)
    if log == STDERR:
        return Destination(STDERR)
    if log:
        return Destination("file", log)
    if journal.under_systemd(environ, journal_socket):
        return Destination(JOURNAL)
    if daemon:
        return Destination("file", paths.LOG)
    return Destination(STDERR)


def set_up(dest: Destination, environ: Mapping[str, str] = os.environ) -> logging.Handler:
    """The ``mxone_agent`` logger writes to ``dest`` only (INFO and up); its handler."""
    handler: logging.Handler
    fmt = "%(asctime)s %(levelname)s %(message)s"
    if dest.kind == JOURNAL:
        handler = journal.JournalHandler()
        fmt = "%(message)s"  # the journal keeps time and priority itself
    elif dest.kind == "file":
        assert dest.path is not None
        os.makedirs(os.path.dirname(dest.path) or ".", exist_ok=True)
        handler = logging.handlers.WatchedFileHandler(dest.path, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
        if environ.get("JOURNAL_STREAM"):  # stderr is the journal, which stamps each line
            fmt = "%(levelname)s %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger(LOGGER)
    for old in root.handlers:
        old.close()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False
    return handler


def set_context(handler: logging.Handler, cluster: str, node: str) -> None:
    """Every journal entry from now on names the cluster and the node (no-op elsewhere)."""
    if isinstance(handler, journal.JournalHandler):
        handler.set_context(cluster=cluster, node=node)
