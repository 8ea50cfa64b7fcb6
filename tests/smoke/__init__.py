"""Smoke tests: each real server is reached through the client the library uses."""
