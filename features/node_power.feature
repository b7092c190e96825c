@nodes
Feature: A node answers SSH and rides through reboots and power cycles
  The harness reaches nodes over SSH with the run's own key and the host keys provisioning
  reported. A node rebooted over SSH drops the session; the harness rebuilds it and sees the
  node come back with a new boot id, Ready again, still running the same Harvester OS.

  Scenario: A node rebooted over SSH comes back Ready with a new boot id
    Given a Harvester cluster at version v1.4.2
    Then node harvester-node-0 reports Harvester OS v1.4.2 over SSH
    When node harvester-node-0 is rebooted
    Then node harvester-node-0 is Ready with the boot id it reports over SSH
    And node harvester-node-0 reports Harvester OS v1.4.2 over SSH
    And every node is Ready

  Scenario: A node power-cycled through libvirt comes back Ready with a new boot id
    Given a Harvester cluster at version v1.5.1
    When node harvester-node-1 is power-cycled through libvirt
    Then node harvester-node-1 is Ready with the boot id it reports over SSH
    And node harvester-node-1 reports Harvester OS v1.5.1 over SSH
    And every node is Ready
