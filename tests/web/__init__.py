"""Pure tests of mxone_web (webserver_config and the PM/SNM stack)."""
