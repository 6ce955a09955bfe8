"""The ``conveyor`` command line: the top of the house, wiring server, workers, API and pipelines."""
