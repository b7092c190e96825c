@nodes
Feature: A node answers SSH and rides through reboots and power cycles
  The harness reaches nodes over SSH with the run's own key and the host keys provisioning
  reported (or the lab's inventory pinned). A node rebooted over SSH drops the session; the harness
  rebuilds it and sees the node come back with a new boot id, Ready again, still running the same
  Harvester OS. A power cycle goes through the cluster's power control (libvirt domains on the
  libvirt and simulated backends); a lab without one skips it, saying so.

  Scenario: A node rebooted over SSH comes back Ready with a new boot id
    Given a Harvester cluster
    And a node reachable over SSH
    Then the node reports the Harvester OS of the version the cluster runs
    When the node is rebooted over SSH
    Then the node is Ready with the boot id it reports over SSH
    And the node reports the Harvester OS of the version the cluster runs
    And every node is Ready

  Scenario: A node power-cycled through its power control comes back Ready with a new boot id
    Given a Harvester cluster
    And a node whose power the harness controls
    When the node is power-cycled
    Then the node is Ready with the boot id it reports over SSH
    And the node reports the Harvester OS of the version the cluster runs
    And every node is Ready
