"""Logdirs and stores written by real writers, for the demo, the tests and the benchmark."""
