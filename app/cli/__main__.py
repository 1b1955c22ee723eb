"""``python -m app.cli``: what the ``hirehook`` script runs."""

from app.cli import main

main()
