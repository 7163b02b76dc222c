"""What several test files share and that is not a fixture: the repository's paths, demo-like
configs, the test servers' addresses, an Airflow environment of a test's own, the Forecasts
view's hand-made deployment. Fixtures stay in tests/conftest.py."""
