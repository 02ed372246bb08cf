"""Package discovery only; everything else is in pyproject.toml.

pyproject's ``[tool.setuptools.packages.find]`` cannot add a package mapped from another folder
(``weights/`` -> ``deblurcli._weights``) beside the discovered ones, so the list is made here:
every package under ``deblurcli/`` plus that one.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["deblurcli", "deblurcli.*"]), "deblurcli._weights"])
