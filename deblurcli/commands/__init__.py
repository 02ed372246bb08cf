"""The ``deblur`` command's parts beside ``deblurcli/cli.py``, which registers every command on the app.

`common` holds what every command shares: the app, the two consoles, the one-line error handling,
and the options several commands declare alike. `tools` (``download``, ``convert``, ``doctor``) and
`make` (``train``, ``synth``) hold commands; ``cli.py`` registers them on the app where they
appear in ``deblur --help``. Like ``cli.py``, these parse and print only: what they do is in the library.
"""
