"""What runs on each server of the PM/SNM pair: keepalived, PostgreSQL, the web server."""
