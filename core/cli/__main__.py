"""``python -m stylecomp.cli``: the same command as the ``stylecomp`` console script."""

from . import main

main()
