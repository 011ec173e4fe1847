"""Benchmarks behind `make bench`: ceilings and the service measured in the same run."""
