"""The one exception root of the agent package."""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the agent raises on purpose (bad config, bad heartbeat, ...).

    Callers may catch this one class to handle any agent failure that is not a bug.
    """
