"""One function per menu action: the current system in, the first step of its screens out.

Pick lists offer what makes sense now (only free servers to become standby, only
one-LIM clusters to become preloaded); the core still decides, so a system that changed
meanwhile is refused there with the rule named.
"""

from __future__ import annotations

from collections.abc import Sequence

from mxone_maintenance import actions, rules
from mxone_maintenance.model import (
    MAX_LIM_NUMBER,
    TIMER_PRESETS,
    Cluster,
    FailoverBehaviour,
    FallbackType,
    Lock,
    Role,
    Server,
    System,
)
from mxone_menus.steps import (
    AgentRequest,
    Call,
    CheckField,
    ChoiceField,
    Form,
    FormInputError,
    Message,
    Pick,
    Step,
    Table,
    TextField,
    Values,
)

NEW_IP_EXPLAINED = (
    "Every regular LIM needs one NEW IP address on its own subnet. The new address becomes "
    "the server's base address and the old base address becomes the LIM's alias address "
    "(the address that moves to the standby on failover), so no restart is needed."
)
XDATA_NOTE = ("After this change only one exchange-data version is kept: older versions "
              "(reload and system database data) that do not fit are removed.")


# ---- helpers ---------------------------------------------------------------------------

def _whole(text: str, field: str, rule: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise FormInputError(field, text.strip() or '""', rule) from None


def _server_label(s: Server) -> str:
    what = f"LIM {s.lim}" if s.role == Role.LIM else str(s.role)
    return f"{s.name} ({s.base_ip}, {what})"


def _unclustered(system: System, role: str) -> list[Server]:
    return [s for s in system.servers if s.role == role and system.cluster_of_server(s.name) is None]


def _rule(code: str) -> str:
    return f"rule {code}: {rules.RULES_BY_CODE[code].text}"


def _not_offered(system: System, role: str) -> str:
    """A sentence naming the servers of ``role`` a form leaves out because they are in a
    cluster already, and the rule why ('' when there are none)."""
    taken = []
    for s in system.servers:
        c = system.cluster_of_server(s.name)
        if s.role == role and c is not None:
            what = "standby of" if role == Role.STANDBY else f"LIM {s.lim} in"
            taken.append(f"{s.name} ({what} cluster {c.name})")
    if not taken:
        return ""
    code = "standby-one-cluster" if role == Role.STANDBY else "lim-one-cluster"
    return f" Not offered: {', '.join(taken)}; {_rule(code)}."


def _cluster_label(system: System, c: Cluster) -> str:
    lims = ", ".join(str(n) for n in c.lim_numbers())
    return f"{c.name} (LIMs {lims}; standby {c.standby_name}; fallback {c.fallback}; {c.failover})"


def _pick_cluster(system: System, title: str, intro: str, next_step, clusters=None) -> Step:
    clusters = list(system.clusters if clusters is None else clusters)
    if not clusters:
        return Message(title, "There is no cluster for this action in the system."
                       if system.clusters else "There is no cluster in the system yet.")
    return Pick(title, intro, tuple((_cluster_label(system, c), c.name) for c in clusters),
                next_step)


def _lim_options(system: System, cluster: Cluster, locked: bool | None = None) -> tuple:
    options = []
    for cl in cluster.lims:
        if locked is not None and (cl.lock != Lock.NONE) != locked:
            continue
        name = system.server_for_lim(cl.lim).name
        options.append((f"LIM {cl.lim} on {name} (alias {cl.alias_ip}, lock {cl.lock})", cl.lim))
    return tuple(options)


# ---- Server in system ------------------------------------------------------------------

def add_server(system: System) -> Step:
    def to_call(v: Values) -> Call:
        lim_text = v["lim"].strip()
        lim = None if not lim_text else _whole(
            lim_text, "LIM number", f"a whole number from 1 to {MAX_LIM_NUMBER}, or empty for a free server")
        return Call(actions.add_server, (v["name"].strip(), v["base_ip"].strip(),
                                         v["interface"].strip(), lim))

    return Form(
        "Add a server to the system",
        "A server with a LIM number joins as a LIM server; without one it joins as a free "
        "server (which can later be converted to a standby server).",
        (
            TextField("name", "Server name", help="The host name of the new server."),
            TextField("base_ip", "Base IP/prefix", help="Its base address with prefix, e.g. 10.0.2.11/24."),
            TextField("interface", "Interface", "eth0", help="The network interface that carries the base address."),
            TextField("lim", "LIM number", help="1 to 124 for a LIM server; leave empty for a free server."),
        ),
        to_call,
    )


def remove_server(system: System) -> Step:
    title = "Remove a server from the system"
    servers = [s for s in system.servers if system.cluster_of_server(s.name) is None]
    if not servers:
        return Message(title, "No server can be removed: every server is in a cluster "
                       "(remove it from its cluster first), or the system has none.")
    return Form(title, "Only servers that are in no cluster are offered.",
                (ChoiceField("server", "Server", tuple((_server_label(s), s.name) for s in servers),
                             help="The server to remove from the system."),),
                lambda v: Call(actions.remove_server, (v["server"],)))


def _cluster_of(system: System, s: Server) -> Cluster | None:
    try:
        return system.cluster_of_server(s.name)
    except KeyError:
        return None


def list_servers(system: System) -> Step:
    rows = []
    for s in system.servers:
        c = _cluster_of(system, s)
        cl = c.cluster_lim(s.lim) if c and s.lim is not None and s.lim in c.lim_numbers() else None
        rows.append((s.name, str(s.role), "" if s.lim is None else str(s.lim), str(s.base_ip),
                     cl.alias_ip if cl else "", s.interface, c.name if c else "",
                     str(cl.priority) if cl else "", str(cl.lock) if cl else ""))
    return Table("List servers", ("Server", "Role", "LIM", "Base IP", "Alias IP", "Iface",
                                  "Cluster", "Prio", "Lock"), tuple(rows),
                 f"{len(rows)} server(s), system generation {system.generation}")


# ---- Standby server in system ----------------------------------------------------------

def convert_to_standby(system: System) -> Step:
    title = "Convert a free server to standby server"
    free = [s for s in system.servers if s.role == Role.FREE]
    if not free:
        return Message(title, "There is no free server. Add one with Server in system -> "
                       "Add a server to the system (without a LIM number) first.")
    return Form(title, "Only free servers are offered. A standby server can then be used "
                "in one cluster.",
                (ChoiceField("server", "Free server", tuple((_server_label(s), s.name) for s in free),
                             help="The free server that becomes a standby server."),),
                lambda v: Call(actions.convert_to_standby, (v["server"],)))


def convert_to_free(system: System) -> Step:
    title = "Convert a standby server to free server"
    standbys = _unclustered(system, Role.STANDBY)
    if not standbys:
        return Message(title, "There is no standby server outside a cluster. A standby in a "
                       "cluster becomes free only after its cluster is deleted.")
    return Form(title, "Only standby servers that are in no cluster are offered.",
                (ChoiceField("server", "Standby server", tuple((_server_label(s), s.name) for s in standbys),
                             help="The standby server that becomes a free server."),),
                lambda v: Call(actions.convert_to_free, (v["server"],)))


# ---- Cluster handling ------------------------------------------------------------------

def list_clusters(system: System) -> Step:
    rows = []
    for c in system.clusters:
        timers = c.timers.preset or f"{c.timers.interval}s x {c.timers.misses}"
        for cl in c.lims:
            s = system.server_for_lim(cl.lim)
            rows.append((c.name, s.name, "regular", str(cl.lim), s.base_ip, cl.alias_ip,
                         str(cl.priority), str(cl.lock), str(c.fallback), str(c.failover), timers))
        s = system.server(c.standby_name)
        rows.append((c.name, s.name, "standby", "", s.base_ip, "", "", "", str(c.fallback),
                     str(c.failover), timers))
    return Table("List all clusters", ("Cluster", "Server", "Role", "LIM", "Base IP", "Alias IP",
                                       "Prio", "Lock", "Fallback", "Failover", "Timers"),
                 tuple(rows), f"{len(system.clusters)} cluster(s)")


def show_status(system: System) -> Step:
    return AgentRequest("Show status", lambda ops, report: ops.status(), refresh=True)


def _new_lim_fields(servers: Sequence[Server], ticked: bool = False) -> list:
    fields: list = []
    for s in servers:
        n = s.lim
        fields += [
            CheckField(f"use_{n}", f"LIM {n} on {s.name} (base now {s.base_ip})", ticked,
                       help=f"Tick to put LIM {n} in the cluster."),
            TextField(f"ip_{n}", f"  new base IP of LIM {n}",
                      help=NEW_IP_EXPLAINED + f" Enter a free address on {s.name}'s subnet, "
                      "without prefix."),
            TextField(f"prio_{n}", f"  priority of LIM {n}", "1",
                      help="0 to 99; a lower value gives a higher priority to run on the standby."),
        ]
    return fields


def _new_lim(v: Values, n: int) -> actions.NewLim:
    prio = _whole(v[f"prio_{n}"], f"priority of LIM {n}", "a whole number from 0 to 99")
    return actions.NewLim(n, v[f"ip_{n}"].strip(), prio)


def create_cluster(system: System) -> Step:
    title = "Create new cluster in system"
    standbys = _unclustered(system, Role.STANDBY)
    lims = sorted(_unclustered(system, Role.LIM), key=lambda s: s.lim or 0)
    if not standbys:
        return Message(title, "There is no standby server outside a cluster. Convert a free "
                       "server to standby server first (Standby server in system).")
    if not lims:
        return Message(title, "There is no LIM server outside a cluster.")

    def to_call(v: Values) -> Call:
        chosen = [_new_lim(v, s.lim) for s in lims if v[f"use_{s.lim}"]]
        return Call(actions.create_cluster, (v["name"].strip(), v["standby"], chosen),
                    {"fallback": v["fallback"], "timers": actions.Timers(preset=v["timers"])})

    return Form(title, NEW_IP_EXPLAINED + " A cluster has one standby and up to ten regular LIMs."
                + _not_offered(system, Role.STANDBY) + _not_offered(system, Role.LIM),
                (
                    TextField("name", "Cluster name", help="Letters, digits and -."),
                    ChoiceField("standby", "Standby server",
                                tuple((_server_label(s), s.name) for s in standbys),
                                help="A standby server that is in no cluster yet."),
                    ChoiceField("fallback", "Fallback type",
                                tuple((f.value, f.value) for f in (FallbackType.MANUAL, FallbackType.AUTOMATIC)),
                                help="automatic: a LIM goes back to its regular server when that "
                                "is functional again; manual: an operator orders the fallback."),
                    ChoiceField("timers", "Detection timers", tuple((p, p) for p in TIMER_PRESETS),
                                help="How fast a failed regular server is detected."),
                    *_new_lim_fields(lims),
                ),
                to_call)


def change_fallback_or_priority(system: System) -> Step:
    def form(name: str) -> Step:
        c = system.cluster(name)

        def to_call(v: Values) -> Call:
            prios = {cl.lim: _whole(v[f"prio_{cl.lim}"], f"priority of LIM {cl.lim}",
                                    "a whole number from 0 to 99") for cl in c.lims}
            return Call(actions.change_fallback_or_priority, (name,),
                        {"fallback": v["fallback"], "priorities": prios})

        return Form(f"Change fallback type or priority: {name}",
                    "A lower priority value gives a higher priority to run on the standby server.",
                    (ChoiceField("fallback", "Fallback type",
                                 tuple((f.value, f.value) for f in FallbackType), c.fallback,
                                 help="automatic or manual fallback to the regular server."),
                     *(TextField(f"prio_{cl.lim}", f"Priority of LIM {cl.lim}", str(cl.priority),
                                 help="0 to 99; lower runs first on the standby.") for cl in c.lims)),
                    to_call)

    return _pick_cluster(system, "Change fallback type or priority", "Choose the cluster.", form)


PRELOADED_EXPLAINED = (
    "Preloaded failover keeps the LIM loaded on the standby server too, for the fastest "
    "takeover. It is only for a cluster of one regular LIM and one standby server. "
    "There is no way back: going back from preloaded means deleting the cluster."
)


def change_to_preloaded(system: System) -> Step:
    title = "Change failover behavior to preloaded"
    eligible = [c for c in system.clusters
                if len(c.lims) == 1 and c.failover != FailoverBehaviour.PRELOADED]

    def form(name: str) -> Step:
        return Form(f"{title}: {name}", PRELOADED_EXPLAINED, (),
                    lambda v: Call(actions.change_to_preloaded, (name,)))

    if not eligible:
        why = "; ".join(f"{c.name} is preloaded already" if c.failover == FailoverBehaviour.PRELOADED
                        else f"{c.name} has {len(c.lims)} LIMs" for c in system.clusters)
        return Message(title, f"No cluster qualifies{': ' + why if why else ''} "
                       f"({_rule('preloaded-1+1')}). " + PRELOADED_EXPLAINED)
    return _pick_cluster(system, title, "Only clusters of one LIM + standby are offered. "
                         + PRELOADED_EXPLAINED, form, eligible)


def add_lim(system: System) -> Step:
    title = "Add a LIM to existing cluster"
    free_lims = sorted(_unclustered(system, Role.LIM), key=lambda s: s.lim or 0)

    def form(name: str) -> Step:
        if not free_lims:
            return Message(title, "There is no LIM server outside a cluster.")

        def to_call(v: Values) -> Call:
            prio = _whole(v["prio_new"], "priority", "a whole number from 0 to 99")
            return Call(actions.add_lim, (name, actions.NewLim(v["lim"], v["ip_new"].strip(), prio)))

        fields = [ChoiceField("lim", "LIM", tuple((_server_label(s), s.lim) for s in free_lims),
                              help="A LIM server that is in no cluster.")]
        return Form(f"{title}: {name}", NEW_IP_EXPLAINED + _not_offered(system, Role.LIM),
                    (*fields, TextField("ip_new", "New base IP", help=NEW_IP_EXPLAINED),
                     TextField("prio_new", "Priority", "1", help="0 to 99; lower runs first on the standby.")),
                    to_call)

    clusters = [c for c in system.clusters if c.failover != FailoverBehaviour.PRELOADED]
    return _pick_cluster(system, title, "Preloaded clusters are not offered (one LIM only).",
                         form, clusters)


def remove_lim(system: System) -> Step:
    title = "Remove a LIM from existing cluster"

    def form(name: str) -> Step:
        c = system.cluster(name)
        last = (f" LIM {c.lims[0].lim} is the only LIM of {name}: removing it removes the "
                "cluster." if len(c.lims) == 1 else "")
        return Form(f"{title}: {name}",
                    "The LIM's alias becomes its base address again. Removing the last LIM of "
                    "a cluster removes the whole cluster." + last,
                    (ChoiceField("lim", "LIM", _lim_options(system, c), help="The LIM to remove."),),
                    lambda v: Call(actions.remove_lim, (name, v["lim"])))

    return _pick_cluster(system, title, "Choose the cluster.", form)


def delete_cluster(system: System) -> Step:
    title = "Delete cluster in system"

    def form(name: str) -> Step:
        return Form(f"{title}: {name}",
                    "Every LIM's alias becomes its base address again; the standby stays a "
                    "standby server (convert it to free afterwards if wanted).", (),
                    lambda v: Call(actions.delete_cluster, (name,)))

    return _pick_cluster(system, title, "Choose the cluster to delete.", form)


FALLBACK_NOW, FALLBACK_WAIT, FALLBACK_CANCEL = "now", "wait", "cancel"
FALLBACK_WAIT_S = 3600.0


def move_lim_to_regular(system: System) -> Step:
    title = "Move LIM from standby to regular server"

    def pick_lim(name: str) -> Step:
        c = system.cluster(name)
        return Pick(f"{title}: {name}", "Choose the LIM to move back to its regular server.",
                    _lim_options(system, c), lambda lim: pick_how(c, lim))

    def pick_how(c: Cluster, lim: int) -> Step:
        home, sb = system.server_for_lim(lim).name, c.standby_name
        return Pick(
            f"{title}: LIM {lim}",
            f"{sb} hands LIM {lim} back only once {home} is ready: alive, its agent ready, past "
            f"its hold-down, up since one failure detection period at least and, preloaded, "
            f"its LIM loaded. The answer says whether the fallback is carried out, pending "
            f"(Show status lists pending orders) or refused, and why.",
            ((f"Now: as soon as {home} is ready, within 10 minutes (refused if {home} is "
              "down)", FALLBACK_NOW),
             (f"Wait up to 1 hour for {home} to be ready, also if it is down now", FALLBACK_WAIT),
             (f"Cancel a pending fallback order of LIM {lim}", FALLBACK_CANCEL)),
            lambda how: fallback_request(c, lim, home, how))

    def fallback_request(c: Cluster, lim: int, home: str, how: str) -> Step:
        if how == FALLBACK_CANCEL:
            return AgentRequest(f"{title}: LIM {lim}",
                                lambda ops, report: ops.fallback(c.name, lim, cancel=True),
                                f"Cancel the pending fallback order of LIM {lim} on "
                                f"{c.standby_name}?")
        if how == FALLBACK_WAIT:
            return AgentRequest(f"{title}: LIM {lim}",
                                lambda ops, report: ops.fallback(c.name, lim,
                                                                 wait=FALLBACK_WAIT_S),
                                f"Order the fallback of LIM {lim} from standby {c.standby_name} "
                                f"to {home}, waiting up to 1 hour for {home} to be ready?")
        return AgentRequest(f"{title}: LIM {lim}",
                            lambda ops, report: ops.fallback(c.name, lim),
                            f"Move LIM {lim} from standby {c.standby_name} back to {home} now "
                            "(manual fallback)?")

    manual = [c for c in system.clusters if c.fallback == FallbackType.MANUAL]
    return _pick_cluster(system, title, "Manual fallback: clusters with fallback type manual.",
                         pick_lim, manual)


def lock_lim(system: System) -> Step:
    title = "Lock LIM to server"

    def form(name: str) -> Step:
        c = system.cluster(name)
        return Form(f"{title}: {name}", "A locked LIM does not fail over (or fall back).",
                    (ChoiceField("lim", "LIM", _lim_options(system, c), help="The LIM to lock."),
                     ChoiceField("lock", "Lock to", (("its regular server", Lock.REGULAR.value),
                                                     (f"the standby {c.standby_name}", Lock.STANDBY.value)),
                                 help="Where the LIM must stay.")),
                    lambda v: Call(actions.set_lock, (name, v["lim"], v["lock"])),
                    then=lambda v, ops: ops.lock(name, v["lim"], v["lock"]))

    return _pick_cluster(system, title, "Choose the cluster.", form)


def unlock_lim(system: System) -> Step:
    title = "Unlock LIM from server"

    def form(name: str) -> Step:
        c = system.cluster(name)
        options = _lim_options(system, c, locked=True)
        if not options:
            return Message(title, f"No LIM of cluster {name} is locked.")
        return Form(f"{title}: {name}",
                    f"Failover actions can occur again. A LIM unlocked while on the standby "
                    f"follows the fallback type ({c.fallback}).",
                    (ChoiceField("lim", "LIM", options, help="The LIM to unlock."),),
                    lambda v: Call(actions.set_lock, (name, v["lim"], Lock.NONE.value)),
                    then=lambda v, ops: ops.lock(name, v["lim"], Lock.NONE.value))

    return _pick_cluster(system, title, "Choose the cluster.", form)


def sync_exchange_data(system: System) -> Step:
    title = "Sync exchange data within cluster"

    def request(name: str) -> Step:
        c = system.cluster(name)
        total = len(c.lims)

        def run(ops, report):  # type: ignore[no-untyped-def]
            report(f"syncing the exchange data of {total} LIM(s) with standby "
                   f"{c.standby_name}", 0.0)
            return ops.sync(name, progress=lambda done, of, line: report(
                f"{done}/{of}  {line}", done / of if of else 1.0))

        return AgentRequest(
            f"{title}: {name}", run,
            f"Order a sync of exchange data between the regular servers of {name} "
            f"(LIMs {', '.join(map(str, c.lim_numbers()))}) and standby {c.standby_name} now?")

    return _pick_cluster(system, title, "Choose the cluster.", request)
