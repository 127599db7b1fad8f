"""Helpers for tests: a flexivrdk 2.x test double and a Go2 stand-in on loopback DDS.

Imported as `support.<module>` (pytest puts test/ on sys.path; the stdlib owns `test.support`).
"""
