"""Regions: mattes that pick parts of a frame, and diffusing each region with its own look."""
