"""Profiles shipped with the simulator (data files; ``reference.json`` is the default)."""
