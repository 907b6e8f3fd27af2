"""Plate and image I/O: EXR plates, sequences, AOVs and what they show (conditioning images), cryptomatte,
contact sheets, atomic writes."""
