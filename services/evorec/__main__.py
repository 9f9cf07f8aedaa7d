"""`python -m evorec` is the `evorec` command."""

from evorec.cli import main

main()
