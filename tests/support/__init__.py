"""Test support code shared by integration tests (fault injection, small emulated shadows)."""
