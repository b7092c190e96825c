"""Simulated Rancher Managers beside the Harvester twin (and the Rancher front Harvester's VIP serves).

`server.start_rancher(twin, version)` starts one: an HTTPS listener with its own CA and API key,
Rancher's local cluster at `/k8s/clusters/local`, and v2 provisioning of RKE2 clusters on the
twin's VMs through the Harvester node driver.
"""
