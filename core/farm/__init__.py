"""Render-farm execution: batches, chunks, the Ray cluster executor and OpenJD job templates."""
