"""Fakes of outside systems (agent CLIs, GitHub) that tests run against."""
