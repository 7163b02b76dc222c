"""Publishing forecasts: the output checks, the atomic write to the predictions database (with PostgreSQL's specifics), and the read-only query layer."""
