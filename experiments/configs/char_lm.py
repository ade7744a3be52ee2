r"""Character-level language model on Python's bundled documentation (pydoc_data.topics).

    python -m experiments.char_lm --workdir=/tmp/char_lm_lstm                        # LSTM
    python -m experiments.char_lm --config=experiments/configs/char_lm.py:gru --workdir=/tmp/char_lm_gru
    python -m experiments.char_lm --config=experiments/configs/char_lm.py:rnn --workdir=/tmp/char_lm_rnn
    python -m experiments.generate --workdir=/tmp/char_lm_lstm --prompt="The " --length=500 \
        --temperature=0.8 --top_k=10 --seed=0
    # any UTF-8 text file instead of the default corpus:
    python -m experiments.char_lm --workdir=/tmp/lm_mine --config.data.path=/path/to/book.txt

Data: the 79 pydoc topics joined in sorted key order (464,970 characters with
CPython 3.12); first 90% train, last 10% validation; 103 distinct training characters
plus <unk> (V = 104). Truncated BPTT: 32 streams, windows of 100 characters, the
carry passed from each window to the next (reset at each epoch, 130 windows).

Models, equal parameter count (~231k, embedding 32, dropout 0.1 on the non-recurrent
connections, softmax readout), 2 stacked layers each:
  "lstm" (default) H = 128: 230,760 params
  "gru"            H = 148: 231,056 params
  "rnn" (tanh)     H = 253: 230,373 params
Adam 5e-3, cosine decay to 0 over the run after 100 warmup steps, gradients clipped
to global norm 1, 1,500 steps (~11.5 epochs, 4.8M characters).

Expected (measured on the 2-core CPU shared with other jobs, seed 0; validation bpc
over 46,400 characters, read in order with the carry passed on):
  gru  1.712 bpc  2 min 26 s wall (12.0 steps/s after compilation)
  rnn  1.813 bpc  2 min 30 s        (11.3 steps/s)
  lstm 2.050 bpc  3 min 31 s        (9.3 steps/s)
With Adam 2e-3 (otherwise the same): gru 1.846, rnn 1.934, lstm 2.326. Uniform
guessing is log2(104) = 6.70 bpc. At this budget the LSTM is last. With
--config.num_steps=4000 (~31 epochs): gru 1.652 (3 min 35 s), rnn 1.735 (3 min 39 s),
lstm 1.770 (5 min 07 s). With --config.num_steps=10000 (~77 epochs; 2-core CPU,
at times shared with short jobs):
gru 1.632 (9 min 05 s), lstm 1.670 (9 min 50 s), rnn 1.759 (7 min 50 s): given enough
training the LSTM beats the tanh RNN.
"""

from rnn_jax.apps import lm

# Hidden sizes that give each cell the LSTM's parameter count (rnn_jax.apps.lm.num_params).
HIDDEN = {"lstm": 128, "gru": 148, "rnn": 253}


def get_config(cell: str = "lstm"):
    if cell not in HIDDEN:
        raise ValueError(f"char_lm variant must be one of {sorted(HIDDEN)}, got {cell!r}")
    config = lm.default_config()
    config.cell = cell
    config.hidden_size = HIDDEN[cell]
    config.num_steps = 1500
    config.optimizer.learning_rate = 5e-3
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_steps = 100
    config.eval_every = 150
    config.checkpoint_every = 750
    config.log_every = 50
    return config
