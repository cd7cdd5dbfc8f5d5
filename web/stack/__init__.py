"""What runs on each server of the PM/SNM pair: keepalived, PostgreSQL, the web server.

``api`` is the contract with the tool (``PairSettings`` in, ``StackStatus`` out);
``apply`` the functions the tool calls on *this* server (configure, status, fallback,
rejoin, reconfigure_fallback, remove), also a command (``python3 -m mxone_web.stack``,
``cli``). Each component has its module: ``postgres`` (the database, primary or hot
standby, and how many committed rows a failover may lose), ``follow`` (the database made
a standby of the peer: base backup or pg_rewind), ``keepalived`` (VRRP and the VIP),
``webserver`` (nginx and the reference application, :mod:`mxone_web.refapp`), ``hooks``
(installing the hook). ``hook`` is the stdlib-only script keepalived and systemd run on
the server (notify: promote or fence; check; the synchronous-replication watcher);
``host`` runs commands and writes files here.
"""
