"""Operating a run: the daemon, systemd, worker processes, fleets, metrics, the dashboard, logs."""
