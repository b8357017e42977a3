"""Example code location for dtq: the demo job and the jobs of the end-to-end tests."""
