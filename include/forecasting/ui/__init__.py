"""The Forecasts view inside Airflow's UI: the overview, the explorer, the monitoring sections and their charts."""
