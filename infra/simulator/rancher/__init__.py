"""Simulated Rancher Managers beside the Harvester simulator (and the Rancher front Harvester's VIP serves).

`server.start_rancher(simulator, version)` starts one: an HTTPS listener with its own CA and API key,
Rancher's local cluster at `/k8s/clusters/local`, and v2 provisioning of RKE2 clusters on the
simulator's VMs through the Harvester node driver.
"""
