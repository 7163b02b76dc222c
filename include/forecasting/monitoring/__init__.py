"""After publishing: realised accuracy, drift, and alerts with their notifiers."""
