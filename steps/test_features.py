"""Bind every feature file to pytest: each Scenario becomes a test."""
from pytest_bdd import scenarios

scenarios("../features")
