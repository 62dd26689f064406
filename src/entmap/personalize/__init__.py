"""Personalization: the shared training loop and the methods (Textual Inversion, DreamBooth-LoRA, Custom
Diffusion, the planted-effect control)."""
