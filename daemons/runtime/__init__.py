"""Trio glue every daemon shares: logging, the store off the event loop, systemd notify, running a daemon."""
