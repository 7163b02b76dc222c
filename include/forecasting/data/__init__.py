"""The sales and plans coming in: extract a month's window, validate it with Great Expectations, read it as a panel, and the planned covariates."""
