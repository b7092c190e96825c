@smoke
Feature: A Harvester cluster is healthy before an upgrade
  Before anyone upgrades, a cluster must pass the checks Harvester's own pre-upgrade
  webhook makes: every node Ready, every cluster-api Machine Running and matched to its
  Node, every ManagedChart Ready, and the server-version setting saying what it runs.
  The outcome does not depend on the version, so the story runs on whatever the cluster
  runs (a matrix cell or `--harvester-version` chooses it on the simulated backend).

  Scenario: A Harvester cluster is ready to upgrade
    Given a Harvester cluster
    Then every node is Ready
    And every Machine is Running and matched to its Node
    And every ManagedChart is Ready
    And the server-version setting is the version the cluster runs
