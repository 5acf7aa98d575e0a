"""``python -m aunet.launch``: the launcher's command line."""

from aunet.launch.command_line import main

main()
