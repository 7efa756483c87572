"""sender-edge-fill: edge nodes fill their spool from their source endpoints (see daemon.py)."""
