"""A Kubernetes-compatible API server in Python: the protocol face of the Harvester simulator."""
