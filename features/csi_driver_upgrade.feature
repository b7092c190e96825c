@csi
Feature: The Harvester CSI driver in a guest cluster upgrades from chart 0.1.21 to 0.1.23
  Harvester users run RKE2 guest clusters on Harvester VMs; the Harvester CSI driver in the guest
  turns its PersistentVolumeClaims into Harvester (Longhorn) volumes hotplugged into the guest's VMs.
  Chart 0.1.23 adds a required node affinity that keeps the driver's controllers on control-plane
  nodes. Volumes, their data and attaching must survive the upgrade, and uninstalling must leave
  nothing of the chart behind.
  Rows pair a Rancher line only with the RKE2 lines it provisions (its KDM's releases): v2.8
  v1.26-v1.28, v2.9 v1.27-v1.30, v2.10 v1.28-v1.31, v2.11 v1.30-v1.32.

  Scenario Outline: CSI driver 0.1.21 -> 0.1.23 keeps volumes and data (Rancher <rancher>, RKE2 <rke2>)
    Given a Harvester cluster
    And a guest RKE2 <rke2> cluster managed by Rancher <rancher>
    When the harvester-csi-driver chart 0.1.21 is installed in the guest
    Then the harvester-csi-driver-controllers Deployment is rolled out
    And where the CSI controller pods run is recorded
    When a workload writes data to a PVC on the harvester StorageClass
    Then the guest PVC is backed by a host PVC and a Longhorn volume
    And the Longhorn volume is attached to the host node of the workload's guest node
    When the workload is scaled to 0
    Then the Longhorn volume is detached
    When the workload is scaled to 1
    Then the Longhorn volume is attached to the host node of the workload's guest node
    And the data and its checksum are intact
    When the harvester-csi-driver chart is upgraded to 0.1.23
    Then the harvester-csi-driver-controllers Deployment is rolled out
    And every CSI controller pod runs on a control-plane node
    And the data and its checksum are intact
    When the workload is scaled to 0
    Then the Longhorn volume is detached
    When the workload is scaled to 1
    Then the Longhorn volume is attached to the host node of the workload's guest node
    And the data and its checksum are intact
    When the workload and its PVC are deleted
    And the harvester-csi-driver chart is uninstalled
    Then nothing of the harvester-csi-driver chart remains in the guest

    Examples: Each Rancher line and each RKE2 line
      | rancher | rke2            |
      | 2.8     | v1.28.15+rke2r1 |
      | 2.9     | v1.30.10+rke2r1 |
      | 2.10    | v1.31.6+rke2r1  |
      | 2.11    | v1.32.2+rke2r1  |

    @full_matrix
    Examples: The rest of the Rancher x RKE2 matrix
      | rancher | rke2            |
      | 2.8     | v1.26.15+rke2r1 |
      | 2.8     | v1.27.16+rke2r2 |
      | 2.9     | v1.27.16+rke2r2 |
      | 2.9     | v1.28.15+rke2r1 |
      | 2.9     | v1.29.14+rke2r1 |
      | 2.10    | v1.28.15+rke2r1 |
      | 2.10    | v1.29.14+rke2r1 |
      | 2.10    | v1.30.10+rke2r1 |
      | 2.11    | v1.30.10+rke2r1 |
      | 2.11    | v1.31.6+rke2r1  |

  Scenario Outline: CSI driver 0.1.23 controllers stay Pending without a control-plane node (Rancher <rancher>, RKE2 <rke2>)
    Given a Harvester cluster
    And a guest RKE2 <rke2> cluster managed by Rancher <rancher>
    And no node of the guest is labelled as a control-plane node
    When the harvester-csi-driver chart 0.1.23 is installed in the guest
    Then every CSI controller pod stays Pending because no node matches its required control-plane affinity
    And the CSI node plugin runs on every node

    Examples: One row per Rancher line
      | rancher | rke2            |
      | 2.8     | v1.28.15+rke2r1 |
      | 2.9     | v1.30.10+rke2r1 |
      | 2.10    | v1.31.6+rke2r1  |
      | 2.11    | v1.32.2+rke2r1  |

    @full_matrix
    Examples: The rest of the Rancher x RKE2 matrix
      | rancher | rke2            |
      | 2.8     | v1.26.15+rke2r1 |
      | 2.8     | v1.27.16+rke2r2 |
      | 2.9     | v1.27.16+rke2r2 |
      | 2.9     | v1.28.15+rke2r1 |
      | 2.9     | v1.29.14+rke2r1 |
      | 2.10    | v1.28.15+rke2r1 |
      | 2.10    | v1.29.14+rke2r1 |
      | 2.10    | v1.30.10+rke2r1 |
      | 2.11    | v1.30.10+rke2r1 |
      | 2.11    | v1.31.6+rke2r1  |
