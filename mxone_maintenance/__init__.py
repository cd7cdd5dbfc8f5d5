"""MX-ONE server redundancy: the maintenance tool (domain model, rules, orchestration)."""
