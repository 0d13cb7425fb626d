"""``python -m latefill``: the ``latefill`` command."""

from ._cli import main

main()
