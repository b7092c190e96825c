"""`harvester-e2e chaos`: the stories run again and again while the cluster misbehaves, and interrupted.

A chaos run is one story selection run by `harvester-e2e run --backend existing` against a lab (a simulated
Harvester posing as one, `infra.lab`) that this driver started: the driver holds the simulator's fault
endpoint (`/simulator/v1/faults`, through the simulator's own token) and injects one fault class at seeded random
moments, while the run knows nothing of it. Its verdicts (JUnit XML) are compared with a fault-free run of
the same selection; what it left behind is audited after it exits.

- `faults`: the fault classes and their seeded plans, and the thread that injects a plan during a run;
- `runs`: a lab per run, the run as a subprocess, its verdicts, and the leftover checks;
- `interrupts`: runs signalled (SIGINT or SIGTERM) at a seeded moment of a named phase, then audited;
- `report`: the tables (rich) and `summary.json` under artifacts/chaos/;
- `cli`: `harvester-e2e chaos`.
"""
