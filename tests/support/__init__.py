"""Helpers the test modules share: fake ATS APIs, signers, clients, workers (no tests here)."""
