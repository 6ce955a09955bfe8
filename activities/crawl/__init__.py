"""The crawl pipeline (seed 000, BugHive): page visits, bug triage, screenshots, tickets, cleanup."""
