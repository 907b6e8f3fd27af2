"""Generators: the plugin interface, image and video generators, ideation, animatics and hosted services."""
