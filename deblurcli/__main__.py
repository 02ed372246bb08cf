"""``python -m deblurcli``: the ``deblur`` command without relying on the console script being on PATH."""

from deblurcli.cli import main

if __name__ == "__main__":
    main()
