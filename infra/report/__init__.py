"""Allure reporting for the harness: secret redaction, attachments, the pytest plugin, HTML output.

The pytest plugin lives in ``infra.report.plugin`` and is loaded by name (``pytest_plugins``);
it is not imported here so that importing the helpers never registers hooks.
"""

from infra.report.attach import (
    DEFAULT_MAX_BYTES,
    allure_active,
    attach_evidence,
    attach_file,
    attach_json,
    attach_png,
    attach_text,
    attach_yaml,
)
from infra.report.redact import (
    REDACTED,
    REDACTOR,
    RedactingFilter,
    Redactor,
    install_log_redaction,
    redact_data,
    redact_text,
    register_secret,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "REDACTED",
    "REDACTOR",
    "RedactingFilter",
    "Redactor",
    "allure_active",
    "attach_evidence",
    "attach_file",
    "attach_json",
    "attach_png",
    "attach_text",
    "attach_yaml",
    "install_log_redaction",
    "redact_data",
    "redact_text",
    "register_secret",
]
