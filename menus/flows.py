"""One function per menu item: the current system in, the first step of its screens out.

Each flow is a view of one registry command (:mod:`mxone_maintenance.commands`): its pick
lists are the command's parameters' offers (only free servers to become standby, only
one-LIM clusters to become preloaded), its form gives the command's values, and the app
runs the command. The words on the screens are the menus' own; the rules are the
commands': a system that changed meanwhile is refused there with the rule named.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from mxone_maintenance import rules
from mxone_maintenance.commands import lists, registry
from mxone_maintenance.commands.base import Option, Result, Values, whole
from mxone_maintenance.commands.changes import all_clusters, cluster_label, lim_options, new_lim
from mxone_maintenance.model import (
    MAX_LIM_NUMBER,
    Cluster,
    FailoverBehaviour,
    FallbackType,
    Lock,
    Role,
    System,
)
from mxone_menus.operations import Operations, Report
from mxone_menus.steps import (
    AgentRequest,
    Call,
    CheckField,
    ChoiceField,
    Field,
    Form,
    Message,
    Pick,
    Step,
    TextField,
)

NEW_IP_EXPLAINED = (
    "Every regular LIM needs one NEW IP address on its own subnet. The new address becomes "
    "the server's base address and the old base address becomes the LIM's alias address "
    "(the address that moves to the standby on failover), so no restart is needed."
)
PRIORITY_RULE = "a whole number from 0 to 99"

Flow = Callable[[System], Step]


# ---- helpers ---------------------------------------------------------------------------

def _options(options: Sequence[Option]) -> tuple[tuple[str, object], ...]:
    return tuple((o.label, o.value) for o in options)


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


def _pick_cluster(system: System, offered: Sequence[Option], title: str, intro: str,
                  next_step: Callable[[str], Step]) -> Step:
    """Choose a cluster among those offered (a command's parameter's offer)."""
    if not offered:
        return Message(title, "There is no cluster for this action in the system."
                       if system.clusters else "There is no cluster in the system yet.")
    return Pick(title, intro, _options(offered), lambda name: next_step(str(name)))


def _form(title: str, intro: str, fields: Sequence[Field], command: str,
          values: Callable[[Values], Values],
          then: Callable[[Values, Operations], Sequence[str]] | None = None) -> Form:
    """A form whose values run the change command named ``command``."""
    cmd = registry.command(command)
    return Form(title, intro, tuple(fields), lambda v: Call(cmd, values(v)), then)


# ---- Server in system ------------------------------------------------------------------

def add_server(system: System) -> Step:
    def values(v: Values) -> Values:
        lim_text = v["lim"].strip()
        lim = None if not lim_text else whole(
            lim_text, "LIM number", f"a whole number from 1 to {MAX_LIM_NUMBER}, or empty for a free server")
        return {"name": v["name"].strip(), "base_ip": v["base_ip"].strip(),
                "interface": v["interface"].strip(), "lim": lim}

    return _form(
        "Add a server to the system",
        "A server with a LIM number joins as a LIM server; without one it joins as a free "
        "server (which can later be converted to a standby server).",
        (
            TextField("name", "Server name", help="The host name of the new server."),
            TextField("base_ip", "Base IP/prefix", help="Its base address with prefix, e.g. 10.0.2.11/24."),
            TextField("interface", "Interface", "eth0", help="The network interface that carries the base address."),
            TextField("lim", "LIM number", help="1 to 124 for a LIM server; leave empty for a free server."),
        ),
        "server.add", values)


def _server_form(system: System, command: str, title: str, empty: str, intro: str, label: str,
                 help: str) -> Step:
    """A form that chooses one server among those the command offers."""
    offered = registry.command(command).offer("name", system)
    if not offered:
        return Message(title, empty)
    return _form(title, intro, (ChoiceField("server", label, _options(offered), help=help),),
                 command, lambda v: {"name": v["server"]})


def remove_server(system: System) -> Step:
    return _server_form(system, "server.remove", "Remove a server from the system",
                        "No server can be removed: every server is in a cluster (remove it "
                        "from its cluster first), or the system has none.",
                        "Only servers that are in no cluster are offered.", "Server",
                        "The server to remove from the system.")


def _table(title: str, result: Result) -> Step:
    """A list command's result as a table."""
    assert result.table is not None
    return dataclasses.replace(result.table, title=title)


