@precheck
Feature: Pre-upgrade check: an orphan cluster-api Machine blocks the upgrade with a clear message
  Harvester's upgrade admission webhook (validator.harvesterhci.io) refuses to start an upgrade while
  the local cluster's cluster-api Machines and its Nodes disagree. Since v1.2.0 every Machine in
  fleet-local must be Running. Since v1.5.1 (harvester/harvester#8179; absent in v1.5.0, its RCs and
  the master build of 2025-04-03, which predates it)
  Nodes and Machines must also match one to one, through the Node annotation cluster.x-k8s.io/machine
  and the Machine's status.nodeRef. These scenarios break that on purpose (a fake Machine
  custom-<12 hex> with providerID rke2://harv44, or a Node naming a Machine that is gone), ask
  admission with a dry-run Upgrade (nothing starts, on a real cluster too), and put everything back.
  Expected messages are exact; in them {machine}, {node} and {namespace} stand for the injected
  Machine, the changed Node and fleet-local, and {nodes} and {machines} for the counts the check saw.

  Scenario Outline: <version> with <orphan>
    Given a Harvester cluster at version <version>
    And the cluster's machines and nodes are consistent
    When I inject <orphan>
    And I check whether an upgrade to the target release would be admitted
    Then the upgrade is <outcome>

    @issue_6253
    Examples: A Machine that never ran is refused by the Running check (v1.2.0 and later)
      | version     | orphan                              | outcome                                                               |
      | v1.4.2      | a Machine that never ran (no phase) | denied (InternalError) with "machine {namespace}/{machine} is not running" |
      | v1.5.0-rc2  | a Machine that never ran (no phase) | denied (InternalError) with "machine {namespace}/{machine} is not running" |
      | v1.5.0      | a Machine that never ran (no phase) | denied (InternalError) with "machine {namespace}/{machine} is not running" |
      | v1.5.1      | a Machine that never ran (no phase) | denied (InternalError) with "machine {namespace}/{machine} is not running" |
      | master-ce188325-head | a Machine that never ran (no phase) | denied (InternalError) with "machine {namespace}/{machine} is not running" |
      | v1.4.2      | a Machine stuck in Provisioning     | denied (InternalError) with "machine {namespace}/{machine} is not running" |
      | v1.5.0-rc2  | a Machine stuck in Provisioning     | denied (InternalError) with "machine {namespace}/{machine} is not running" |
      | v1.5.0      | a Machine stuck in Provisioning     | denied (InternalError) with "machine {namespace}/{machine} is not running" |
      | v1.5.1      | a Machine stuck in Provisioning     | denied (InternalError) with "machine {namespace}/{machine} is not running" |
      | master-ce188325-head | a Machine stuck in Provisioning     | denied (InternalError) with "machine {namespace}/{machine} is not running" |

    @issue_8179
    Examples: A Running Machine that no Node backs passes before v1.5.1; the strict match refuses it
      | version     | orphan                                               | outcome                                                                                                   |
      | v1.4.2      | a Running Machine with no nodeRef                    | accepted, a gap the v1.5.1 check closed                                                                   |
      | v1.5.0-rc2  | a Running Machine with no nodeRef                    | accepted, a gap the v1.5.1 check closed                                                                   |
      | v1.5.0      | a Running Machine with no nodeRef                    | accepted, a gap the v1.5.1 check closed                                                                   |
      | v1.5.1      | a Running Machine with no nodeRef                    | denied (InternalError) with "nodes({nodes}) and machines({machines}) do not match, check the cluster provision" |
      | master-ce188325-head | a Running Machine with no nodeRef                    | accepted, a gap the v1.5.1 check closed                                                                 |
      | v1.4.2      | a Running Machine whose nodeRef names a missing node | accepted, a gap the v1.5.1 check closed                                                                   |
      | v1.5.0-rc2  | a Running Machine whose nodeRef names a missing node | accepted, a gap the v1.5.1 check closed                                                                   |
      | v1.5.0      | a Running Machine whose nodeRef names a missing node | accepted, a gap the v1.5.1 check closed                                                                   |
      | v1.5.1      | a Running Machine whose nodeRef names a missing node | denied (InternalError) with "nodes({nodes}) and machines({machines}) do not match, check the cluster provision" |
      | master-ce188325-head | a Running Machine whose nodeRef names a missing node | accepted, a gap the v1.5.1 check closed                                                                 |

    @issue_8179
    Examples: A Node that names a Machine that is gone passes before v1.5.1; the strict match refuses it
      | version     | orphan                                                       | outcome                                                                                    |
      | v1.4.2      | a Node whose machine annotation names a Machine that is gone | accepted, a gap the v1.5.1 check closed                                                    |
      | v1.5.0-rc2  | a Node whose machine annotation names a Machine that is gone | accepted, a gap the v1.5.1 check closed                                                    |
      | v1.5.0      | a Node whose machine annotation names a Machine that is gone | accepted, a gap the v1.5.1 check closed                                                    |
      | v1.5.1      | a Node whose machine annotation names a Machine that is gone | denied (InternalError) with "node {node} refers to machine {machine}, but the machine does not exist" |
      | master-ce188325-head | a Node whose machine annotation names a Machine that is gone | accepted, a gap the v1.5.1 check closed                                                    |

  Scenario Outline: Once the orphan is removed, the same upgrade passes admission on <version>
    Given a Harvester cluster at version <version>
    And the cluster's machines and nodes are consistent
    When I inject <orphan>
    And I check whether an upgrade to the target release would be admitted
    Then the upgrade is <outcome>
    When the injected orphan is removed
    And I check whether an upgrade to the target release would be admitted
    Then the upgrade is admitted
    And the cluster's machines and nodes are consistent

    Examples:
      | version     | orphan                                                       | outcome                                                                                                   |
      | v1.4.2      | a Machine stuck in Provisioning                              | denied (InternalError) with "machine {namespace}/{machine} is not running"                                |
      | v1.5.0      | a Machine that never ran (no phase)                          | denied (InternalError) with "machine {namespace}/{machine} is not running"                                |
      | v1.5.1      | a Running Machine with no nodeRef                            | denied (InternalError) with "nodes({nodes}) and machines({machines}) do not match, check the cluster provision" |
      | v1.5.1      | a Running Machine whose nodeRef names a missing node         | denied (InternalError) with "nodes({nodes}) and machines({machines}) do not match, check the cluster provision" |
      | v1.5.1      | a Node whose machine annotation names a Machine that is gone | denied (InternalError) with "node {node} refers to machine {machine}, but the machine does not exist"      |

  Scenario Outline: The denial names the offending Machine on <version>, so an operator can find it
    Given a Harvester cluster at version <version>
    When I inject <orphan>
    And I check whether an upgrade to the target release would be admitted
    Then the denial names the injected Machine, and the API finds it by that name

    Examples:
      | version     | orphan                              |
      | v1.4.2      | a Machine stuck in Provisioning     |
      | v1.5.1      | a Machine that never ran (no phase) |
      | master-ce188325-head | a Machine stuck in Provisioning     |
