"""``python -m attr_compress.cli``: the same as the ``attr-compress`` command."""

from attr_compress.cli import main

main()
