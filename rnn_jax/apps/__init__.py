"""Applications built on the library: each trains and evaluates one kind of model.

- :mod:`rnn_jax.apps.lm`: character-level language model with generation;
- :mod:`rnn_jax.apps.classify`: BiLSTM + attention-pooling sequence classifier;
- :mod:`rnn_jax.apps.forecast`: one-step-ahead time-series forecasting;
- :mod:`rnn_jax.apps.seq2seq`: encoder-decoder with additive attention.

Each exposes ``default_config()`` and ``train_and_evaluate(config, workdir)``;
``experiments/<name>.py`` is its command-line entry point. Applications import the
library (cells, sequence ops, layers, models, train) and never the other way round.
"""
