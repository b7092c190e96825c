@ippool @known_issue @issue_7942 @issue_1458
Feature: Editing an IPPool's selector keeps the pool Ready
  An IPPool (loadbalancer.harvesterhci.io) has no status subresource: its allocations, its
  counts and its Ready condition live in `status`, and whoever writes the whole object writes
  the status too. The IPAM controller rebuilds that status only when `spec.ranges` changes, so
  an edit that writes the object without its status loses it for good: the dashboard shows the
  pool Not Ready, and the next allocation takes `available` to -1 and may hand out an address
  that a load balancer still holds.

  The Harvester dashboard saves with a PUT of the whole object. Before harvester-ui-extension
  v1.5.0-rc2 and v1.0.5 that PUT leaves `status` out (harvester/harvester#7942, #1458); from them
  on it keeps it. `kubectl apply` and a merge patch send only what changed. What happens depends
  on the dashboard's releases (the browser side), not on the cluster's version, so the story runs
  on whatever the cluster runs; rows on a UI extension that drops `status` are the known issue.

  Scenario Outline: Changing the <change> selector through <path> keeps the pool Ready
    Given a Harvester cluster
    And an IPPool pool with 8 addresses for load balancers in a new namespace
    And a pool-mode LoadBalancer lb1 holding an address from IPPool pool
    When the <change> selector of IPPool pool is changed through <path>
    Then the status of IPPool pool is preserved after editing spec.selector through <path>
    And IPPool pool is Ready with its allocations unchanged
    And IPPool pool counts available as total minus allocated
    And the load balancer controller has logged no "is deleted" line for IPPool pool
    And a second pool-mode LoadBalancer lb2 gets an address from IPPool pool that no other holds
    And IPPool pool counts available as total minus allocated

    Examples: the dashboard with UI extension v1.5.0-rc2 on, and v1.0.5 on the v1.0.x line
      | path                                                          | change   |
      | the dashboard at Rancher v2.11.0 with UI extension v1.5.0-rc2 | network  |
      | the dashboard at Rancher v2.11.0 with UI extension v1.5.0-rc2 | scope    |
      | the dashboard at Rancher v2.11.0 with UI extension v1.5.0-rc2 | priority |
      | the dashboard at Rancher v2.10.5 with UI extension v1.0.6     | network  |

    Examples: a merge patch
      | path          | change   |
      | a merge patch | network  |
      | a merge patch | scope    |
      | a merge patch | priority |

    Examples: kubectl apply
      | path          | change   |
      | kubectl apply | network  |
      | kubectl apply | scope    |
      | kubectl apply | priority |

    # Known issue harvester/harvester#7942: on these UI extensions the rows are expected failures (the
    # status diff is attached); the day they pass, they fail as "no longer reproduces".
    Examples: known issue, the dashboard before the cleanForSave fix
      | path                                                          | change   |
      | the dashboard at Rancher v2.10.3 with UI extension v1.0.4     | network  |
      | the dashboard at Rancher v2.10.3 with UI extension v1.0.4     | scope    |
      | the dashboard at Rancher v2.10.3 with UI extension v1.0.4     | priority |
      | the dashboard at Rancher v2.11.0 with UI extension v1.5.0-rc1 | network  |

  Scenario Outline: A dashboard save at <ui> keeps a LoadBalancer's status too
    A LoadBalancer has no status subresource either: its allocated address lives in `status`.

    Given a Harvester cluster
    And an IPPool pool with 8 addresses for load balancers in a new namespace
    And a pool-mode LoadBalancer lb1 holding an address from IPPool pool
    When the description of LoadBalancer lb1 is changed through the dashboard at <ui>
    Then the status of LoadBalancer lb1 is preserved after editing spec.description through the dashboard at <ui>

    Examples:
      | ui                                           |
      | Rancher v2.11.0 with UI extension v1.5.0-rc2 |
      | Rancher v2.10.3 with UI extension v1.0.4     |

  Scenario Outline: <bad edit> is refused with the validator's message, and nothing changes
    Given a Harvester cluster
    And an IPPool pool with 8 addresses for load balancers in a new namespace
    And a pool-mode LoadBalancer lb1 holding an address from IPPool pool
    And another IPPool other with 8 addresses
    And a global IPPool global
    When <bad edit> is attempted on IPPool pool through <path>
    Then the edit is refused with: <refusal>
    And IPPool pool is unchanged

    Examples:
      | bad edit                                   | path                                                        | refusal                                                                  |
      | a range overlapping IPPool other           | a merge patch                                               | can't update IP pool {pool} because the ranges ... overlap with other pools |
      | a range that leaves out the address of lb1 | a merge patch                                               | can't update IP pool {pool} because allocated IP {lb1 address} is excluded |
      | a global scope                             | a merge patch                                               | can't update IP pool {pool} because there is already a global IP pool: {global} |
      | a range that leaves out the address of lb1 | the dashboard at Rancher v2.11.0 with UI extension v1.5.0-rc2 | can't update IP pool {pool} because allocated IP {lb1 address} is excluded |
      | a range overlapping IPPool other           | kubectl apply                                               | can't update IP pool {pool} because the ranges ... overlap with other pools |
      | a range that leaves out the address of lb1 | kubectl apply                                               | can't update IP pool {pool} because allocated IP {lb1 address} is excluded |
      | a global scope                             | kubectl apply                                               | can't update IP pool {pool} because there is already a global IP pool: {global} |