def list_servers(system: System) -> Step:
    return _table("List servers", lists.servers(system))


# ---- Standby server in system ----------------------------------------------------------

def convert_to_standby(system: System) -> Step:
    return _server_form(system, "standby.convert", "Convert a free server to standby server",
                        "There is no free server. Add one with Server in system -> Add a "
                        "server to the system (without a LIM number) first.",
                        "Only free servers are offered. A standby server can then be used in "
                        "one cluster.", "Free server",
                        "The free server that becomes a standby server.")


def convert_to_free(system: System) -> Step:
    return _server_form(system, "standby.free", "Convert a standby server to free server",
                        "There is no standby server outside a cluster. A standby in a cluster "
                        "becomes free only after its cluster is deleted.",
                        "Only standby servers that are in no cluster are offered.",
                        "Standby server", "The standby server that becomes a free server.")


# ---- Cluster handling ------------------------------------------------------------------

def list_clusters(system: System) -> Step:
    return _table("List all clusters", lists.clusters(system, {}))


def show_status(system: System) -> Step:
    return AgentRequest("Show status", lambda ops, report: ops.status(), refresh=True)


def _new_lim_fields(system: System, lims: Sequence[Option]) -> list[Field]:
    fields: list[Field] = []
    for o in lims:
        s = system.server_for_lim(int(o.value))
        n = s.lim
        fields += [
            CheckField(f"use_{n}", f"LIM {n} on {s.name} (base now {s.base_ip})", False,
                       help=f"Tick to put LIM {n} in the cluster."),
            TextField(f"ip_{n}", f"  new base IP of LIM {n}",
                      help=NEW_IP_EXPLAINED + f" Enter a free address on {s.name}'s subnet, "
                      "without prefix."),
            TextField(f"prio_{n}", f"  priority of LIM {n}", "1",
                      help="0 to 99; a lower value gives a higher priority to run on the standby."),
        ]
    return fields


def create_cluster(system: System) -> Step:
    title = "Create new cluster in system"
    command = registry.command("cluster.create")
    standbys = command.offer("standby", system)
    lims = command.offer("lims", system)
    if not standbys:
        return Message(title, "There is no standby server outside a cluster. Convert a free "
                       "server to standby server first (Standby server in system).")
    if not lims:
        return Message(title, "There is no LIM server outside a cluster.")
    numbers = [int(o.value) for o in lims]

    def values(v: Values) -> Values:
        chosen = [new_lim(n, v[f"ip_{n}"], v[f"prio_{n}"], f"priority of LIM {n}")
                  for n in numbers if v[f"use_{n}"]]
        return {"name": v["name"].strip(), "standby": v["standby"], "lims": chosen,
                "fallback": v["fallback"], "timers": v["timers"]}

    return _form(title, NEW_IP_EXPLAINED + " A cluster has one standby and up to ten regular LIMs."
                 + _not_offered(system, Role.STANDBY) + _not_offered(system, Role.LIM),
                 (
                     TextField("name", "Cluster name", help="Letters, digits and -."),
                     ChoiceField("standby", "Standby server", _options(standbys),
                                 help="A standby server that is in no cluster yet."),
                     ChoiceField("fallback", "Fallback type", _options(command.offer("fallback", system)),
                                 help="automatic: a LIM goes back to its regular server when that "
                                 "is functional again; manual: an operator orders the fallback."),
                     ChoiceField("timers", "Detection timers", _options(command.offer("timers", system)),
                                 help="How fast a failed regular server is detected."),
                     *_new_lim_fields(system, lims),
                 ),
                 "cluster.create", values)


