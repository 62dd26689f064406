"""Measurement: seed-matched generation, CLIP scores, disruption metrics, the noise floor and the map's cells."""
