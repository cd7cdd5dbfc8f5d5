"""The system as LIM 1 knows it: servers, their roles, and the clusters built from them.

The values are plain immutable data (:mod:`mxone_maintenance.values`, all re-exported
here). A value is not valid merely by existing: a system read from a file may hold any
value the file held (a malformed address stays a string, a priority may be a float).
:func:`mxone_maintenance.rules.check` names every broken prerequisite at once, and
:meth:`System.validated` returns the system only when there is none (and
:meth:`System.warnings` what it allows but warns of). Code past validation
may rely on the typed accessors (:meth:`Server.interface_address`,
:meth:`System.server_for_lim`, ...).

The words shared with the agent (``FallbackType``, ``FailoverBehaviour``, ``Lock``, the
split-brain side, the limits and timer presets) are the agent's contract
(:mod:`mxone_agent.contract`), re-exported here under the tool's names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mxone_agent.contract import FailoverBehaviour, FallbackType, Lock

from mxone_maintenance import rules, warning_rules
from mxone_maintenance.errors import ValidationError
from mxone_maintenance.values import (
    MAX_LIM_NUMBER,
    MAX_LIMS_PER_CLUSTER,
    PRIORITY_RANGE,
    TIMER_PRESETS,
    Cluster,
    ClusterLim,
    NodeFacts,
    Role,
    Server,
    SplitBrainStop,
    SystemValues,
    Timers,
)

__all__ = [
    "MAX_LIMS_PER_CLUSTER", "MAX_LIM_NUMBER", "PRIORITY_RANGE", "TIMER_PRESETS", "Cluster",
    "ClusterLim", "FailoverBehaviour", "FallbackType", "Lock", "NodeFacts", "Role", "Server",
    "SplitBrainStop", "System", "Timers",
]


@dataclass(frozen=True)
class System(SystemValues):
    """Every server known to LIM 1 and every cluster, at one config generation.

    ``generation`` rises by one with every accepted change; agents report the generation
    they run, so a node that missed a change is visible.
    """

    def validated(self, facts: Mapping[str, NodeFacts] | None = None) -> System:
        """Return this system if it breaks no rule; raise ValidationError naming every one."""
        violations = rules.check(self, facts)
        if violations:
            raise ValidationError(violations)
        return self

    def warnings(self, since: SystemValues | None = None) -> list[warning_rules.FieldWarning]:
        """What the warning rules say of this system (values allowed that demand more of it);
        with ``since`` (the system a change starts from), only the warnings it did not have
        already: those the change brings."""
        found = warning_rules.warnings(self)
        if since is None:
            return found
        before = {str(w) for w in warning_rules.warnings(since)}
        return [w for w in found if str(w) not in before]
