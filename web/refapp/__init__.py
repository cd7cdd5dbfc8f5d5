"""mxone_snm: the reference management application, a stand-in for PM/SNM.

``app.py`` is installed by the stack under ``/opt/mxone/snm`` with ``VERSION`` (the package
version CheckStatus shows as ``mxone_snm-<version>``) and ``schema.sql``; the server's own
``/usr/bin/python3`` runs it with Debian's python3-psycopg2, behind nginx.
"""
