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

__all__ = ["OwnedObject", "leak_audit", "owned_objects", "remove_run", "ClusterProvisioner", "ProvisionedCluster",
           "ProvisionedNode", "LibvirtUnavailable", "open_connection", "GoldenImage", "GoldenStore",
           "InstallConfigServer", "NodeSecrets", "ClusterPlan", "NodePlan", "PlanRefused", "check_plan",
           "plan_cluster", "DomainControl", "PowerAction"]
