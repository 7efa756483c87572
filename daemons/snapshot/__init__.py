"""sender-snapshot: endpoint snapshots from local stats, and signed reports to the control plane."""
