"""The demo scene: the procedural renderer of the demo shot, whose scenes the built-in model also trains on."""
