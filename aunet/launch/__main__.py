"""``python -m aunet.launch``: the launcher's command line."""

from aunet.launch.launcher import main

main()
