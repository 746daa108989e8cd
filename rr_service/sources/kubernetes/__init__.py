"""Calico's data in the Kubernetes API as a Source (see convert.py for the mapping)."""
