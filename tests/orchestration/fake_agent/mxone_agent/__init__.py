"""A stand-in agent for orchestration tests: the `mxone-agent` contract, no failover logic."""
