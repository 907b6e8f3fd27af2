"""The built-in demo: a procedural scene and the script that renders it end to end."""
