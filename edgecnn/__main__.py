"""``python -m edgecnn``: the same as the ``edgecnn`` command."""

from edgecnn.cli.main import main

main()
