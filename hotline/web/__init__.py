"""HTTP: health probes, metrics (and, as the agents issue lands, the admin API)."""
