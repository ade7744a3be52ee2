r"""BiLSTM + attention classifier for your own text: a text<TAB>label file (e.g. sentiment).

    python -m experiments.classify --config=experiments/configs/classify_tsv.py \
        --config.data.path=train.tsv [--config.data.test_path=test.tsv] \
        [--config.data.tokenizer=whitespace] --workdir=/tmp/tsv

Format: one example per line, the text, a TAB, the label (everything after the last
TAB); blank lines are skipped; a line without a TAB is an error naming file and line.
Without data.test_path, 20% of the lines (seeded by config.seed) are held out.
Tokens: characters (default) or whitespace-separated words; vocabulary from the
training lines (<pad> = 0, <unk> = 1); texts are cut to data.max_len = 400 tokens.

No file ships with the project, so there is no measured result; the end-to-end test
(tests/test_classify.py) trains this config on a generated file and reaches 100% on
its two easily separated classes in ~10 s.
"""

from rnn_jax.apps import classify


def get_config():
    config = classify.default_config()
    config.data.source = "tsv"
    config.data.path = ""  # required: --config.data.path=...
    config.data.tokenizer = "char"
    config.data.max_len = 400
    config.num_steps = 2000
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_steps = 100
    config.eval_every = 250
    config.checkpoint_every = 500
    return config
