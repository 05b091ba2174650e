"""The package's version: configure writes this file (_version.py) from
_version.py.in with configure.ac's AC_INIT version, the one place the
version is set. Edit configure.ac, not this file."""

__version__ = "0.2.0"
