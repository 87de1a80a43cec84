"""``python -m phi_get``: the same as the ``phi-get`` command."""

from phi_get.cli import main

main()
