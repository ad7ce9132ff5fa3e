"""Runnable end-to-end scripts built on coursekit, each started with ``python -m``.

Each module's docstring gives its command line; the lessons quote their recorded output.
"""
