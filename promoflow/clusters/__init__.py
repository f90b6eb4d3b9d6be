"""Cluster targets: where a promotion lands (kubernetes: render and server-side apply; health checks)."""
