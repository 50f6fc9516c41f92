"""Analysis layer of entropy-ae: latent-size sweeps, latent entropy, plots, reports, recommendations.

Data flows one way: run directories (``entropy_ae.runs``) -> latents -> estimators -> tables ->
plots and recommendations. Nothing here touches a model except through ``entropy_ae.runs``, and
the core never imports this package.

Package map
-----------
``cli``, ``commands``
    The ``entropy-ae`` command line: the options, then what each command does.
``sweep``
    Latent-size sweeps: the grid (``plan``), recorded against requested settings (``settings``),
    what a job runs (``jobs``), where the jobs run and progress lines (``dispatch``), the results
    table (``results``), and the file names of a sweep directory (``layout``).
``executors``
    Where jobs run: ``map_runs`` over the backends ``sequential`` and ``local`` (``local``),
    ``slurm`` and ``ray``; each run logged to its own file (``logged``); the command-line
    options (``options``).
``measures``
    What is measured on a run and on the normal images: H(Z) with its standard error
    (``entropy``), the intrinsic dimension (``intrinsic_dim``), I_sigma (``information``), what
    the code knows about pseudo-anomalies of the validation images (``pseudo``), and the sets the
    sweep records (``recorded``).
``recommend``
    A latent size from normal-data columns only (the default rule ``two_sided``: validation
    error below, pseudo-anomaly AUROC above); the one writer of ``recommendation.json``.
``report``, ``plots``
    The report (Markdown, HTML, Table 1) and its figures.
"""
