"""The toy world: synthetic captioned scenes, and tiny models trained on them (see world.py)."""
