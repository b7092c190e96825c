@upgrade
Feature: Upgrading Harvester to master
  An upgrade walks LogReady, ImageReady, RepoReady, NodesPrepared, SystemServicesUpgraded and
  NodesUpgraded, each phase with its own budget. From a stable release it completes. From a
  release candidate whose Rancher dependency charts carry a pre-release inside build metadata
  (fleet 106.0.0+up0.12.0-rc.3), it waits for ever for the final chart, because Rancher ranks the
  two versions the same (semver ignores build metadata) while Harvester compares the exact string.
  The harness must say so, well before any global timeout.

  Scenario Outline: Upgrade from <from> to <to>
    Given a Harvester cluster at version <from>
    And every node is Ready
    And every Machine is Running and matched to its Node
    And 64 KiB of random data is stored in the cluster with its checksum
    When the cluster is upgraded to <to>
    Then the upgrade completes within its phase budgets
    And the server-version setting is <to>
    And every node is Ready
    And every node runs the Harvester OS and RKE2 of <to>
    And every Machine is Running and matched to its Node
    And every ManagedChart is Ready
    And the stored data still has its checksum
    And the temporary upgrade objects are removed

    Examples: a stable release to master
      | from   | to          |
      | v1.4.2 | master-ce188325-head |

    @known_issue @issue_8750
    Examples: a release candidate to master
      | from       | to          |
      | v1.5.0-rc2 | master-ce188325-head |

  @issue_8750
  Scenario: The hang from a release candidate is detected and explained early
    Given a Harvester cluster at version v1.5.0-rc2
    When the cluster is upgraded to master-ce188325-head
    Then the upgrade stalls in SystemServicesUpgraded waiting for Helm release cattle-fleet-system/fleet
    And the diagnosis says fleet-106.0.0+up0.12.0 is awaited and fleet-106.0.0+up0.12.0-rc.3 is installed
    And the stall was reported well before the global upgrade budget

  Scenario: After the hang, the operator's remedy lets the upgrade complete
    Given a Harvester cluster at version v1.5.0-rc2
    When the cluster is upgraded to master-ce188325-head
    Then the upgrade stalls in SystemServicesUpgraded waiting for Helm release cattle-fleet-system/fleet
    When the operator upgrades every Rancher dependency release to the chart the upgrade repo asks for
    And the harness re-attaches to the upgrade under way
    Then the upgrade completes within its phase budgets
    And the server-version setting is master-ce188325-head

  Scenario Outline: A pre-flight check of the target's release file flags pre-releases hidden in build metadata
    Given the upgrade repo release file of Harvester <target>
    Then the pre-flight check flags <flagged>

    Examples:
      | target      | flagged                                                       |
      | v1.5.0-rc2  | fleet 106.0.0+up0.12.0-rc.3, fleet-crd 106.0.0+up0.12.0-rc.3  |
      | master-ce188325-head | nothing                                                       |
      | v1.4.2      | nothing                                                       |
