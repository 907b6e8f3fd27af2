"""StyleComp's Nuke side: gizmo buttons, engine runs and the candidate picker.

Standard library and the Qt binding Nuke ships (PySide2 or PySide6) only, Python 3.7+. The engine (torch,
OpenImageIO, OpenColorIO) runs out of process through its command line; this package never imports it.
"""
