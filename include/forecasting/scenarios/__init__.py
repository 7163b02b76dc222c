"""What-if scenarios: alternative plans forecast by the published model."""
