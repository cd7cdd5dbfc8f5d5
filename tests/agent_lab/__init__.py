"""End-to-end tests of the running agent in the lab."""
