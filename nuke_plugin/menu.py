"""StyleComp for Nuke: the StyleComp toolbar and menu (GUI sessions only)."""

from stylecomp_nuke import menus

menus.install()
