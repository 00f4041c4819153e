"""`kbroker bench`: open-loop load generator, receiver, scenarios (docs/benchmarks.md)."""
