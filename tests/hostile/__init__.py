"""Hostile-input corpus and helpers shared by tests/test_hostile_corpus.py and tests/test_properties.py."""
