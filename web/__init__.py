"""PM/SNM web redundancy: ``webserver_config`` > Redundancy.

The management web application (PM/SNM) of LIM 1's server (the *master*) and of its
cluster's standby server, made redundant: keepalived holds a virtual IP on the active
server, PostgreSQL streams the management database from the primary to a hot standby, and
the web server answers ``http://<virtual IP>/mp`` and ``/snm`` from whichever server is
active. ``stack`` is what runs on each server; the rest is the operator's tool.
"""
