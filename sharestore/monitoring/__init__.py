"""Health checks, Prometheus metrics, structured logs and the request id: the operator's view."""
