"""Pure helpers mirroring k8s.io/apimachinery behaviour for the simulated API server.

- ``selectors``: label and field selectors (``?labelSelector=`` / ``?fieldSelector=``).
- ``patch``: JSON merge patch, JSON patch, strategic merge patch, simplified server-side apply.
- ``schema``: CRD structural schema pruning, defaulting and validation.
"""
