"""Reliability and security: faults, bad input, TLS (issue 12; see docs/reliability.md)."""
