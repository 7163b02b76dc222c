"""Monthly demand forecasting: the library behind the ``monthly_forecast`` DAG, one module per stage."""
