"""Step definitions: thin glue from Gherkin to infra/. Bound to features in steps/test_features.py."""
