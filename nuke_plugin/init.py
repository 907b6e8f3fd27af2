"""StyleComp for Nuke: puts the StyleComp gizmos on the plugin path.

Nuke runs init.py in every session, GUI or not (also `nuke -t` and farm renders), so
nothing here touches the UI; menus are added by menu.py.
"""

from stylecomp_nuke import startup

startup.add_gizmo_path()
