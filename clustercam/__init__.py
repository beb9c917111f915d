"""clustercam: Cluster-CAM and its baselines for explaining CNN image classifiers."""
