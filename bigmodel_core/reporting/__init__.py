"""Reporting: what a run tells people (run card, console summary, notifications)."""
