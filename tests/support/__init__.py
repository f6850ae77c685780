"""Helpers shared by test packages (loopback ports, a cuttable TCP proxy)."""
