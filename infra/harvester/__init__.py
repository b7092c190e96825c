"""Harvester domain operations, the same on every backend."""
