"""Test doubles for systems outside the project, as real servers."""
