"""Analysis layer of entropy-ae: latent-size sweeps, latent entropy, plots, reports, recommendations.

Data flows one way: run directories (checkpoints) -> latents -> estimators -> tables -> plots and
recommendations. Nothing here touches a model except through ``entropy_ae.runs``.
"""
