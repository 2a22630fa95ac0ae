"""Runnable example applications; each runs against local servers by default."""
