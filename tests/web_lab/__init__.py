"""Lab tests of the PM/SNM pair on systemd hosts (keepalived, PostgreSQL 15, nginx)."""
