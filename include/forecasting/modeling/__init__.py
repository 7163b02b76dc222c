"""Fitting and scoring forecasters: the XGBoost booster, train with its backtest, evaluate against the baselines, intervals, and predict."""
