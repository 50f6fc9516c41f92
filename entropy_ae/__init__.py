"""entropy-ae: latent-entropy analysis of autoencoders for medical anomaly detection."""

__version__ = "0.1.0"