def change_fallback_or_priority(system: System) -> Step:
    command = registry.command("cluster.set")

    def form(name: str) -> Step:
        c = system.cluster(name)

        def values(v: Values) -> Values:
            prios = [(cl.lim, whole(v[f"prio_{cl.lim}"], f"priority of LIM {cl.lim}", PRIORITY_RULE))
                     for cl in c.lims]
            return {"name": name, "fallback": v["fallback"], "priority": prios}

        return _form(f"Change fallback type or priority: {name}",
                     "A lower priority value gives a higher priority to run on the standby server.",
                     (ChoiceField("fallback", "Fallback type",
                                  tuple((f.value, f.value) for f in FallbackType), c.fallback,
                                  help="automatic or manual fallback to the regular server."),
                      *(TextField(f"prio_{cl.lim}", f"Priority of LIM {cl.lim}", str(cl.priority),
                                  help="0 to 99; lower runs first on the standby.") for cl in c.lims)),
                     command.name, values)

    return _pick_cluster(system, command.offer("name", system), "Change fallback type or priority",
                         "Choose the cluster.", form)


PRELOADED_EXPLAINED = (
    "Preloaded failover keeps the LIM loaded on the standby server too, for the fastest "
    "takeover. It is only for a cluster of one regular LIM and one standby server. "
    "There is no way back: going back from preloaded means deleting the cluster."
)


def change_to_preloaded(system: System) -> Step:
    title = "Change failover behavior to preloaded"
    command = registry.command("cluster.preloaded")

    def form(name: str) -> Step:
        return _form(f"{title}: {name}", PRELOADED_EXPLAINED, (), command.name,
                     lambda v: {"name": name})

    if not command.offer("name", system):
        why = "; ".join(f"{c.name} is preloaded already" if c.failover == FailoverBehaviour.PRELOADED
                        else f"{c.name} has {len(c.lims)} LIMs" for c in system.clusters)
        return Message(title, f"No cluster qualifies{': ' + why if why else ''} "
                       f"({_rule('preloaded-1+1')}). " + PRELOADED_EXPLAINED)
    return _pick_cluster(system, command.offer("name", system), title, "Only clusters of one LIM + standby are "
                         "offered. " + PRELOADED_EXPLAINED, form)


def add_lim(system: System) -> Step:
    title = "Add a LIM to existing cluster"
    command = registry.command("cluster.add-lim")
    free_lims = command.offer("lim", system)

    def form(name: str) -> Step:
        if not free_lims:
            return Message(title, "There is no LIM server outside a cluster.")

        def values(v: Values) -> Values:
            return {"name": name, "lim": new_lim(v["lim"], v["ip_new"], v["prio_new"], "priority")}

        fields = [ChoiceField("lim", "LIM", _options(free_lims), help="A LIM server that is in no cluster.")]
        return _form(f"{title}: {name}", NEW_IP_EXPLAINED + _not_offered(system, Role.LIM),
                     (*fields, TextField("ip_new", "New base IP", help=NEW_IP_EXPLAINED),
                      TextField("prio_new", "Priority", "1", help="0 to 99; lower runs first on the standby.")),
                     command.name, values)

    return _pick_cluster(system, command.offer("name", system), title,
                         "Preloaded clusters are not offered (one LIM only).", form)


def remove_lim(system: System) -> Step:
    title = "Remove a LIM from existing cluster"
    command = registry.command("cluster.remove-lim")

    def form(name: str) -> Step:
        c = system.cluster(name)
        last = (f" LIM {c.lims[0].lim} is the only LIM of {name}: removing it removes the "
                "cluster." if len(c.lims) == 1 else "")
        return _form(f"{title}: {name}",
                     "The LIM's alias becomes its base address again. Removing the last LIM of "
                     "a cluster removes the whole cluster." + last,
                     (ChoiceField("lim", "LIM", _options(lim_options(system, c)),
                                  help="The LIM to remove."),),
                     command.name, lambda v: {"name": name, "lim": v["lim"]})

    return _pick_cluster(system, command.offer("name", system), title, "Choose the cluster.", form)


def delete_cluster(system: System) -> Step:
    title = "Delete cluster in system"
    command = registry.command("cluster.delete")

    def form(name: str) -> Step:
        return _form(f"{title}: {name}",
                     "Every LIM's alias becomes its base address again; the standby stays a "
                     "standby server (convert it to free afterwards if wanted).", (),
                     command.name, lambda v: {"name": name})

    return _pick_cluster(system, command.offer("name", system), title,
                         "Choose the cluster to delete.", form)


