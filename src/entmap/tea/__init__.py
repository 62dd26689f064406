"""Semantic collapse and TEA: the test-time adjustment, its sweeps, and the collapse diagnostics."""
