"""Temporal coherence: motion between frames and flicker measurement."""
