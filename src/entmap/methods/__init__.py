"""Personalization methods: each trains one adapter from a subject's reference images."""
