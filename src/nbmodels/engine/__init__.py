"""The engine: one background thread with its own asyncio loop, the jobs, the registry."""
