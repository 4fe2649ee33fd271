"""compare-models: honest comparisons of ptychography reconstructions across photon doses."""

__version__ = "0.1.0"
