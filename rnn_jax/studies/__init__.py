"""Studies: the code behind the experiments that produce the project's figures.

Each module exposes ``run(config, workdir)``; ``experiments/<name>.py`` is only the
absl entry point that parses ``--config``/``--workdir`` and calls it.
"""
