"""The command line: the only place that prints, draws progress bars or exits."""
