"""``python -m mexkit`` runs the command line."""
from mexkit.cli import run

run()
