"""One module per scenario; each takes the run's `Context` and adds rows and notes to its report."""
