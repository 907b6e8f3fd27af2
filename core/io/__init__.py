"""Plate and image I/O: EXR plates, sequences, AOVs, cryptomatte, contact sheets, atomic writes."""
