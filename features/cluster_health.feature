@smoke
Feature: A Harvester cluster is healthy before an upgrade
  Before anyone upgrades, a cluster must pass the checks Harvester's own pre-upgrade
  webhook makes: every node Ready, every cluster-api Machine Running and matched to its
  Node, every ManagedChart Ready, and the server-version setting saying what it runs.

  Scenario Outline: A Harvester <version> cluster is ready to upgrade
    Given a Harvester cluster at version <version>
    Then every node is Ready
    And every Machine is Running and matched to its Node
    And every ManagedChart is Ready
    And the server-version setting is <version>

    Examples:
      | version     |
      | v1.4.2      |
      | v1.5.0-rc2  |
      | v1.5.0      |
      | v1.5.1      |
      | master-ce188325-head |
