"""``python -m omnichannel``: the command line."""

from omnichannel.cli import main

main()
