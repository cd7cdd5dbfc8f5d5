"""Network faults injected in the lab switch, never on the hosts themselves.

Every fault lives in the switch namespace, so a host under test sees only what a real
server would see when its cable, its switch port or the network misbehaves:

- ``cut(host)``: every frame from and to the host's switch port is dropped.
- ``loss(host, percent, direction)``: each frame is dropped with that probability,
  independently (an echo request *and* its reply each take the chance with ``"both"``,
  so a ping round trip fails with probability ``1 - (1 - p)**2``).
- ``partition(a, b)``: frames between the two hosts' ports are dropped; both still reach
  everybody else.
- ``link_down(host)``: the host's switch port goes down, the host's eth0 loses carrier
  (a pulled cable); ``link_up`` plugs it back.
- ``rate(host, kbit)``: frames sent *to* the host leave its switch port through a token
  bucket (tc ``tbf``) of that many kbit/s; capping every port caps both directions.
- ``drop_garp(addresses)``: gratuitous ARP requests announcing any of ``addresses``
  (sender IP = one of them) are dropped in the switch; ARP replies still pass.
- ``drop_ssh(host)``: every TCP segment to or from the host's port 22 is dropped; all
  other traffic (heartbeats) passes.

The drop rules form one nftables table (bridge family, forward hook) that is rewritten
as a whole in one ``nft -f`` transaction at every change, so a reader never sees half a
fault set. The fault set is kept in the lab's state file, so a fault injected by one
process (``mxone-lab fault cut lim2``) is seen and lifted by another.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mxone_lab.errors import LabError
from mxone_lab.state import LabState

TABLE = "mxone_lab_faults"
DIRECTIONS = ("both", "from", "to")


@dataclass
class FaultState:
    """The faults in force: plain data, stored in the lab's state file."""

    cut: set[str] = field(default_factory=set)
    #: host -> (percent, direction)
    loss: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: unordered host pairs, each stored sorted
    partitions: set[tuple[str, str]] = field(default_factory=set)
    down: set[str] = field(default_factory=set)
    #: host -> kbit/s of the token bucket on its switch port
    rate: dict[str, int] = field(default_factory=dict)
    #: addresses whose gratuitous ARP requests are dropped
    garp: set[str] = field(default_factory=set)
    #: hosts whose SSH traffic is dropped
    ssh: set[str] = field(default_factory=set)

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None) -> FaultState:
        data = data or {}
        return cls(
            cut=set(data.get("cut", ())),
            loss={h: (int(p), str(d)) for h, (p, d) in data.get("loss", {}).items()},
            partitions={(a, b) for a, b in data.get("partitions", ())},
            down=set(data.get("down", ())),
            rate={h: int(k) for h, k in data.get("rate", {}).items()},
            garp=set(data.get("garp", ())),
            ssh=set(data.get("ssh", ())),
        )

    def to_mapping(self) -> dict[str, Any]:
        return {
            "cut": sorted(self.cut),
            "loss": {h: [p, d] for h, (p, d) in sorted(self.loss.items())},
            "partitions": [list(p) for p in sorted(self.partitions)],
            "down": sorted(self.down),
            "rate": dict(sorted(self.rate.items())),
            "garp": sorted(self.garp),
            "ssh": sorted(self.ssh),
        }

    def describe(self) -> list[str]:
        """One human line per fault in force (empty when the network is healthy)."""
        lines = [f"cut {h}" for h in sorted(self.cut)]
        lines += [f"loss {h} {p}% ({d})" for h, (p, d) in sorted(self.loss.items())]
        lines += [f"partition {a} | {b}" for a, b in sorted(self.partitions)]
        lines += [f"link down {h}" for h in sorted(self.down)]
        lines += [f"rate {h} {k} kbit/s" for h, k in sorted(self.rate.items())]
        lines += [f"gratuitous ARP dropped for {a}" for a in sorted(self.garp)]
        lines += [f"SSH dropped for {h}" for h in sorted(self.ssh)]
        return lines

    def without(self, host: str | None) -> FaultState:
        """The faults left after lifting every fault involving ``host`` (None: all)."""
        if host is None:
            return FaultState()
        return FaultState(
            cut=self.cut - {host},
            loss={h: v for h, v in self.loss.items() if h != host},
            partitions={p for p in self.partitions if host not in p},
            down=self.down - {host},
            rate={h: v for h, v in self.rate.items() if h != host},
            garp=set(self.garp),
            ssh=self.ssh - {host},
        )

    def nft_script(self, port: dict[str, str]) -> str:
        """The nft transaction that makes the drop table match this state.

        ``port`` maps a host name to its switch port. With no drop rule the table is
        removed; the leading ``table`` line makes the ``delete`` valid when it is absent.
        """
        rules: list[str] = []
        for h in sorted(self.cut):
            rules += [f'iifname "{port[h]}" drop', f'oifname "{port[h]}" drop']
        for a, b in sorted(self.partitions):
            rules += [
                f'iifname "{port[a]}" oifname "{port[b]}" drop',
                f'iifname "{port[b]}" oifname "{port[a]}" drop',
            ]
        for h, (pct, direction) in sorted(self.loss.items()):
            # numgen's range is 0..99: "< 100" is refused, and 100 % means every frame.
            chance = "" if pct >= 100 else f" numgen random mod 100 < {pct}"
            if direction in ("both", "from"):
                rules.append(f'iifname "{port[h]}"{chance} drop')
            if direction in ("both", "to"):
                rules.append(f'oifname "{port[h]}"{chance} drop')
        for h in sorted(self.ssh):
            rules += [f'oifname "{port[h]}" tcp dport 22 drop',
                      f'iifname "{port[h]}" tcp sport 22 drop']
        if self.garp:
            rules.append("ether type arp arp operation request arp saddr ip { "
                         + ", ".join(sorted(self.garp)) + " } drop")
        script = f"table bridge {TABLE}\ndelete table bridge {TABLE}\n"
        if rules:
            body = "".join(f"\t\t{r}\n" for r in rules)
            script += (
                f"table bridge {TABLE} {{\n\tchain forward {{\n"
                f"\t\ttype filter hook forward priority 0; policy accept;\n"
                f"{body}\t}}\n}}\n"
            )
        return script


