"""entmap: Concept Entanglement Maps for personalized text-to-image diffusion models.

The package holds all logic; the Snakemake workflow only calls it. It never
imports snakemake.
"""

__version__ = "0.1.0"
