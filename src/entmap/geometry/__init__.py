"""Prompt-embedding geometry (SAGE): spread and local-structure distortion of a model's prompt embeddings."""
