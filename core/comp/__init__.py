"""Compositing: the StyleCompBlend gizmo's blend ops (``render.headless_comp`` runs them over a job's frames)."""
