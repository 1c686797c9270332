"""``python -m mexkit`` runs the command line."""
from mexkit.cli import main

main()
