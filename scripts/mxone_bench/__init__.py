"""Benchmarks of the MX-ONE redundancy agent in the lab (run by ``scripts/bench-failover``)."""