FALLBACK_NOW, FALLBACK_WAIT, FALLBACK_CANCEL = "now", "wait", "cancel"
FALLBACK_WAIT_S = 3600.0


def move_lim_to_regular(system: System) -> Step:
    title = "Move LIM from standby to regular server"
    def pick_lim(name: str) -> Step:
        c = system.cluster(name)
        return Pick(f"{title}: {name}", "Choose the LIM to move back to its regular server.",
                    _options(lim_options(system, c)), lambda lim: pick_how(c, int(lim)))


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
            lambda how: fallback_request(c, lim, home, str(how)))

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

    # The clusters of the LIMs the command offers (its rule: fallback type manual).
    offered = {int(o.value) for o in registry.command("cluster.fallback").offer("lim", system)}
    clusters = [Option(cluster_label(c), c.name) for c in system.clusters
                if offered & set(c.lim_numbers())]
    return _pick_cluster(system, clusters, title,
                         "Manual fallback: clusters with fallback type manual.", pick_lim)


def lock_lim(system: System) -> Step:
    title = "Lock LIM to server"

    def form(name: str) -> Step:
        c = system.cluster(name)
        return _form(f"{title}: {name}", "A locked LIM does not fail over (or fall back).",
                     (ChoiceField("lim", "LIM", _options(lim_options(system, c)), help="The LIM to lock."),
                      ChoiceField("lock", "Lock to", (("its regular server", Lock.REGULAR.value),
                                                      (f"the standby {c.standby_name}", Lock.STANDBY.value)),
                                  help="Where the LIM must stay.")),
                     "cluster.lock", lambda v: {"lim": v["lim"], "to": v["lock"]},
                     then=lambda v, ops: ops.lock(name, v["lim"], v["lock"]))

    return _pick_cluster(system, all_clusters(system), title, "Choose the cluster.", form)


def unlock_lim(system: System) -> Step:
    title = "Unlock LIM from server"

    def form(name: str) -> Step:
        c = system.cluster(name)
        options = lim_options(system, c, locked=True)
        if not options:
            return Message(title, f"No LIM of cluster {name} is locked.")
        return _form(f"{title}: {name}",
                     f"Failover actions can occur again. A LIM unlocked while on the standby "
                     f"follows the fallback type ({c.fallback}).",
                     (ChoiceField("lim", "LIM", _options(options), help="The LIM to unlock."),),
                     "cluster.unlock", lambda v: {"lim": v["lim"]},
                     then=lambda v, ops: ops.lock(name, v["lim"], Lock.NONE.value))

    return _pick_cluster(system, all_clusters(system), title, "Choose the cluster.", form)


def sync_exchange_data(system: System) -> Step:
    title = "Sync exchange data within cluster"
    command = registry.command("cluster.sync")

    def request(name: str) -> Step:
        c = system.cluster(name)

        def run(ops: Operations, report: Report) -> Sequence[str]:
            return ops.sync(name, report)

        return AgentRequest(
            f"{title}: {name}", run,
            f"Order a sync of exchange data between the regular servers of {name} "
            f"(LIMs {', '.join(map(str, c.lim_numbers()))}) and standby {c.standby_name} now?")

    return _pick_cluster(system, command.offer("name", system), title, "Choose the cluster.",
                         request)


FLOWS: dict[str, Flow] = {
    "server.add": add_server, "server.remove": remove_server, "server.list": list_servers,
    "standby.convert": convert_to_standby, "standby.free": convert_to_free,
    "cluster.list": list_clusters, "cluster.status": show_status,
    "cluster.create": create_cluster, "cluster.set": change_fallback_or_priority,
    "cluster.preloaded": change_to_preloaded, "cluster.add-lim": add_lim,
    "cluster.remove-lim": remove_lim, "cluster.delete": delete_cluster,
    "cluster.fallback": move_lim_to_regular, "cluster.lock": lock_lim,
    "cluster.unlock": unlock_lim, "cluster.sync": sync_exchange_data,
}
"""The flow of each command the menus offer, by the command's name."""
