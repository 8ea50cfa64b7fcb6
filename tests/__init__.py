"""Tests for gochat-actors; `tests/_servers.py` holds the real-server helpers."""
