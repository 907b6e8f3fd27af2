"""StyleComp's Nuke side: gizmo buttons, engine runs and the candidate picker.

Standard library and Qt.py only, Python 3.9+. The engine (torch, OpenImageIO, OpenColorIO)
runs out of process through its command line; this package never imports it.
"""
