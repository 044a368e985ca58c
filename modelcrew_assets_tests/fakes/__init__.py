"""Fake outside services for the tests: real servers on 127.0.0.1, started by fixtures."""
