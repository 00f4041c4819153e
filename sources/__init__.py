"""Event sources that run inside kbroker's data plane (PingSource)."""
