@cloud_provider
Feature: The Harvester cloud provider in a guest cluster upgrades from chart 0.2.8 to 0.2.9
  The Harvester cloud provider in an RKE2 guest cluster gives LoadBalancer Services an address:
  from the VM network's DHCP server (`cloudprovider.harvesterhci.io/ipam: dhcp`) or from a Harvester
  IPPool (`pool`), through a LoadBalancer object on the Harvester host; kube-vip in the guest serves
  it. Upgrading the chart must not interrupt either kind, new ones must keep working, and deleting
  them must give the pool its addresses back and leave no host LoadBalancer behind.
  Rows pair a Rancher line only with the RKE2 lines it provisions (its KDM's releases): v2.8
  v1.26-v1.28, v2.9 v1.27-v1.30, v2.10 v1.28-v1.31, v2.11 v1.30-v1.32.

  Scenario Outline: Cloud provider 0.2.8 -> 0.2.9 keeps DHCP and pool load balancers (Rancher <rancher>, RKE2 <rke2>)
    Given a Harvester cluster
    And a guest RKE2 <rke2> cluster managed by Rancher <rancher>
    And an IPPool on the host for the guest cluster
    When the harvester-cloud-provider chart 0.2.8 is installed in the guest
    Then the harvester-cloud-provider Deployment is rolled out
    When a LoadBalancer Service "web-dhcp" with IPAM dhcp is created in the guest
    And a LoadBalancer Service "web-pool" with IPAM pool is created in the guest
    Then every LoadBalancer Service gets an address and the host shows where it came from
    When the harvester-cloud-provider chart is upgraded to 0.2.9 while the load balancers are watched
    Then the harvester-cloud-provider Deployment is rolled out
    And no LoadBalancer Service lost or changed its address during the upgrade
    And every LoadBalancer Service still serves its address
    When a LoadBalancer Service "api-dhcp" with IPAM dhcp is created in the guest
    And a LoadBalancer Service "api-pool" with IPAM pool is created in the guest
    Then every LoadBalancer Service gets an address and the host shows where it came from
    When every LoadBalancer Service is deleted
    Then the pool has its addresses back and no host LoadBalancer of the guest remains

    Examples: Each Rancher line and each RKE2 line
      | rancher | rke2            |
      | 2.8     | v1.28.14+rke2r1 |
      | 2.9     | v1.30.9+rke2r1  |
      | 2.10    | v1.31.5+rke2r1  |
      | 2.11    | v1.32.1+rke2r1  |

    @full_matrix
    Examples: The rest of the Rancher x RKE2 matrix
      | rancher | rke2            |
      | 2.8     | v1.27.16+rke2r1 |
      | 2.9     | v1.28.14+rke2r1 |
      | 2.9     | v1.29.13+rke2r1 |
      | 2.10    | v1.29.13+rke2r1 |
      | 2.10    | v1.30.9+rke2r1  |
      | 2.11    | v1.30.9+rke2r1  |
      | 2.11    | v1.31.5+rke2r1  |
