"""The ``deblur`` command's parts beside ``deblurcli/cli.py``, which builds the app and lists every command.

`common` holds what every command shares: the two consoles, the one-line error handling, and the
options several commands declare alike. `tools` (``download``, ``convert``, ``doctor``) and
`make` (``train``, ``synth``) hold commands; ``cli.py`` registers them on its ``app`` where they
appear in ``deblur --help``. Like ``cli.py``, these parse and print only: what they do is in the library.
"""
