"""Guest RKE2 clusters on Harvester VMs: reaching them, their charts, volumes and load balancers.

`cluster` (a kubeconfig the lab gives, the one its Rancher publishes, or a guest a Rancher provisions),
`charts` (HelmChart or helm CLI installs, `helm history`), `rollout` (rollout waits, where pods
landed, why pods are Pending), `csi` (where the CSI controllers run, or why they cannot), `audit`
(nothing of an uninstalled chart remains), `volumes` (guest PVC -> host PVC -> Longhorn volume,
attach/detach), `volume_data` (data written and checked on a volume), `loadbalancers` (guest Services
-> host LoadBalancers and IPPools).
"""
