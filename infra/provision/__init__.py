"""libvirt provisioning: networks, pools, volumes and domains from the run's configuration; unattended
Harvester install; golden images; power and console; ownership, teardown and the leak audit.

libvirt-python is imported only when a connection is opened, so the harness runs without it."""
from .audit import OwnedObject, leak_audit, owned_objects, remove_run
from .cluster import ClusterProvisioner, ProvisionedCluster, ProvisionedNode
from .connection import LibvirtUnavailable, open_connection
from .golden import GoldenImage, GoldenStore
from .install_config import InstallConfigServer, NodeSecrets
from .plan import ClusterPlan, NodePlan, PlanRefused, check_plan, plan_cluster
from .power import DomainControl, PowerAction

__all__ = [
           "ClusterPlan",
           "ClusterProvisioner",
           "DomainControl",
           "GoldenImage",
           "GoldenStore",
           "InstallConfigServer",
           "LibvirtUnavailable",
           "NodePlan",
           "NodeSecrets",
           "OwnedObject",
           "PlanRefused",
           "PowerAction",
           "ProvisionedCluster",
           "ProvisionedNode",
           "check_plan",
           "leak_audit",
           "open_connection",
           "owned_objects",
           "plan_cluster",
           "remove_run",
]
