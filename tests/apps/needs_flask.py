"""Imports flask at module level: fails to load unless the test venv is active."""

import flask  # noqa: F401

from wsgiapp import app  # noqa: F401
