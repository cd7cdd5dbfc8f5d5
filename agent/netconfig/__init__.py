"""A server's own network configuration: a new base address that survives a reboot.

When a LIM server joins a cluster its base address changes: the address the operator
entered (B) becomes its base address, and its old base address (A) becomes the LIM's
alias, which only the agent brings up - on this server or on the standby. The tool adds B
at run time (:mod:`mxone_agent.node.address`); this package writes the same change into
the server's own network configuration, so that after a reboot B comes back and A does not
come back on its own (it would collide with the standby holding the LIM).

* :mod:`~mxone_agent.netconfig.text`    - lines, addresses in them, the tool's blocks
* :mod:`~mxone_agent.netconfig.formats` - ifupdown, systemd-networkd, NetworkManager, SUSE
* :mod:`~mxone_agent.netconfig.plan`    - what to change, or why the tool refuses
* :mod:`~mxone_agent.netconfig.write`   - writing it with backups; the byte-exact restore
* :mod:`~mxone_agent.netconfig.request` - the node operations ``net-inspect``,
  ``net-apply``, ``net-restore`` (requests and answers)

It runs on the server, inside ``mxone-agent node``; every function takes the root of the
file system to work in, so the tests run it on temp dirs.
"""