class Faults:
    """Fault injection for one lab (``lab.faults``). Every method takes effect at once.

    Host names are checked (:class:`~mxone_lab.errors.UnknownHost`); a failure to apply
    raises :class:`~mxone_lab.errors.LabError` and leaves the previous fault set in force.
    """

    def __init__(self, state: LabState) -> None:
        self._state = state

    # -- the faults --------------------------------------------------------------------

    def cut(self, host: str) -> None:
        """Drop every frame from and to ``host`` in the switch (the host stays up)."""
        self._state.host(host)
        self._change(lambda s: s.cut.add(host))

    def loss(self, host: str, percent: int, direction: str = "both") -> None:
        """Drop ``percent`` % of the frames of ``host``, each frame independently.

        ``direction``: ``"both"`` (frames it sends and frames sent to it), ``"from"``
        (frames it sends), ``"to"`` (frames sent to it). ``percent`` 0 lifts the loss.
        """
        self._state.host(host)
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise LabError(f"loss percent {percent!r} is invalid: an integer 0..100")
        if direction not in DIRECTIONS:
            raise LabError(
                f"loss direction {direction!r} is invalid: one of {', '.join(DIRECTIONS)}"
            )

        def apply(s: FaultState) -> None:
            if percent == 0:
                s.loss.pop(host, None)
            else:
                s.loss[host] = (percent, direction)

        self._change(apply)

    def partition(self, a: str, b: str) -> None:
        """Drop every frame between ``a`` and ``b``; each still reaches all other hosts."""
        self._state.host(a)
        self._state.host(b)
        if a == b:
            raise LabError(f"partition needs two different hosts, got {a} twice")
        self._change(lambda s: s.partitions.add((min(a, b), max(a, b))))

    def link_down(self, host: str) -> None:
        """Take ``host``'s switch port down: its eth0 loses carrier, like a pulled cable."""
        self._state.host(host)
        self._change(lambda s: s.down.add(host), nft=False, ports={host: False})

    def link_up(self, host: str) -> None:
        """Bring ``host``'s switch port back up."""
        self._state.host(host)
        self._change(lambda s: s.down.discard(host), nft=False, ports={host: True})

    def rate(self, host: str, kbit: int) -> None:
        """Pass frames sent to ``host`` through a token bucket of ``kbit`` kbit/s (0 lifts it)."""
        self._state.host(host)
        if isinstance(kbit, bool) or not isinstance(kbit, int) or not 0 <= kbit <= 10_000_000:
            raise LabError(f"rate {kbit!r} is invalid: kbit/s, an integer 0..10000000")

        def apply(s: FaultState) -> None:
            if kbit:
                s.rate[host] = kbit
            else:
                s.rate.pop(host, None)

        self._change(apply, nft=False, tc=True)

    def drop_garp(self, addresses: list[str]) -> None:
        """Drop gratuitous ARP requests for ``addresses`` (an empty list lifts it)."""
        import ipaddress

        for a in addresses:
            try:
                ipaddress.IPv4Address(a)
            except ValueError as e:
                raise LabError(f"drop_garp: {a!r} is not an IPv4 address") from e
        self._change(lambda s: setattr(s, "garp", set(addresses)))

    def drop_ssh(self, host: str) -> None:
        """Drop ``host``'s SSH traffic (TCP port 22 both ways); everything else passes."""
        self._state.host(host)
        self._change(lambda s: s.ssh.add(host))

    def restore(self, host: str | None = None) -> None:
        """Lift every fault involving ``host``, or every fault of the lab (None).

        With None every switch port is brought up, also one downed behind the lab's back.
        """
        if host is not None:
            self._state.host(host)
        with self._state.lock() as state:
            old = FaultState.from_mapping(state.get("faults"))
            new = old.without(host)
            self._apply_nft(new)
            if old.rate != new.rate:
                self._set_rates(old.rate, new.rate)
            if host is None:
                self._set_ports({h: True for h in self._state.records})
            elif host in old.down:
                self._set_ports({host: True})
            state["faults"] = new.to_mapping()

    # -- reading -----------------------------------------------------------------------

    def replug(self, host: str) -> None:
        """Apply again what lives on ``host``'s switch port itself (its down state, its
        rate cap) after the port was created anew (:meth:`Lab.reboot`); the drop rules
        match ports by name and hold already."""
        fs = self.state
        if host in fs.down:
            self._set_ports({host: False})
        if host in fs.rate:
            self._set_rates({}, {host: fs.rate[host]})

    @property
    def state(self) -> FaultState:
        """The faults in force, as recorded in the lab's state file."""
        return FaultState.from_mapping(self._state.read().get("faults"))

    def active(self) -> list[str]:
        """One human line per fault in force (empty when the network is healthy)."""
        return self.state.describe()

    def nft_ruleset(self) -> str:
        """The switch's live nftables ruleset (what the kernel actually holds)."""
        return self._nft(["list", "ruleset"]).stdout

    # -- plumbing ----------------------------------------------------------------------

    def _change(
        self,
        edit: Callable[[FaultState], None],
        nft: bool = True,
        ports: dict[str, bool] | None = None,
        tc: bool = False,
    ) -> None:
        # Read-modify-apply-write under the lab's lock: another process may change faults too.
        with self._state.lock() as state:
            fs = FaultState.from_mapping(state.get("faults"))
            before = dict(fs.rate)
            edit(fs)
            if nft:
                self._apply_nft(fs)
            if tc:
                self._set_rates(before, fs.rate)
            if ports:
                self._set_ports(ports)
            state["faults"] = fs.to_mapping()

    def _apply_nft(self, fs: FaultState) -> None:
        ports = {h.name: h.switch_port for h in self._state.hosts.values()}
        self._nft(["-f", "-"], fs.nft_script(ports))

    def _nft(self, args: list[str], script: str | None = None) -> subprocess.CompletedProcess[str]:
        return self._in_switch(
            ["nft", *args],
            script,
            "nft in the switch did not finish within 10 s",
            "nft in the switch failed ({rc}): {err}",
        )

    def _set_rates(self, old: dict[str, int], new: dict[str, int]) -> None:
        batch = ""
        for h in sorted(set(old) | set(new)):
            port = self._state.host(h).switch_port
            if h in new:
                batch += (f"qdisc replace dev {port} root tbf rate {new[h]}kbit burst 16kb "
                          "latency 200ms\n")
            else:
                batch += f"qdisc del dev {port} root\n"
        self._in_switch(
            ["tc", "-batch", "-"],
            batch,
            "tc in the switch timed out",
            "tc in the switch failed: {err}",
        )

    def _set_ports(self, up: dict[str, bool]) -> None:
        # `ip -batch` in the switch, not pyroute2's IPRoute(netns=...): that one forks the
        # calling Python process to open its socket, and the fork inherits the caller's
        # signal handlers (see build.py).
        batch = "".join(
            f"link set {self._state.host(n).switch_port} {'up' if on else 'down'}\n"
            for n, on in up.items()
        )
        self._in_switch(
            ["ip", "-batch", "-"],
            batch,
            "setting switch ports timed out",
            f"cannot set switch ports {sorted(up)}: " + "{err}",
        )

    def _in_switch(
        self, argv: list[str], script: str | None, timed_out: str, failed: str
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the switch's network namespace, ``script`` on its stdin; a
        :class:`LabError` saying ``timed_out``, or ``failed`` with ``{rc}`` and ``{err}``
        filled in, when it does not succeed within 10 s."""
        argv = ["nsenter", f"--net={self._state.switch_netns_path}", "--", *argv]
        try:
            r = subprocess.run(
                argv, check=False, input=script, capture_output=True, text=True, timeout=10
            )
        except subprocess.TimeoutExpired:
            raise LabError(f"lab {self._state.id}: {timed_out}") from None
        if r.returncode != 0:
            why = failed.format(rc=r.returncode, err=r.stderr.strip())
            raise LabError(f"lab {self._state.id}: {why}")
        return r
