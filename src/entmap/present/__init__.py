"""Presentation: figures, image grids, the self-contained report and the run archive. Reads tables, never models."""
